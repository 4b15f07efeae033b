"""The era-core examples in the README and the package README run and print what they say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]


DOMAIN_IMPORT = re.compile(r"^\s*(?:import|from) era_(?:control|vision|llm)\b", re.M)


@pytest.mark.parametrize("readme", ["README.md", "packages/era-core/README.md"])
def test_readme_examples_run(readme, capsys, readme_blocks):
    # the examples that need only era-core (each domain session runs its own)
    blocks = [b for b in readme_blocks(ROOT / readme) if not DOMAIN_IMPORT.search(b)]
    assert blocks, f"{readme} has no python example"
    for block in blocks:
        namespace: dict = {}
        np.random.seed(0)  # noqa: NPY002 - the README uses np.random.randn
        exec(compile(block, readme, "exec"), namespace)
    printed = [float(line) for line in capsys.readouterr().out.split()]
    if readme == "README.md":
        gaussian_min, softmax_min = printed
        assert gaussian_min >= -6.0 - 1e-9  # the target, or more where the clamp fires
        assert 0.6 <= softmax_min <= 0.6 * 1.01 + 0.05  # floor holds and is near-tight
