"""The same command with the same seed on the same machine gives the same numbers: a tiny
era-control-train run twice, its metrics files equal but for the timing columns."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)

from era_control_app.train import main

# the shapes of test_train_cli.py's runs, so the compiled programs are shared
ARGS = ["--algo", "sac-era", "--env", "dmc/cartpole-swingup", "--action-repeat", "25"]
ARGS += ["--steps", "60", "--seeds", "2", "--seed", "7", "--log-interval", "20"]
ARGS += ["--eval-interval", "60", "--checkpoint-interval", "40", "--set", "hidden=[32, 32]"]
ARGS += ["--set", "batch_size=32", "--set", "updates_per_step=1", "--set", "buffer_size=50"]
ARGS += ["--no-progress", "--no-tensorboard"]
TIMING = {"updates_per_s", "env_steps_per_s"}  # wall-clock rates: the only columns that differ


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
    assert len(a) > 3 and a == b  # the same strings: every digit of every value
    assert set(a[0]) >= {"step", "seed", "episode_return", "entropy"} and not TIMING & set(a[0])
    config = json.loads((first / "config.json").read_text())
    assert config == json.loads((second / "config.json").read_text())
    threads = config["cpu_threads"]  # the thread counts are part of the run's record
    assert threads["threads"] >= 1 and threads["rule"] and "xla_flags" in threads
