"""bench/gpu_check.py --dry-run, sections env and llm: the GPU check's code at toy sizes on the CPU.

The check runs on a GPU machine only now and then; this keeps its llm section working in
between. It also fails when the section's own code imports a third-party module outside the
section's list (what the GPU machine has, or what tools/make_device_bundle.py carries there).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check_common as common  # noqa: E402


def test_dry_run_of_the_llm_section(tmp_path):
    data = common.dry_run_section("llm", tmp_path)
    grpo = data["results"]["grpo"]
    assert set(grpo) == {"grpo+era", "grpo"} and all(g["step_s"] > 0 for g in grpo.values())
    cases = {c["case"]: c for c in data["results"]["logprobs"]["cases"]}
    timed = {"ours ERA", "naive ERA", "ours plain", "ours ERA from hidden",
             "naive ERA from hidden", "ours ERA, eager"}  # fmt: skip
    assert all(cases[c]["time_s"] > 0 for c in timed), cases
    assert all("CUDA only" in cases[c]["skipped"] for c in set(cases) - timed)
