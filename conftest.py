"""Shared pytest fixtures for every session (pytest loads this rootdir conftest for all tests).

The README examples: each package's session runs the README's Python example for that package.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def readme_python_blocks(path: Path) -> list[str]:
    """The fenced ``python`` blocks of a Markdown file, in order."""
    return re.findall(r"```python\n(.+?)```", path.read_text(), re.S)


@pytest.fixture
def readme_blocks() -> Callable[[Path], list[str]]:
    """:func:`readme_python_blocks`, for tests that pick their own blocks."""
    return readme_python_blocks


@pytest.fixture
def run_readme_example(capsys) -> Callable[[str], list[float]]:
    """``run(module)``: run the README's one example importing ``module``; the numbers it
    printed, in order."""

    def run(module: str) -> list[float]:
        imports = re.compile(rf"^(?:import|from) {module}\b", re.M)
        blocks = [b for b in readme_python_blocks(ROOT / "README.md") if imports.search(b)]
        assert len(blocks) == 1, f"README.md should hold one {module} example"
        exec(compile(blocks[0], "README.md", "exec"), {})
        return [float(x) for x in NUMBER.findall(capsys.readouterr().out)]

    return run
