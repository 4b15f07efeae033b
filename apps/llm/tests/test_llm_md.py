"""docs/llm.md stays true to the code: its flags exist and its Python blocks run."""

import re
from pathlib import Path

import pytest
from era_llm_app.config import build_parser as train_parser
from era_llm_app.evaluate import build_parser as eval_parser
from era_llm_app.math_data import build_parser as convert_parser

DOC = Path(__file__).resolve().parents[3] / "docs" / "llm.md"
TEXT = DOC.read_text()
UV_FLAGS = {"--package", "--extra"}  # of `uv sync` in the install line


def _options(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def test_every_flag_in_the_docs_exists():
    known = _options(train_parser()) | _options(eval_parser()) | _options(convert_parser())
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", TEXT)) - UV_FLAGS
    assert mentioned, "no flags found"
    assert mentioned <= known, sorted(mentioned - known)


def test_every_train_flag_is_documented():
    undocumented = {o for o in _options(train_parser()) if o.startswith("--")} - set(
        re.findall(r"--[a-z][a-z0-9-]*", TEXT)
    )
    assert undocumented <= {"--help"}, sorted(undocumented)


@pytest.mark.parametrize(
    "block", re.findall(r"```python\n(.*?)```", TEXT, flags=re.S), ids=lambda b: b[:30]
)
def test_python_blocks_run(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(DOC), "exec"), {})


def test_documented_comparison_command_uses_the_recommended_arguments():
    from era_llm_app.compare import RECOMMENDED_ARGS

    command = re.search(r"era-llm-train --compare[^`]*", TEXT).group(0)
    words = command.replace("\\\n", " ").split()
    pairs = list(zip(RECOMMENDED_ARGS[::2], RECOMMENDED_ARGS[1::2], strict=True))
    for flag, value in pairs:
        assert words[words.index(flag) + 1] == value, flag
    train_parser().parse_args(["--compare", *RECOMMENDED_ARGS])  # valid flags and values
