"""The console scripts' --help: every flag has a help line that shows its default."""

from __future__ import annotations

import argparse
import os
from importlib import metadata

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

DISTRIBUTION = "era-control-app"


class _Parsed(Exception):
    """Raised instead of parsing: the parser was built."""


def _parser_of(script: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser a console script builds, caught when it parses its arguments."""
    (entry,) = [e for e in metadata.distribution(DISTRIBUTION).entry_points if e.name == script]
    built: list[argparse.ArgumentParser] = []

    def parse_args(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        built.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    with pytest.raises(_Parsed):
        entry.load()([])
    return built[0]


def _scripts() -> list[str]:
    eps = metadata.distribution(DISTRIBUTION).entry_points
    return sorted(e.name for e in eps if e.group == "console_scripts")


@pytest.mark.parametrize("script", _scripts())
def test_every_flag_has_help_with_its_default(script: str, monkeypatch: pytest.MonkeyPatch):
    parser = _parser_of(script, monkeypatch)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action) if action.help else ""
        name = "/".join(action.option_strings) or action.dest
        assert text.strip(), f"{script} {name}: no help"
        if action.option_strings and not action.required:
            assert "default" in text or "required" in text, f"{script} {name}: {text!r}"
        assert text.count("(default: ") <= 1, f"{script} {name}: {text!r}"
    page = parser.format_help()
    assert "``" not in page and "{{" not in page, page
