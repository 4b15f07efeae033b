"""era_core.testing: the shared CLI checks find what they are meant to find."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from era_core import runs
from era_core.testing import (
    assert_nothing_made,
    copy_run,
    error_line,
    help_problems,
    unusable_outs,
)


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


def test_unusable_outs_are_refused_by_new_run(tmp_path: Path) -> None:
    """Every case unusable_outs makes is one era_core.runs refuses with the stated reason."""
    for out, message in unusable_outs(tmp_path):
        with pytest.raises(runs.RunError, match=message):
            runs.new_run(out, {"seed": 0})
    assert_nothing_made(tmp_path)
    (tmp_path / "stray").mkdir()
    with pytest.raises(AssertionError):
        assert_nothing_made(tmp_path)


def test_copy_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    copy = copy_run(run, tmp_path / "copy")
    assert sorted(p.name for p in copy.iterdir()) == ["config.json"]
