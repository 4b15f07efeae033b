"""Every ```python block of docs/llm-ops.md and docs/llm-integrations.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
PAGES = ["llm-ops.md", "llm-integrations.md"]


def blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize(
    ("page", "index"),
    [(page, i) for page in PAGES if (DOCS / page).exists() for i in range(len(blocks(page)))],
)
def test_doc_block_runs(page, index, capsys):
    code = blocks(page)[index]
    exec(compile(code, f"{page}[{index}]", "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out.strip(), "each example prints its result"
