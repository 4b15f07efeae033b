"""--label-noise: which training labels are redrawn, to what, and that runs record and resume it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from era_vision_app.config import TrainConfig
from era_vision_app.data import (
    Datasets,
    ImageArrayDataset,
    NoisyLabels,
    add_label_noise,
    label_noise_offsets,
)
from era_vision_app.distributed import Dist
from era_vision_app.train import main
from era_vision_app.training import prepare

N, K = 300, 10


def _data(n: int = N, classes: int = K) -> Datasets:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n)
    val = ImageArrayDataset(images[:20].copy(), labels[:20].copy())
    return Datasets(ImageArrayDataset(images, labels), val, [str(c) for c in range(classes)], "x")


def _labels(dataset) -> np.ndarray:
    return np.array([dataset[i][1] for i in range(len(dataset))])


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.333])
def test_the_fraction_is_exact_and_no_changed_label_keeps_its_class(fraction):
    data = _data()
    noisy = add_label_noise(data, fraction, seed=3)
    clean, new = _labels(data.train), _labels(noisy.train)
    changed = clean != new
    assert changed.sum() == round(fraction * N)
    assert set(noisy.train.offsets) == set(np.flatnonzero(changed).tolist())
    assert new.min() >= 0 and new.max() < K
    assert np.array_equal(_labels(noisy.val), _labels(data.val)), "validation untouched"
    assert np.array_equal(_labels(data.train), clean), "the clean dataset is not changed"


def test_the_new_labels_spread_over_the_other_classes():
    offsets = label_noise_offsets(20_000, K, 0.5, seed=0)
    counts = np.bincount(list(offsets.values()), minlength=K)
    assert counts[0] == 0 and (counts[1:] > 0).all()
    assert counts[1:].min() > 0.8 * counts[1:].mean()


def test_the_map_follows_the_seed_alone():
    assert label_noise_offsets(N, K, 0.2, seed=5) == label_noise_offsets(N, K, 0.2, seed=5)
    assert label_noise_offsets(N, K, 0.2, seed=5) != label_noise_offsets(N, K, 0.2, seed=6)
    once = add_label_noise(_data(), 0.2, seed=5)
    twice = add_label_noise(once, 0.2, seed=5)  # a comparison passes prepared data on
    assert np.array_equal(_labels(once.train), _labels(twice.train))
    assert not isinstance(twice.train.dataset, NoisyLabels), "drawn from the clean labels"


def test_no_noise_leaves_the_dataset_as_it_is():
    data = _data()
    assert add_label_noise(data, 0.0, seed=1).train is data.train
    assert label_noise_offsets(N, K, 0.001, seed=1) == {}  # round(0.3) = 0


def test_every_rank_prepares_the_same_labels():
    config = TrainConfig(model="test_resnet", label_noise=0.3, seed=4, batch_size=16)
    data = _data()
    ranks = [prepare(config, data, dist=Dist(rank, 2, rank)).data.train for rank in (0, 1)]
    assert ranks[0].offsets == ranks[1].offsets
    assert len(ranks[0].offsets) == round(0.3 * N)


def test_a_run_records_the_noise_and_resumes_it(tmp_path: Path):
    tiny = ["--model", "test_resnet", "--img-size", "16", "--epochs", "2", "--batch-size",
            "16", "--limit-train-batches", "2", "--limit-val-batches", "1", "--no-progress",
            "--label-noise", "0.2", "--threads", "1"]  # fmt: skip
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*tiny, "--out", str(whole)]) == 0
    assert main([*tiny, "--out", str(split), "--stop-after", "1"]) == 0
    assert main(["--resume", str(split), "--no-progress"]) == 0
    config = json.loads((split / "config.json").read_text())
    assert config["label_noise"] == 0.2
    summaries = [json.loads((run / "summary.json").read_text()) for run in (whole, split)]
    assert summaries[0]["num_train_relabelled"] == round(0.2 * 1347)
    assert summaries[0]["final"]["train_loss"] == summaries[1]["final"]["train_loss"]
