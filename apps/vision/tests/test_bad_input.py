"""era-vision-train on bad input, one test per class of fault: exit 2, one error line naming
the argument, no traceback, and no run directory left looking started."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from era_vision_app.train import main
from PIL import Image

from era_core.testing import assert_nothing_made, copy_run, error_line, unusable_outs

# timm's tiny test_resnet on a few batches: seconds per run
TINY = ["--model", "test_resnet", "--img-size", "16", "--epochs", "2", "--batch-size", "16"]
TINY += ["--limit-train-batches", "2", "--limit-val-batches", "1", "--eval-batch-size", "64"]
TINY += ["--no-progress"]


def _fails(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    return error_line(code, capsys.readouterr().err, "era-vision-train", message)


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _files(run: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_size) for p in run.iterdir())


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped after its first epoch (of two): a checkpoint, no DONE."""
    out = tmp_path_factory.mktemp("runs") / "stopped"
    assert main([*TINY, "--out", str(out), "--stop-after", "1"]) == 0
    assert (out / "checkpoint.pt").is_file() and not (out / "DONE").exists()
    return out


def test_unusable_comparison_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A comparison (`--preset digits-compare --seeds ...`) refuses an unusable --out too,
    before it loads data, and makes nothing."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    compare = ["--preset", "digits-compare", "--quick", "--seeds", "0", "--no-progress"]
    for out in (a_file, a_file / "cmp"):
        line = _fails([*compare, "--out", str(out)], "is a file, not a directory", capsys)
        assert str(out) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_unusable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out, message in unusable_outs(tmp_path):
        line = _fails([*TINY, "--out", str(out)], message, capsys)
        assert str(out) in line
    assert_nothing_made(tmp_path)


def test_values_that_slip_past_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    for flags, message in [
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--tau", "2"], "--tau must be > e"),
        (["--tau", "nan"], "--tau must be > e"),
        (["--min-entropy", "nan"], "--min-entropy must be a finite number"),
        (["--threads", "-1"], "--threads must be >= 0"),
        (["--num-classes", "1"], "--num-classes must be >= 2"),
        (["--label-noise", "1"], "--label-noise must be in [0, 1), got 1.0"),
        (["--label-noise", "-0.1"], "--label-noise must be in [0, 1), got -0.1"),
        (["--label-noise", "nan"], "--label-noise must be in [0, 1), got nan"),
    ]:
        _fails([*TINY, "--out", str(out), *flags], message, capsys)
        assert not out.exists()


def _imagefolder(root: Path, per_class: int = 8) -> None:
    for split in ("train", "val"):
        for k, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((12, 12, 3), 90 * k + i, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_undecodable_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(good)
    bad_files = {
        "garbage": b"this is not a PNG",
        "empty": b"",
        "truncated": good.read_bytes()[:40],
    }
    out = tmp_path / "run"
    for i, (kind, content) in enumerate(bad_files.items()):
        root = tmp_path / f"tree-{kind}"
        _imagefolder(root)
        bad = root / "train" / "dog" / "3.png"
        bad.write_bytes(content)
        # the first case through a loader worker: its error comes back as one line too
        workers = ["--workers", "1"] if i == 0 else []
        flags = ["--data-dir", str(root), "--batch-size", "4", *workers]
        line = _fails([*TINY, *flags, "--out", str(out)], "is not a decodable image", capsys)
        assert str(bad) in line and "--data-dir" in line
        assert not out.exists(), "a run that failed in its first epoch leaves nothing"


def _cifar(root: Path) -> None:
    root.mkdir()
    images = np.zeros((4, 3 * 32 * 32), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as handle:
            pickle.dump({b"data": images, b"labels": [0, 1, 2, 3]}, handle)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)


def test_garbage_in_a_cifar_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faults = {
        "data_batch_3": (b"garbage, not a pickle", "data_batch_3 is not a CIFAR-10 python file"),
        "test_batch": (pickle.dumps([1, 2]), "test_batch is not a CIFAR-10 python file"),
        "data_batch_1": (pickle.dumps({b"data": "x", b"labels": [0]}), "data_batch_1 holds no"),
        "batches.meta": (pickle.dumps({b"label_names": [b"\xff"] * 10}), "must be UTF-8"),
    }
    out = tmp_path / "run"
    for i, (name, (content, message)) in enumerate(faults.items()):
        root = tmp_path / f"cifar{i}"
        _cifar(root)
        (root / name).write_bytes(content)
        if name == "data_batch_3":  # truncated as well as garbage
            _fails([*TINY, "--data-dir", str(root), "--out", str(out)], message, capsys)
            (root / name).write_bytes(pickle.dumps({b"data": 1})[:-3])
        line = _fails([*TINY, "--data-dir", str(root), "--out", str(out)], message, capsys)
        assert str(root) in line and not out.exists()


def test_broken_checkpoints_and_configs_on_resume(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((stopped_run / "config.json").read_text())

    def edited(**changes: object) -> bytes:
        return json.dumps({**config, **changes}).encode()

    faults = {
        "empty checkpoint": ("checkpoint.pt", b"", "is empty"),
        "truncated checkpoint": ("checkpoint.pt", None, "cannot be read"),
        "garbage checkpoint": ("checkpoint.pt", b"not a checkpoint", "cannot be read"),
        "a checkpoint of something else": ("checkpoint.pt", _torch_bytes([1]), "lacks model"),
        "config not JSON": ("config.json", b"{", "is not valid JSON"),
        "edited lr": (
            "config.json",
            edited(lr=config["lr"] * 2),
            f"config.json differs from the config its checkpoint.pt was written with (lr: "
            f"checkpoint {config['lr']!r}, config.json {config['lr'] * 2!r})",
        ),
        "edited type": ("config.json", edited(epochs="two"), "config.json epochs='two' is not"),
        "unknown key": ("config.json", edited(lrr=1), "unknown config keys ['lrr']"),
    }
    for i, (name, content, message) in enumerate(faults.values()):
        run = copy_run(stopped_run, tmp_path / f"r{i}")
        if content is None:
            content = (run / name).read_bytes()[:200]
        (run / name).write_bytes(content)
        before = _files(run)
        _fails(["--resume", str(run), "--no-progress"], message, capsys)
        assert _files(run) == before, name


def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(
    stopped_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "killed"
    run.mkdir()
    (run / "config.json").write_bytes((stopped_run / "config.json").read_bytes())
    (run / "metrics.csv").write_text("")  # what a kill in the first epoch leaves
    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert (run / "DONE").is_file() and len((run / "metrics.csv").read_text().splitlines()) == 3
    assert not list(run.glob(".*.tmp")), "a temporary file survived in a finished run"
