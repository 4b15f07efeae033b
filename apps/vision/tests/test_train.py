"""era-vision-train end to end on CPU: learning, exact resume, loaders, errors, presets, comparison.

Runs use timm's tiny `test_resnet` (0.37 M parameters) so each epoch over the embedded digits
takes seconds; the CLI is called in-process through `main([...])`.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from era_vision_app import data as vdata
from era_vision_app.config import compare_presets, load_presets, resolve_config
from era_vision_app.train import main
from PIL import Image

FAST = ["--model", "test_resnet", "--opt", "adamw", "--lr", "0.003", "--weight-decay", "0.01",
        "--img-size", "16"]  # fmt: skip
TIMING = {"img_per_s", "epoch_time_s"}


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "two"
    assert main([*FAST, "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def test_two_epochs_on_digits_learn_far_above_chance(two_epochs):
    rows = _rows(two_epochs)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    expected = {"epoch", "step", "train_loss", "train_top1", "val_top1", "val_top5", "val_nll",
                "val_ece", "val_entropy_mean", "val_entropy_min", "lr", "img_per_s",
                "min_entropy"}  # fmt: skip
    assert expected <= set(rows[0])
    final = rows[-1]
    assert float(final["val_top1"]) > 50.0, final  # chance is 10 %
    assert float(final["val_nll"]) < math.log(10)
    assert float(final["train_loss"]) < float(rows[0]["train_loss"])
    # the ERA floor holds on every validation image
    assert float(final["val_entropy_min"]) >= 0.6 - 1e-5
    summary = json.loads((two_epochs / "summary.json").read_text())
    assert summary["num_train"] == 1347 and summary["num_val"] == 450
    assert sum(summary["reliability"]["count"]) == 450
    for name in ("DONE", "config.json", "checkpoint.pt", "curves.png", "metrics.jsonl"):
        assert (two_epochs / name).exists(), name
    assert list((two_epochs / "tb").iterdir()), "TensorBoard events"
    with Image.open(two_epochs / "curves.png") as image:
        assert image.size[0] > 500


def test_resume_is_exact(tmp_path):
    """2 epochs in one go == 1 epoch, stop, resume for 1 more (metrics and weights)."""
    short = [*FAST, "--epochs", "2", "--limit-train-batches", "6", "--limit-val-batches", "1",
             "--eval-batch-size", "64",
             "--no-progress", "--drop-rate", "0.2"]  # fmt: skip
    full_dir, out = tmp_path / "full", tmp_path / "resumed"
    assert main([*short, "--out", str(full_dir)]) == 0
    assert main([*short, "--out", str(out), "--stop-after", "1"]) == 0
    assert not (out / "DONE").exists() and len(_rows(out)) == 1
    assert main(["--resume", str(out), "--no-progress"]) == 0
    full, resumed = _rows(full_dir), _rows(out)
    assert len(full) == len(resumed) == 2
    for a, b in zip(full, resumed, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }
    wa = torch.load(full_dir / "checkpoint.pt", weights_only=False)["model"]
    wb = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0)
    # resuming a finished run is a no-op
    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert len(_rows(out)) == 2


# ---------------------------------------------------------------------------- loaders


def _write_cifar(root: Path, per_batch: int = 8, classes: int = 10) -> np.ndarray:
    """A CIFAR-10 python folder with a known image per sample (channel c of image i = i + c)."""
    root.mkdir(parents=True, exist_ok=True)
    everything = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n0 = len(everything)
        images = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        for i in range(per_batch):
            for c in range(3):
                images[i, c] = (n0 + i + 40 * c) % 256
            images[i, 0, 0, 1] = 255  # marks the top row: checks the HWC transpose
            everything.append(images[i])
        labels = [(n0 + i) % classes for i in range(per_batch)]
        with open(root / name, "wb") as handle:
            pickle.dump({b"data": images.reshape(per_batch, -1), b"labels": labels}, handle)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(classes)]}, handle)
    return np.stack(everything)


def _write_imagefolder(root: Path, classes=("cat", "dog", "emu"), per_class: int = 3) -> None:
    for split in ("train", "val"):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((20, 24, 3), 60 * k + i, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_cifar10_loader_reads_the_pickles(tmp_path):
    images = _write_cifar(tmp_path / "cifar")
    data = vdata.load_datasets(tmp_path / "cifar")
    assert data.layout == "cifar10" and data.classes == [f"c{i}" for i in range(10)]
    assert len(data.train) == 40 and len(data.val) == 8
    image, label = data.train[3]
    pixels = np.asarray(image)
    assert pixels.shape == (32, 32, 3) and label == 3
    np.testing.assert_array_equal(pixels[5, 7], images[3, :, 5, 7])
    assert pixels[0, 1, 0] == 255 and pixels[1, 0, 0] != 255
    assert data.val[2][1] == (40 + 2) % 10


def test_imagefolder_loader_uses_sorted_class_folders(tmp_path):
    _write_imagefolder(tmp_path / "tree")
    data = vdata.load_datasets(tmp_path / "tree")
    assert data.layout == "imagefolder" and data.classes == ["cat", "dog", "emu"]
    assert len(data.train) == len(data.val) == 9
    labels = sorted(data.val[i][1] for i in range(9))
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i in range(9):
        image, label = data.train[i]
        assert np.asarray(image)[0, 0, 0] // 60 == label


def test_digits_split_is_fixed_and_stratified():
    x_train, y_train, x_test, y_test = vdata.load_digits_split()
    assert x_train.shape == (1347, 32, 32, 3) and x_test.shape == (450, 32, 32, 3)
    assert x_train.dtype == np.uint8 and (x_train[..., 0] == x_train[..., 2]).all()
    counts = np.bincount(y_test, minlength=10)
    totals = counts + np.bincount(y_train, minlength=10)
    assert (np.abs(counts - totals * 450 / 1797) <= 1).all()  # stratified
    again = vdata.load_digits_split()
    np.testing.assert_array_equal(again[3], y_test)


@pytest.mark.parametrize("layout", ["cifar10", "imagefolder"])
def test_cli_trains_on_generated_data(tmp_path, layout):
    if layout == "cifar10":
        _write_cifar(tmp_path / "d")
        classes = 10
    else:
        _write_imagefolder(tmp_path / "d")
        classes = 3
    out = tmp_path / "run"
    args = [*FAST, "--data-dir", str(tmp_path / "d"), "--epochs", "1", "--img-size", "32",
            "--batch-size", "4", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layout"] == layout and len(summary["classes"]) == classes
    assert (out / "DONE").exists()


# ---------------------------------------------------------------------------- errors


def _error(capsys, args) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_bad_input_fails_before_training(tmp_path, capsys):
    out = tmp_path / "never"
    err = _error(capsys, ["--data-dir", str(tmp_path / "nope"), "--out", str(out)])
    assert "--data-dir" in err and "does not exist" in err
    (tmp_path / "empty").mkdir()
    err = _error(capsys, ["--data-dir", str(tmp_path / "empty"), "--out", str(out)])
    assert "unknown layout" in err and "train/" in err and "data_batch_1" in err
    _write_imagefolder(tmp_path / "tree")
    (tmp_path / "tree" / "val" / "emu").rename(tmp_path / "tree" / "val" / "owl")
    err = _error(capsys, ["--data-dir", str(tmp_path / "tree"), "--out", str(out)])
    assert "class-count mismatch" in err or "only in train" in err
    _write_cifar(tmp_path / "cifar")
    err = _error(capsys, ["--data-dir", str(tmp_path / "cifar"), "--num-classes", "100",
                          "--out", str(out)])  # fmt: skip
    assert "class-count mismatch" in err and "100" in err and "10 classes" in err
    err = _error(capsys, ["--model", "resnet_18", "--out", str(out)])
    assert "--model 'resnet_18'" in err and "resnet18" in err
    err = _error(capsys, ["--min-entropy", "3.0", "--out", str(out)])
    assert "--min-entropy" in err and "2.243" in err
    err = _error(capsys, ["--label-smoothing", "1.5", "--out", str(out)])
    assert "--label-smoothing must be in [0, 1)" in err
    err = _error(capsys, ["--preset", "table1-cifar10-aug-erra", "--out", str(out)])
    assert "did you mean table1-cifar10-aug-era" in err
    err = _error(capsys, ["--preset", "table1-imagenet-aug-era", "--out", str(out)])
    assert "needs --data-dir" in err
    assert not out.exists(), "no run directory for a run that never started"


def test_run_directory_rules(two_epochs, tmp_path, capsys):
    err = _error(capsys, [*FAST, "--out", str(two_epochs)])
    assert "already holds a run" in err and "--resume" in err
    err = _error(capsys, ["--resume", str(tmp_path)])
    assert "no config.json" in err
    err = _error(capsys, ["--resume", str(two_epochs), "--lr", "0.1"])
    assert "--lr cannot change on --resume" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--epochs", "two"])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------------------- presets


def test_presets_hold_the_paper_recipes():
    presets = load_presets()
    table1 = {name: p for name, p in presets.items() if name.startswith("table1-")}
    assert len(table1) == 8
    spec = {  # docs/paper.md §2, Table 1 (top-1 / top-5)
        ("imagenet", "noaug", False): (74.75, 92.04),
        ("imagenet", "noaug", True): (75.44, 92.15),
        ("imagenet", "aug", False): (76.93, 93.37),
        ("imagenet", "aug", True): (77.30, 93.39),
        ("cifar10", "noaug", False): (93.61, 99.69),
        ("cifar10", "noaug", True): (93.82, 99.82),
        ("cifar10", "aug", False): (93.53, 99.84),
        ("cifar10", "aug", True): (93.93, 99.86),
    }
    for (dataset, aug, era), (top1, top5) in spec.items():
        name = f"table1-{dataset}-{aug}-{'era' if era else 'baseline'}"
        p = table1[name]
        assert (p["paper"]["top1"], p["paper"]["top5"]) == (top1, top5)
        assert p["model"] == "resnet50" and p["epochs"] == 200 and p["label_smoothing"] == 0.1
        assert p["era"] is era and p["aug"] is (aug == "aug") and p["drop_rate"] == 0.0
        assert p["min_entropy"] == (1.2 if dataset == "imagenet" else 0.6)
    grid = {n: p for n, p in presets.items() if n.startswith("c21-")}
    assert sorted((p["label_smoothing"], p["drop_rate"], p["era"]) for p in grid.values()) == [
        (0.1, 0.0, False), (0.1, 0.0, True), (0.1, 0.1, False), (0.1, 0.2, False),
        (0.1, 0.3, False), (0.2, 0.0, False), (0.3, 0.0, False),
    ]  # fmt: skip


def test_quick_shrinks_every_preset_and_flags_win():
    for name in load_presets():
        config = resolve_config({}, preset=name, quick=True)
        assert config.epochs <= 2 and config.img_size == 32 and config.model != "resnet50"
        assert config.dataset == "digits" and config.num_classes == 10
    config = resolve_config({"epochs": 3, "model": "test_resnet"}, preset="table1-imagenet-aug-era",
                            quick=True)  # fmt: skip
    assert (config.epochs, config.model, config.min_entropy) == (3, "test_resnet", 1.2)
    config = resolve_config({"data_dir": "/x"}, preset="table1-cifar10-aug-era", quick=True)
    assert config.dataset == "cifar10" and config.limit_train_batches == 20


def test_list_presets(capsys):
    assert main(["--list-presets"]) == 0
    out = capsys.readouterr().out
    assert "table1-imagenet-aug-era" in out and "digits-compare" in out


# ---------------------------------------------------------------------------- comparison


def test_comparison_writes_mean_and_std_over_seeds(tmp_path):
    out = tmp_path / "cmp"
    args = ["--preset", "digits-compare", "--arms", "digits-baseline", "digits-era",
            "--seeds", "0", "1", "--model", "test_resnet", "--epochs", "1",
            "--limit-train-batches", "3", "--limit-val-batches", "1", "--eval-batch-size", "64",
            "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    with open(out / "summary.csv") as handle:
        rows = {row["arm"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"digits-baseline", "digits-era"}
    for arm, row in rows.items():
        finals = [
            json.loads((out / arm / f"seed{s}" / "summary.json").read_text())["final"]
            for s in (0, 1)
        ]
        top1 = [f["val_top1"] for f in finals]
        assert float(row["top1_mean"]) == pytest.approx(np.mean(top1))
        assert float(row["top1_std"]) == pytest.approx(statistics.stdev(top1))
        assert float(row["ece_mean"]) == pytest.approx(np.mean([f["val_ece"] for f in finals]))
        assert row["n"] == "2"
    assert rows["digits-era"]["era"] == "True" and rows["digits-baseline"]["era"] == "False"
    md = (out / "summary.md").read_text()
    assert "| digits-era | yes (0.6) |" in md and " ± " in md
    assert (out / "DONE").exists()
    # running it again reuses the finished runs
    mtime = (out / "digits-era" / "seed1" / "checkpoint.pt").stat().st_mtime
    assert main(args) == 0
    assert (out / "digits-era" / "seed1" / "checkpoint.pt").stat().st_mtime == mtime


def test_optional_paths_run(tmp_path):
    """EMA, Mixup/CutMix (soft targets), bf16 autocast and channels-last in one short run.

    At 32 px, not FAST's 16: at 16 px test_resnet's last stage convolves a 1x1 map with a
    3x3 kernel at stride 2, and torch 2.13's CPU (oneDNN) bf16 weight gradient of that
    shape is uninitialised memory (NaN or 1e30 depending on what ran before; docs/vision.md).
    """
    out = tmp_path / "opts"
    args = [*FAST, "--img-size", "32", "--epochs", "1", "--limit-train-batches", "3",
            "--limit-val-batches", "1", "--eval-batch-size", "64", "--ema", "--mixup", "0.2", "--cutmix", "1.0", "--amp",
            "--channels-last", "--no-era", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    row = _rows(out)[0]
    assert row["min_entropy"] == "" and 0 <= float(row["ema_val_top1"]) <= 100
    assert math.isfinite(float(row["train_loss"]))


def test_the_exact_era_digits_preset_resolves_and_is_an_arm_of_digits_compare():
    config = resolve_config({}, preset="digits-era-exact", quick=True)
    assert (config.era, config.era_mode, config.min_entropy) == (True, "exact", 0.3)
    assert config.dataset == "digits" and config.num_classes == 10 and config.epochs == 2
    assert "0.31 nats" in config.description
    arms = compare_presets()["digits-compare"]["arms"]
    assert arms[:5] == ["digits-baseline", "digits-era", "digits-ls0.2", "digits-ls0.3",
                        "digits-drop0.2"] and "digits-era-exact" in arms  # fmt: skip
