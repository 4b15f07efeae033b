"""era-vision-train under torchrun: two real gloo processes on CPU.

* A 2-process run equals a 1-process run of the same global batch (metrics within float
  tolerance). BatchNorm would differ (each process normalises its own half batch, and torch's
  SyncBatchNorm runs on CUDA only), so this test uses timm's `test_convnext`, which normalises
  per sample (LayerNorm), with `--no-aug` (deterministic inputs) and no dropout: then the two
  runs compute the same gradients up to the order of float sums.
* Rank 1 is killed (SIGKILL) in the middle of an epoch; `--resume` with 2 processes finishes
  with the same metrics and weights as an uninterrupted 2-process run. That run uses a
  BatchNorm model with augmentation and dropout, so it needs every rank's RNG state and the
  BatchNorm statistics shared before evaluation.

Every process runs one thread; the workers are launched by `python -m torch.distributed.run`
(torchrun) on `-m era_vision_app`, as a user would.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from era_vision_app.train import main

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc"
)

TIMING = {"img_per_s", "epoch_time_s"}
EQUAL = ["--model", "test_convnext", "--img-size", "32", "--opt", "adamw", "--lr", "0.003",
         "--weight-decay", "0.01", "--batch-size", "16", "--eval-batch-size", "150",
         "--epochs", "2", "--limit-train-batches", "3", "--no-aug", "--warmup-epochs", "0",
         "--no-progress"]  # fmt: skip
KILL = ["--model", "test_resnet", "--img-size", "16", "--opt", "adamw", "--lr", "0.003",
        "--weight-decay", "0.01", "--batch-size", "16", "--eval-batch-size", "150",
        "--epochs", "2", "--limit-train-batches", "4", "--drop-rate", "0.2", "--hflip", "0.5",
        "--no-progress"]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def _torchrun(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "era_vision_app", *args]  # fmt: skip


def _run2(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _torchrun(args), env=_env(), capture_output=True, text=True, timeout=900, check=False
    )


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def _worker_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun worker ``rank`` (a child of ``parent`` with ``RANK=rank``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if ppid == parent else []
        except (OSError, IndexError, ValueError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_two_processes_equal_one_process_of_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    torch.set_num_threads(1)
    assert main([*EQUAL, "--out", str(one)]) == 0
    result = _run2([*EQUAL, "--out", str(two)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: val top1") == 1, "only rank 0 reports"
    rows_one, rows_two = _rows(one), _rows(two)
    assert len(rows_one) == len(rows_two) == 2, "only rank 0 logs"
    for a, b in zip(rows_one, rows_two, strict=True):
        assert (a["epoch"], a["step"], a["lr"]) == (b["epoch"], b["step"], b["lr"])
        for key in a:
            if key in TIMING or key in ("epoch", "step", "lr", "min_entropy"):
                continue
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-5, abs=1e-6), key
    summary = json.loads((two / "summary.json").read_text())
    # the whole validation set, each image once (225 per rank, no padding duplicates)
    assert summary["num_val"] == 450 and sum(summary["reliability"]["count"]) == 450
    assert (two / "DONE").exists()
    w1 = torch.load(one / "checkpoint.pt", weights_only=False)
    w2 = torch.load(two / "checkpoint.pt", weights_only=False)
    assert w2["world_size"] == 2 and len(w2["rng_ranks"]) == 2
    for key, value in w1["model"].items():
        torch.testing.assert_close(w2["model"][key], value, rtol=1e-4, atol=1e-5)


def test_two_processes_train_on_the_labels_of_one_process_under_label_noise(tmp_path):
    """--label-noise is drawn before the sampler splits the data: both ranks relabel the same
    images the same way, so the 2-process run still equals the 1-process one."""
    one, two = tmp_path / "one", tmp_path / "two"
    noisy = [*EQUAL, "--epochs", "1", "--label-noise", "0.4"]
    torch.set_num_threads(1)
    assert main([*noisy, "--out", str(one)]) == 0
    result = _run2([*noisy, "--out", str(two)])
    assert result.returncode == 0, result.stderr[-3000:]
    (a,), (b,) = _rows(one), _rows(two)
    for key in ("train_loss", "train_top1", "val_nll", "val_top1"):
        assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-5, abs=1e-6), key
    summary = json.loads((two / "summary.json").read_text())
    assert summary["num_train_relabelled"] == round(0.4 * 1347)


def test_a_killed_rank_resumes_to_the_uninterrupted_run(tmp_path, capsys):
    full, killed = tmp_path / "full", tmp_path / "killed"
    result = _run2([*KILL, "--out", str(full)])
    assert result.returncode == 0, result.stderr[-3000:]

    launcher = subprocess.Popen(
        _torchrun([*KILL, "--out", str(killed)]),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not (killed / "checkpoint.pt").exists():  # epoch 1 is saved: epoch 2 has begun
            assert launcher.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
            time.sleep(0.02)
        pid = _worker_pid(launcher.pid, 1)
        assert pid is not None, "rank 1 not found"
        os.kill(pid, signal.SIGKILL)
        assert launcher.wait(timeout=600) != 0  # torchrun stops the other rank and fails
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert not (killed / "DONE").exists()
    epoch = torch.load(killed / "checkpoint.pt", weights_only=False)["epoch"]
    assert epoch == 1

    # the run's data order and RNG streams belong to 2 processes: 1 is refused, nothing written
    before = sorted(p.name for p in killed.iterdir() if not p.name.startswith("."))
    assert main(["--resume", str(killed), "--no-progress"]) == 2
    assert "trained with 2 process(es)" in capsys.readouterr().err
    assert sorted(p.name for p in killed.iterdir() if not p.name.startswith(".")) == before

    result = _run2(["--resume", str(killed), "--no-progress"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows_full, rows_resumed = _rows(full), _rows(killed)
    assert len(rows_full) == len(rows_resumed) == 2
    for a, b in zip(rows_full, rows_resumed, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }
    wa = torch.load(full / "checkpoint.pt", weights_only=False)
    wb = torch.load(killed / "checkpoint.pt", weights_only=False)
    for key in wa["model"]:
        torch.testing.assert_close(wa["model"][key], wb["model"][key], rtol=0, atol=0)
    assert (killed / "DONE").exists()


def _one_line_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("era-vision-train: error: "), err
    return err


def test_bad_distributed_settings_fail_in_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "never"
    base = ["--model", "test_resnet", "--out", str(out)]
    err = _one_line_error(capsys, [*base, "--sync-bn"])
    assert "--sync-bn needs several processes" in err
    # as rank 0 of 2 processes (every check below fails before the process group is joined)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    err = _one_line_error(capsys, [*base, "--batch-size", "15"])
    assert "--batch-size 15 is the global batch" in err and "2 processes" in err
    err = _one_line_error(capsys, [*base, "--sync-bn", "--device", "cpu"])
    assert "--sync-bn needs CUDA" in err
    err = _one_line_error(capsys, ["--preset", "digits-compare", "--out", str(out)])
    assert "comparison" in err and "torchrun" in err
    monkeypatch.setenv("RANK", "1")  # the other ranks fail the same way, silently
    assert main([*base, "--batch-size", "15"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "2")
    err = _one_line_error(capsys, base)
    assert "RANK=2, WORLD_SIZE=2" in err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    err = _one_line_error(capsys, base)
    assert "WORLD_SIZE='two'" in err
    assert not out.exists()
