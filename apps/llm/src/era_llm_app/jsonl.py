"""Reading JSON-lines data files with one clear error per fault (file, line, what is wrong)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_objects(path: str | Path, *, flag: str = "--data") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of the JSON-lines file ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not UTF-8, a line is not JSON, or a line holds a JSON value that
            is not an object; the message names ``flag``, the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{flag} {path}: not UTF-8 text (byte {error.start}: {error.reason}); "
            "JSON lines must be UTF-8"
        ) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{flag} {path}: line {lineno} is not JSON ({error})") from None
        if not isinstance(row, dict):
            raise ValueError(
                f"{flag} {path}: line {lineno} holds a JSON {type(row).__name__}, "
                "not an object ({...})"
            )
        yield lineno, row
