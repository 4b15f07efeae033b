"""era_core.testing: the shared CLI checks find what they are meant to find."""

from __future__ import annotations

import argparse

import pytest

from era_core.testing import error_line, help_problems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--good", type=int, default=3, help="a count (default: %(default)s)")
    parser.add_argument("--needed", required=True, help="a name")
    return parser


def test_help_problems_accepts_a_complete_page() -> None:
    assert help_problems(_parser()) == []


def test_help_problems_names_each_gap() -> None:
    parser = _parser()
    parser.add_argument("--silent", default=1)
    parser.add_argument("--hidden-default", default=2, help="a number")
    parser.add_argument("--twice", default=4, help="x (default: 4) (default: %(default)s)")
    parser.add_argument("--rest", default=0, help="see ``other`` (default: 0)")
    problems = help_problems(parser)
    assert problems[0] == "--silent: no help"
    assert problems[1].startswith("--hidden-default: the help does not show the default")
    assert problems[2].startswith("--twice: the default is shown twice")
    assert problems[3] == "the help page holds '``'"
    assert len(problems) == 4


def test_error_line() -> None:
    err = "tool: error: --seed -1: must be >= 0\n"
    assert error_line(2, err, "tool", "--seed -1") == err.strip()
    with pytest.raises(AssertionError, match="exit status 1"):
        error_line(1, err, "tool", "--seed")
    with pytest.raises(AssertionError):
        error_line(2, "Traceback (most recent call last):\n" + err, "tool", "--seed")
    with pytest.raises(AssertionError):
        error_line(2, "warning\n" + err, "tool", "--seed")
    assert error_line(2, "warning\n" + err, "tool", "--seed", one_line=False) == err.strip()
    with pytest.raises(AssertionError):
        error_line(2, err, "tool", "--steps")
