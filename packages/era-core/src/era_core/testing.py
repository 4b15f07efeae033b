"""Checks for the command lines of apps built on :mod:`era_core.cli`, shared by their tests.

* :func:`script_parser` builds the :class:`argparse.ArgumentParser` of an installed console
  script without running it, and :func:`help_problems` lists what its ``--help`` lacks: a help
  line per flag, the default of every optional flag, no doubled ``(default: ...)``, no reST or
  escaped-brace leftovers.
* :func:`error_line` checks what a CLI printed for a bad input: exit status 2, no traceback, and
  one ``prog: error: ...`` line that names the problem.
* :func:`unusable_outs` makes the ``--out`` values no run may use (a file, a path through a
  file, a location nobody may create, and a read-only folder where permissions apply) with the
  message each must give, and :func:`assert_nothing_made` checks that the refusals left nothing;
  :func:`copy_run` copies a run directory's files (to corrupt the copy, not the original).

Only the standard library is imported, so an app's tests can use these wherever era-core is
installed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from unittest import mock

__all__ = [
    "assert_nothing_made",
    "console_scripts",
    "copy_run",
    "error_line",
    "help_problems",
    "script_parser",
    "unusable_outs",
]

_A_FILE, _LOCKED = "a-file", "locked"


class _Built(Exception):
    """Raised instead of parsing: the parser has been built."""


def console_scripts(distribution: str) -> list[str]:
    """The console scripts an installed distribution declares, sorted."""
    eps = metadata.distribution(distribution).entry_points
    return sorted(e.name for e in eps if e.group == "console_scripts")


def script_parser(distribution: str, script: str) -> argparse.ArgumentParser:
    """The parser console script ``script`` of ``distribution`` builds, caught at the moment it
    would parse its arguments (so nothing of the script runs after that)."""
    eps = metadata.distribution(distribution).entry_points
    matches = [e for e in eps if e.group == "console_scripts" and e.name == script]
    if len(matches) != 1:
        raise LookupError(f"{distribution} declares no console script {script!r}")
    built: list[argparse.ArgumentParser] = []

    def parse(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        built.append(self)
        raise _Built

    main: Callable[[list[str]], object] = matches[0].load()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse):
        try:
            main([])
        except _Built:
            return built[0]
    raise AssertionError(f"{script} returned without parsing its arguments")


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """What ``parser``'s ``--help`` lacks, one line per problem (empty: none)."""
    problems = []
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action) if action.help else ""
        name = "/".join(action.option_strings) or action.dest
        if not text.strip():
            problems.append(f"{name}: no help")
            continue
        if action.option_strings and not action.required:
            if "default" not in text and "required" not in text:
                problems.append(f"{name}: the help does not show the default: {text!r}")
        if text.count("(default: ") > 1:
            problems.append(f"{name}: the default is shown twice: {text!r}")
    page = parser.format_help()
    for leftover in ("``", "{{"):
        if leftover in page:
            problems.append(f"the help page holds {leftover!r}")
    return problems


def error_line(code: object, err: str, prog: str, message: str, *, one_line: bool = True) -> str:
    """The error line a CLI printed to stderr (``err``) for a bad input, checked: ``code`` is 2,
    there is no traceback, and the (with ``one_line``: only) line starts with ``prog: error:``
    and contains ``message``. Raises :class:`AssertionError` with the whole stderr otherwise."""
    assert code == 2, f"exit status {code!r}, not 2:\n{err}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    if one_line:
        assert len(lines) == 1, err
    line = lines[-1]
    assert line.startswith(f"{prog}: error: ") and message in line, err
    return line


def _permissions_apply() -> bool:
    """Whether a read-only folder stops this process (root writes into it anyway)."""
    return os.geteuid() != 0


def unusable_outs(folder: Path) -> list[tuple[Path, str]]:
    """``(path, message)`` pairs: ``--out`` values a run must refuse, each with (part of) the
    reason its one error line must give. Makes ``folder/a-file`` and, where permissions apply,
    the read-only ``folder/locked``."""
    a_file = folder / _A_FILE
    a_file.write_text("x")
    cases = [
        (a_file, "is a file, not a directory"),
        (a_file / "run", "is a file, not a directory"),
        (Path("/proc/era-run"), "cannot create it"),  # a location nobody may create in
    ]
    if _permissions_apply():
        locked = folder / _LOCKED
        locked.mkdir(mode=0o555)
        cases += [(locked, "cannot write there"), (locked / "run", "cannot create it")]
    return cases


def assert_nothing_made(folder: Path) -> None:
    """``folder`` holds only what :func:`unusable_outs` made, and the read-only folder is empty."""
    expected = sorted([_A_FILE] + ([_LOCKED] if _permissions_apply() else []))
    assert sorted(p.name for p in folder.iterdir()) == expected
    if _permissions_apply():
        assert not any((folder / _LOCKED).iterdir())


def copy_run(run: Path, to: Path) -> Path:
    """A copy of the files (not the folders) of run directory ``run`` in the new folder ``to``."""
    to.mkdir()
    for file in run.iterdir():
        if file.is_file():
            (to / file.name).write_bytes(file.read_bytes())
    return to
