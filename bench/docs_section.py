"""Rewrite one benchmark's section of docs/benchmarks.md, between its own markers.

Every `bench/<domain>_*.py` script imports this (the scripts run as `python bench/<script>.py`,
so `bench/` is on `sys.path`). A section lives between `<!-- bench:<name>:start -->` and
`<!-- bench:<name>:end -->`; a missing section is appended at the end of the file.
"""

from __future__ import annotations

import re
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def write_section(path: Path, name: str, section: str) -> None:
    start, end = markers(name)
    block = f"{start}\n{section}\n{end}"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)
