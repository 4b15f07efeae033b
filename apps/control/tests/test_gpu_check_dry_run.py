"""bench/gpu_check.py --dry-run, sections env and control: the GPU check's code at toy sizes on the CPU.

The check runs on a GPU machine only now and then; this keeps its control section working in
between. It also fails when the section's own code imports a third-party module outside the
section's list (what the GPU machine has, or what tools/make_device_bundle.py carries there).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check_common as common  # noqa: E402


def test_dry_run_of_the_control_section(tmp_path):
    data = common.dry_run_section("control", tmp_path)
    learners = data["results"]["learners"]
    assert {"sac", "sac-era"} <= set(learners)
    assert all(v["updates_per_s"] > 0 and v["flops"] > 0 for v in learners.values())
    assert set(data["results"]["seeds"]) == {"1"}
    assert data["results"]["seeds"]["1"]["vs_one"] == 1.0
    fast = data["results"]["fast"]  # measured, or skipped with its reason
    assert "skipped" in fast or all("updates_per_s" in v or "error" in v for v in fast.values())
