"""The era_vision example in the repository README runs and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)```", text, re.S)
    return [b for b in blocks if re.search(r"^(?:import|from) era_vision\b", b, re.M)]


def run_readme_example(capsys) -> list[float]:
    blocks = readme_blocks()
    assert len(blocks) == 1, "README.md should hold one era_vision example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", capsys.readouterr().out)]


def test_readme_example(capsys):
    (entropy_min,) = run_readme_example(capsys)
    assert entropy_min >= 0.6
