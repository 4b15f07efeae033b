"""timm's data pipeline in era-vision-train: augmentation splits + JSD, timm datasets, the
authors' CIFAR-10 quick-start preset, and one-line errors for the new flags."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from era_vision_app import data as vdata
from era_vision_app.config import load_presets, resolve_config
from era_vision_app.distributed import SINGLE
from era_vision_app.loaders import build_loaders
from era_vision_app.train import main
from PIL import Image

FAST = ["--model", "test_resnet", "--opt", "adamw", "--lr", "0.003", "--weight-decay", "0.01",
        "--img-size", "16", "--no-progress"]  # fmt: skip


def test_aug_splits_lay_out_each_image_once_per_split():
    config = resolve_config({"aug_splits": 3, "batch_size": 8, "img_size": 16, "re_prob": 0.5,
                             "resplit": True})  # fmt: skip
    data = vdata.load_datasets(None)
    loaders = build_loaders(config, data, torch.device("cpu"), SINGLE)
    images, targets = next(iter(loaders.train))
    assert images.shape == (24, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(targets[:8], targets[8:16]) and torch.equal(targets[:8], targets[16:])
    assert not torch.equal(images[:8], images[8:16])  # the augmented views differ
    val_images, _ = next(iter(loaders.val))
    assert val_images.shape[0] == 256 and abs(float(val_images.mean())) < 1.0  # normalised


def test_jsd_run_with_split_batchnorm_trains(tmp_path):
    out = tmp_path / "jsd"
    args = [*FAST, "--epochs", "1", "--limit-train-batches", "3", "--limit-val-batches", "1",
            "--eval-batch-size", "64", "--batch-size", "8", "--aug-splits", "3", "--jsd-loss",
            "--split-bn", "--resplit", "--re-prob", "0.5",
            "--auto-augment", "rand-m9-mstd0.5-inc1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["final"]["train_loss"])
    assert summary["final"]["val_entropy_min"] >= 0.6 - 1e-5
    state = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert any(".aux_bn.1." in key for key in state), "two auxiliary BatchNorms per layer"


def test_timm_dataset_reads_an_image_folder(tmp_path):
    for split in ("train", "val"):
        for k, name in enumerate(("ant", "bee")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((12, 12, 3), 90 * k + i, np.uint8)).save(
                    folder / f"{i}.png"
                )
    data = vdata.load_datasets(tmp_path, timm_dataset="torch/image_folder")
    assert data.layout == "timm" and data.classes == ["ant", "bee"]
    assert len(data.train) == len(data.val) == 4
    with pytest.raises(vdata.DataError, match="--timm-dataset 'torch/cifar10'"):
        vdata.load_datasets(tmp_path, timm_dataset="torch/cifar10")


def test_quickstart_preset_is_the_authors_command():
    p = load_presets()["quickstart-cifar10-era"]
    assert "nothingbutbut/era" in p["source"] and "--aug-splits 3" in p["source"]
    expected = {"model": "resnet50", "epochs": 200, "batch_size": 256, "lr": 0.05, "amp": True,
                "amp_dtype": "float16", "sched": "cosine", "re_prob": 0.6, "re_mode": "pixel",
                "aug_splits": 3, "auto_augment": "rand-m9-mstd0.5-inc1", "resplit": True,
                "split_bn": True, "jsd_loss": True, "dist_bn": "reduce",
                "timm_dataset": "torch/cifar10", "era": True, "min_entropy": 0.6}  # fmt: skip
    assert {k: p[k] for k in expected} == expected
    assert load_presets()["quickstart-cifar10-baseline"]["era"] is False
    for name, preset in load_presets().items():
        assert preset["source"], name


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--aug-splits", "1", "--jsd-loss"], "--aug-splits must be 0 (off) or >= 2, got 1"),
        (["--jsd-loss"], "--jsd-loss needs --aug-splits >= 2"),
        (["--split-bn"], "--split-bn needs --aug-splits >= 2"),
        (["--aug-splits", "3", "--no-aug"], "needs --aug"),
        (["--aug-splits", "3", "--mixup", "0.2"], "cannot be combined with --mixup"),
        (["--timm-dataset", "torch/cifar10"], "needs --data-dir"),
    ],
)
def test_bad_split_flags_fail_in_one_line(tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    assert main([*FAST, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()
