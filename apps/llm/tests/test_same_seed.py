"""The same command with the same seed on the same machine gives the same numbers: a tiny
era-llm-train run twice, its metrics files equal but for the timing column."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from era_llm_app.cli import main

ARGS = ["--quick", "--steps", "3", "--warmup-steps", "2", "--eval-size", "4", "--eval-every"]
ARGS += ["2", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4"]
ARGS += ["--seed", "3", "--no-tensorboard"]
TIMING = {"step_time_s"}  # wall-clock: the only column that may differ


def _without_timing(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING]
    return [[row[i] for i in keep] for row in rows]


def test_two_runs_with_the_same_seed_write_the_same_metrics(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--out", str(first), *ARGS]) == 0
    assert main(["--out", str(second), *ARGS]) == 0
    a, b = _without_timing(first / "metrics.csv"), _without_timing(second / "metrics.csv")
    assert len(a) == 4 and a == b  # header + 3 steps, the same strings to the last digit
    assert {"reward_mean", "top_entropy_mean", "loss"} <= set(a[0])
    config = json.loads((first / "config.json").read_text())
    assert config == json.loads((second / "config.json").read_text())
    assert config["cpu_threads"]["threads"] == 1  # the tiny model's default: one thread
