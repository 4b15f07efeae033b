"""The same command with the same seed on the same machine gives the same numbers: a tiny
era-vision-train run twice, its metrics files equal but for the timing columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from era_vision_app.train import main

ARGS = ["--model", "test_resnet", "--img-size", "16", "--epochs", "2", "--batch-size", "32"]
ARGS += ["--limit-train-batches", "3", "--limit-val-batches", "1", "--eval-batch-size", "128"]
ARGS += ["--seed", "5", "--drop-rate", "0.2", "--no-progress"]
TIMING = {"img_per_s", "epoch_time_s"}  # wall-clock: the only columns that may differ


def _without_timing(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING]
    return [[row[i] for i in keep] for row in rows]


def test_two_runs_with_the_same_seed_write_the_same_metrics(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*ARGS, "--out", str(first)]) == 0
    assert main([*ARGS, "--out", str(second)]) == 0
    a, b = _without_timing(first / "metrics.csv"), _without_timing(second / "metrics.csv")
    assert len(a) == 3 and a == b  # header + 2 epochs, the same strings to the last digit
    assert {"val_top1", "val_nll", "train_loss"} <= set(a[0])
    config = json.loads((first / "config.json").read_text())
    assert config == json.loads((second / "config.json").read_text())
    assert config["cpu_threads"]["threads"] == 1  # the embedded digits' default: one thread
    assert config["cpu_threads"]["rule"].startswith("default: min(1, ")
