"""bench/gpu_check.py --dry-run, sections env and vision: the GPU check's code at toy sizes on the CPU.

The check runs on a GPU machine only now and then; this keeps its vision section working in
between. It also fails when the section's own code imports a third-party module outside the
section's list (what the GPU machine has, or what tools/make_device_bundle.py carries there).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check_common as common  # noqa: E402


def test_dry_run_of_the_vision_section(tmp_path):
    data = common.dry_run_section("vision", tmp_path)
    for model in ("test_resnet", "test_vit"):
        arms = data["results"][model]["arms"]
        assert set(arms) == {"plain", "era-paper", "era-exact"}
        assert all(a["step_s"] > 0 and a["peak_bytes"] > 0 for a in arms.values())
