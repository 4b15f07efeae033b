"""The training and validation loaders: timm's data pipeline, fed by samplers of our own.

The parts are timm's, in the order ``timm.data.create_loader`` chains them: the transform
(``create_transform`` with ``use_prefetcher=True``: crops, flips, colour jitter, RandAugment /
AutoAugment / AugMix, uint8 output), for ``--aug-splits N`` the split dataset
(``AugMixDataset``: a clean view and N-1 augmented views of each image), ``fast_collate`` (the
splits laid out one after the other in the batch) and the ``PrefetchLoader`` (moves the batch to
the device on a side stream under CUDA, normalises it there and applies random erasing, the
first split spared with ``--resplit``). Mixup / CutMix is timm's ``Mixup`` in the training step.

What ``create_loader`` would add and we do not take is its choice of sampler: a
``DistributedSampler`` seeded 0 (every ``--seed`` would see the same data order) or, for one
process, a ``RandomSampler`` drawn from the global RNG (another order than N processes see),
and an ``OrderedDistributedSampler`` that pads the validation set with duplicates. Ours:
:func:`build_loaders` shuffles the training set with a ``DistributedSampler`` seeded from
``--seed`` for every process count, so N processes see together what one process sees, and
gives validation rank r the images ``r, r + N, ...`` (each image once).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, AugMixDataset, create_transform
from timm.data.loader import PrefetchLoader, fast_collate
from torch.utils.data import DataLoader, DistributedSampler

from .config import TrainConfig
from .data import Datasets
from .distributed import Dist

__all__ = ["DIGITS_MEAN_STD", "Loaders", "build_loaders", "mean_std"]

DIGITS_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass
class Loaders:
    """This rank's training and validation loaders (batches on the device, normalised)."""

    train: PrefetchLoader
    val: PrefetchLoader
    train_sampler: DistributedSampler  # reshuffled each epoch with set_epoch


def mean_std(layout: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation of ``layout``: 0.5 / 0.5 for the digits, ImageNet's otherwise."""
    if layout == "digits":
        return DIGITS_MEAN_STD
    return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def _shuffle_seed(seed: int) -> int:
    """The training sampler's seed (it shuffles with ``seed + epoch``): runs with neighbouring
    ``--seed`` values do not share an epoch order."""
    return (seed * 1_000_003 + 12345) % 2**62


def _worker_init(worker_id: int) -> None:  # python/numpy RNGs of a worker follow torch's seed
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002


def _transforms(config: TrainConfig, layout: str) -> tuple[Any, Any]:
    mean, std = mean_std(layout)
    common = {"interpolation": config.interpolation, "mean": mean, "std": std,
              "use_prefetcher": True}  # fmt: skip
    train = create_transform(
        config.img_size,
        is_training=True,
        no_aug=not config.aug,
        scale=tuple(config.scale),
        hflip=config.hflip,
        color_jitter=config.color_jitter,
        auto_augment=config.auto_augment if config.aug else None,
        separate=config.aug_splits > 0,
        **common,
    )
    val = create_transform(config.img_size, is_training=False, crop_pct=config.crop_pct, **common)
    return train, val


def build_loaders(config: TrainConfig, data: Datasets, device: torch.device, dist: Dist) -> Loaders:
    """The loaders of this rank; ``--batch-size`` and ``--eval-batch-size`` are global.

    The training order is a ``DistributedSampler`` permutation of ``(seed, epoch)``; rank r
    takes every N-th index of it, so the union of the ranks' k-th batches is the k-th batch of
    one process with the same global ``--batch-size``. With ``--aug-splits K`` a batch holds
    ``batch-size / N`` images, each K times (``K x`` as many rows).
    """
    train_tf, val_tf = _transforms(config, data.layout)
    train_set: Any = data.train
    train_set.transform = None
    if config.aug_splits:
        train_set = AugMixDataset(data.train, num_splits=config.aug_splits)
    train_set.transform = train_tf
    data.val.transform = val_tf
    sampler = DistributedSampler(
        data.train,
        num_replicas=dist.world_size,
        rank=dist.rank,
        shuffle=True,
        seed=_shuffle_seed(config.seed),
        drop_last=True,
    )
    common = {"num_workers": config.workers, "collate_fn": fast_collate,
              "pin_memory": device.type == "cuda", "worker_init_fn": _worker_init}  # fmt: skip
    train = DataLoader(
        train_set,
        batch_size=config.batch_size // dist.world_size,
        sampler=sampler,
        drop_last=True,  # as timm: no tiny last batch (batch norm, Mixup's even batches)
        **common,
    )
    val = DataLoader(
        data.val,
        batch_size=math.ceil(config.eval_batch_size / dist.world_size),
        sampler=range(dist.rank, len(data.val), dist.world_size),  # type: ignore[arg-type]
        **common,
    )
    mean, std = mean_std(data.layout)
    erase = config.re_prob if config.aug else 0.0
    re_splits = (config.aug_splits or 2) if config.resplit else 0  # spare the clean split
    prefetch = {"mean": mean, "std": std, "device": device}
    return Loaders(
        PrefetchLoader(
            train, re_prob=erase, re_mode=config.re_mode, re_num_splits=re_splits, **prefetch
        ),
        PrefetchLoader(val, **prefetch),
        sampler,
    )
