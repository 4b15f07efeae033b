"""The verl recipes under apps/llm/recipes build the command line they document: run with a
stand-in `python` on PATH that prints its arguments instead of starting verl (verl's GPU
trainer cannot run here; only the shell logic is under test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LOSS = "actor_rollout_ref.actor.policy_loss."

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _overrides(tmp_path: Path, recipe: str, **env: str) -> list[str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "python").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (fake / "python").chmod(0o755)
    environ = {"PATH": f"{fake}:{os.environ['PATH']}", "HOME": str(tmp_path), **env}
    out = subprocess.run(
        ["bash", str(RECIPES / recipe)], env=environ, capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def test_the_7b_recipe_uses_the_top_k_stage(tmp_path: Path) -> None:
    args = _overrides(tmp_path, "qwen2.5-math-7b_dapo17k.sh")
    assert args[:2] == ["-m", "era_llm.integrations.verl"]
    assert f"{LOSS}loss_mode=era" in args
    assert f"+{LOSS}era_logit_topk=20" in args
    assert not any("era_topk_label" in a for a in args)  # the default: the authors' constant


def test_the_top_k_stage_can_be_set_or_left_out(tmp_path: Path) -> None:
    args = _overrides(
        tmp_path, "qwen2.5-math-7b_dapo17k.sh", ERA_LOGIT_TOPK="0", ERA_TOPK_LABEL="renormalise"
    )
    assert f"+{LOSS}era_logit_topk=0" in args and f"+{LOSS}era_topk_label=renormalise" in args
    args = _overrides(tmp_path, "qwen2.5-math-1.5b_math-l3-5.sh")
    assert f"{LOSS}loss_mode=era" in args
    assert not any("era_logit_topk" in a for a in args)  # the full softmax


def test_a_baseline_gets_no_era_keys(tmp_path: Path) -> None:
    args = _overrides(tmp_path, "qwen2.5-math-7b_dapo17k.sh", METHOD="grpo")
    assert f"{LOSS}loss_mode=vanilla" in args
    assert not any(".era_" in a for a in args)
