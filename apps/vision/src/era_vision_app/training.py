"""The training run of era-vision-train: checks, components, epochs, checkpoints, summary.

A thin loop around timm's factories (the data pipeline of :mod:`era_vision_app.loaders`,
``create_optimizer_v2``, ``create_scheduler_v2``, its label-smoothing / soft-target / JSD
losses, ``Mixup``, split BatchNorm and ``ModelEmaV3``) and ``era_vision.create_model``. The run directory's lifecycle (new run,
resume with a config check, atomic checkpoint, ``summary.json`` and ``DONE``, RNG states) is
``era_core.runs``; the metric files are ``era_core.runlog``.

:func:`train` is a sequence of named steps: :func:`open_run`, :func:`build`,
:func:`restore`, then per epoch :func:`train_epoch`, :func:`evaluate_epoch` and
:func:`save_checkpoint`, and at the end :func:`finish`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.layers import convert_splitbn_model, convert_sync_batchnorm
from timm.loss import JsdCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, distribute_bn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

import era_vision
from era_core import runs, threads
from era_core.runlog import MetricsLogger
from era_core.runs import RunError
from era_vision.metrics import ClassificationMetrics

from . import distributed
from .config import ConfigError, DataError, TrainConfig
from .data import Datasets, NoisyLabels, add_label_noise, load_datasets
from .distributed import SINGLE, Dist
from .loaders import build_loaders

__all__ = [
    "CHECKPOINT",
    "DONE",
    "RESUME_OVERRIDES",
    "Prepared",
    "RunError",
    "prepare",
    "train",
]

CHECKPOINT = "checkpoint.pt"
DONE = runs.DONE
# may change between sessions; nothing else may
RESUME_OVERRIDES = ("workers", "device", "threads", "cpu_threads")
# --threads 0 on data other than the embedded digits: every usable core, at most this many
MAX_THREADS = 8


# ----------------------------------------------------------------------------- checks


def check_model_name(name: str) -> None:
    """Unknown timm names fail before any data is read, with close names suggested."""
    try:
        era_vision.check_model_name(name)
    except ValueError as error:
        raise ConfigError(f"--model {name!r}: {error}") from None


def check_min_entropy(config: TrainConfig, num_classes: int) -> None:
    if not config.era:
        return
    try:
        era_vision.ERAConfig(config.min_entropy, config.tau, config.era_mode).check(num_classes)
    except ValueError as error:
        raise ConfigError(f"--min-entropy: {error}") from None


@dataclass
class Prepared:
    """A validated configuration with its data, before any file is written."""

    config: TrainConfig
    data: Datasets


def check_processes(config: TrainConfig, dist: Dist) -> None:
    """The settings that depend on the number of processes (``--batch-size`` is global)."""
    if config.sync_bn and not dist.enabled:
        raise ConfigError(
            "--sync-bn needs several processes (torchrun --nproc-per-node N, N >= 2); "
            "one process has no other batch statistics to synchronise with"
        )
    if config.sync_bn and resolve_device(config.device, dist).type != "cuda":
        raise ConfigError(
            f"--sync-bn needs CUDA devices (got --device {config.device!r} on this machine): "
            "torch's SyncBatchNorm does not run on CPU"
        )
    if config.batch_size % dist.world_size:
        raise ConfigError(
            f"--batch-size {config.batch_size} is the global batch and must be divisible by the "
            f"{dist.world_size} processes (each takes batch-size / processes)"
        )


def prepare(config: TrainConfig, data: Datasets | None = None, dist: Dist = SINGLE) -> Prepared:
    """Every check that can fail before training: config ranges, model name, processes, data,
    H_min.

    ``data`` reuses datasets already loaded from the same ``--data-dir`` (comparisons); the
    returned ``Prepared.data`` carries this run's ``--label-noise`` (drawn from the clean
    labels, whatever noise ``data`` carried).
    """
    config.validate()
    check_processes(config, dist)
    check_model_name(config.model)
    if config.era and config.num_classes is not None:
        check_min_entropy(config, config.num_classes)
    if data is None:
        data = load_datasets(config.data_dir, config.num_classes, timm_dataset=config.timm_dataset,
                             train_split=config.train_split, val_split=config.val_split)  # fmt: skip
    elif config.num_classes is not None and config.num_classes != data.num_classes:
        raise DataError(
            f"class-count mismatch: expected --num-classes {config.num_classes}, but the data "
            f"has {data.num_classes} classes"
        )
    check_min_entropy(config, data.num_classes)
    # before any sampler or loader: every rank wraps the same training set the same way
    data = add_label_noise(data, config.label_noise, config.seed)
    if len(data.train) < config.batch_size:
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the training set "
            f"({len(data.train)} images)"
        )
    plan = set_threads(config)
    return Prepared(dataclasses.replace(config, cpu_threads=plan.to_dict()), data)


def set_threads(config: TrainConfig) -> threads.ThreadPlan:
    """Choose and set the CPU threads of torch and the BLAS pools (``era_core.threads``):
    ``--threads N``, else the count ``config.cpu_threads`` recorded (a resumed run), else 1 on
    the embedded digits (32x32 images: an op is too small to gain from more threads, and two
    threads that share a busy machine wait for each other) and every usable core up to
    :data:`MAX_THREADS` otherwise. Returns the plan as it took effect."""
    if config.data_dir is None and config.timm_dataset is None:
        default, reason = 1, "the embedded digits: ops too small to split"
    else:
        default, reason = MAX_THREADS, "every usable core"
    plan = threads.choose_threads(
        config.threads, default=default, reason=reason, stored=config.cpu_threads
    )
    threads.apply_blas(plan)
    return threads.apply_torch(plan)


# ----------------------------------------------------------------------------- components


def create_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """``era_vision.create_model`` for ``config`` (the plain timm model when ERA is off)."""
    kwargs: dict[str, Any] = {"drop_rate": config.drop_rate}
    if config.drop_path_rate:
        kwargs["drop_path_rate"] = config.drop_path_rate
    return era_vision.create_model(
        config.model,
        num_classes=num_classes,
        min_entropy=config.min_entropy if config.era else None,
        tau=config.tau,
        mode=config.era_mode,
        img_size=config.img_size,
        **kwargs,
    )


def resolve_device(name: str, dist: Dist = SINGLE) -> torch.device:
    """``--device`` for this process; under torchrun CUDA means ``cuda:LOCAL_RANK``."""
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name!r} but CUDA is not available")
    if dist.enabled and device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"--device {name!r}: under torchrun each process takes cuda:LOCAL_RANK; "
                "pass --device cuda or auto"
            )
        device = torch.device("cuda", dist.local_rank)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG that libraries draw from)
    torch.manual_seed(seed)


def _rank_seed(seed: int, rank: int) -> int:
    """The seed of the augmentation and dropout streams of rank ``rank`` >= 1."""
    return (seed * 1_000_003 + rank * 104_729) % 2**63


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's and (when present) CUDA's RNG states."""
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}
    return runs.rng_state(torch=torch.get_rng_state(), **cuda)


def set_rng_state(state: dict[str, Any]) -> None:
    framework = runs.set_rng_state(state)
    torch.set_rng_state(framework["torch"])
    if "cuda" in framework and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(framework["cuda"])


@dataclass
class Components:
    """Everything one run trains with, built from its config and data by :func:`build`."""

    device: torch.device
    dist: Dist
    model: nn.Module
    step_model: nn.Module  # ``model``, its DistributedDataParallel, and/or its torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a timm scheduler, or None
    train_loader: Any  # timm PrefetchLoaders: batches on the device, normalised
    val_loader: Any
    train_sampler: DistributedSampler  # this rank's shard, reshuffled each epoch (set_epoch)
    updates_per_epoch: int
    mixup: Mixup | None
    loss_fn: nn.Module
    ema: ModelEmaV3 | None
    scaler: torch.amp.GradScaler | None


def _loss(config: TrainConfig, num_classes: int) -> tuple[Mixup | None, nn.Module]:
    if config.jsd_loss:
        return None, JsdCrossEntropy(num_splits=config.aug_splits,
                                     smoothing=config.label_smoothing)  # fmt: skip
    if config.mixup > 0 or config.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=config.mixup,
            cutmix_alpha=config.cutmix,
            label_smoothing=config.label_smoothing,
            num_classes=num_classes,
        )
        return mixup, SoftTargetCrossEntropy()
    if config.label_smoothing > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=config.label_smoothing)
    return None, nn.CrossEntropyLoss()


def build(
    config: TrainConfig, data: Datasets, dist: Dist = SINGLE, device: torch.device | None = None
) -> Components:
    """Seed, set the transforms and build model (DDP-wrapped for several processes),
    optimizer, loaders, schedule, loss, EMA."""
    device = resolve_device(config.device, dist) if device is None else device
    distributed.setup(dist, device)
    seed_everything(config.seed)  # the same initial weights on every rank
    model = create_model(config, data.num_classes)
    if config.split_bn:
        model = convert_splitbn_model(model, config.aug_splits)
    if config.sync_bn:
        model = convert_sync_batchnorm(model)
    model = model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    wrapped = model
    if dist.enabled:
        wrapped = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    step_model = torch.compile(wrapped) if config.compile else wrapped
    optimizer = create_optimizer_v2(
        model,
        opt=config.opt,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
    )
    loaders = build_loaders(config, data, device, dist)
    sampler, train_loader, val_loader = loaders.train_sampler, loaders.train, loaders.val
    updates_per_epoch = len(train_loader)
    if config.limit_train_batches:
        updates_per_epoch = min(updates_per_epoch, config.limit_train_batches)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=config.sched,
        num_epochs=config.epochs,
        warmup_epochs=min(config.warmup_epochs, config.epochs - 1),
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    mixup, loss_fn = _loss(config, data.num_classes)
    ema = ModelEmaV3(model, decay=config.ema_decay) if config.ema else None
    float16 = config.amp and config.amp_dtype == "float16"
    scaler = torch.amp.GradScaler(device.type) if float16 else None
    if dist.rank:  # each further rank its own augmentation and dropout streams
        seed_everything(_rank_seed(config.seed, dist.rank))
    return Components(
        device, dist, model, step_model, optimizer, scheduler, train_loader, val_loader,
        sampler, updates_per_epoch, mixup, loss_fn, ema, scaler,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the run


def resume_overrides(stored: dict[str, Any], config: TrainConfig) -> tuple[str, ...]:
    """The keys that may differ on ``--resume``: :data:`RESUME_OVERRIDES`, and settings a
    stored ``config.json`` lacks while ``config`` holds their default (a run directory written
    before the setting existed trained with the default)."""
    defaults = TrainConfig().to_dict()
    given = config.to_dict()
    absent = tuple(k for k in given if k not in stored and given[k] == defaults[k])
    return RESUME_OVERRIDES + absent


def _open_run(config: TrainConfig, out: Path, *, resume: bool) -> runs.Run:
    if not resume:
        return runs.new_run(out, config.to_dict(), checkpoint=CHECKPOINT)
    may_change = resume_overrides(runs.read_config(out), config)
    run = runs.resume_run(out, config.to_dict(), may_change=may_change, checkpoint=CHECKPOINT)
    if not run.done and not run.has_checkpoint():  # killed before its first checkpoint
        return run.restart()  # starts again in place, from its stored config
    return run


def open_run(config: TrainConfig, out: Path, *, resume: bool, dist: Dist = SINGLE) -> runs.Run:
    """A new run in ``out`` (missing or empty), or the run there reopened; a resumed run must
    have the same config but for :func:`resume_overrides`, and a checkpoint unless done.

    A resumed run that never wrote a checkpoint (killed in its first epoch) starts again in
    place: the returned run's ``resumed`` is then ``False``.

    Only rank 0 touches the directory; the other ranks get its verdict (the same
    :class:`RunError`, or a :class:`~era_core.runs.Run` they only read from).
    """
    run, error = None, None
    if dist.is_main:
        try:
            run = _open_run(config, out, resume=resume)
        except RunError as caught:
            error = str(caught)
    error, resumed = dist.broadcast((error, run.resumed if run is not None else resume))
    if error is not None:
        raise RunError(error)
    if run is None:
        run = runs.Run(out, config.to_dict(), resumed=resumed, checkpoint=CHECKPOINT,
                       flag="--resume" if resume else "--out")  # fmt: skip
    return run


def check_checkpoint_config(run: runs.Run, state: dict[str, Any], config: TrainConfig) -> None:
    """``RunError`` when the run's config (``config.json``) is not the one its checkpoint was
    written with, but for :data:`RESUME_OVERRIDES`: ``config.json`` was edited after the run
    started, and the run cannot go on with other settings than it trained with."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    given = {k: v for k, v in config.to_dict().items() if k in saved}
    diff = runs.config_diff(saved, given, may_change=RESUME_OVERRIDES)
    if diff:
        named = "; ".join(f"{k}: checkpoint {a!r}, config.json {b!r}" for k, (a, b) in diff.items())
        raise RunError(
            f"--resume {str(run.path)!r}: config.json differs from the config its {CHECKPOINT} "
            f"was written with ({named}); restore config.json, or start a new run with --out"
        )


def _load_state(run: runs.Run, device: torch.device) -> dict[str, Any]:
    """The checkpoint's dict; ``RunError`` when it is missing, unreadable or not one."""
    state = run.load_checkpoint(
        deserialize=lambda blob: torch.load(
            io.BytesIO(blob), map_location=device, weights_only=False
        )
    )
    keys = ("model", "optimizer", "epoch", "step", "last_eval", "rng")
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise RunError(
            f"--resume {str(run.path)!r}: {CHECKPOINT} is not a checkpoint of era-vision-train "
            f"(it lacks {', '.join(missing)}); start the run again in a new directory"
        )
    return state


def restore(
    run: runs.Run, parts: Components, config: TrainConfig | None = None
) -> tuple[int, int, dict[str, Any] | None]:
    """Load the checkpoint into ``parts`` (after checking that it was written with ``config``
    when given); returns ``(epoch, step, last_eval)``."""
    state = _load_state(run, parts.device)
    if config is not None:
        check_checkpoint_config(run, state, config)
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.scheduler is not None:
        parts.scheduler.load_state_dict(state["scheduler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(state["ema"])
    if parts.scaler is not None:
        parts.scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rng_ranks", [state["rng"]])
    if len(per_rank) != parts.dist.world_size:
        raise RunError(
            f"--resume {str(run.path)!r}: the run trained with {len(per_rank)} process(es), this "
            f"is {parts.dist.world_size}; resume it with the same number (torchrun "
            f"--nproc-per-node), as its data order and RNG streams depend on it"
        )
    set_rng_state(per_rank[parts.dist.rank])
    return state["epoch"], state["step"], state["last_eval"]


def _autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=config.amp)


def _update(
    parts: Components,
    config: TrainConfig,
    images: torch.Tensor,
    targets: torch.Tensor,
    step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch; returns ``(loss, logits)`` (detached)."""
    with _autocast(config, parts.device):
        logits = parts.step_model(images)
        loss = parts.loss_fn(logits, targets)
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        loss.backward()
        parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update(parts.model, step=step)
    if parts.scheduler is not None:
        parts.scheduler.step_update(num_updates=step)
    return loss.detach(), logits.detach()


def train_epoch(
    parts: Components, config: TrainConfig, epoch: int, step: int, progress: bool
) -> tuple[dict[str, float], int]:
    """One pass over the training loader; returns the epoch's training metrics (loss, top-1,
    img/s, start time) and the global step after it."""
    parts.train_sampler.set_epoch(epoch)
    parts.model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    batches = parts.train_loader
    if config.limit_train_batches:
        batches = itertools.islice(parts.train_loader, config.limit_train_batches)
    bar = tqdm(
        batches,
        total=parts.updates_per_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not (progress and parts.dist.is_main),
        leave=False,
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    for images, targets in bar:
        images = images.to(parts.device, non_blocking=True)
        targets = targets.to(parts.device, non_blocking=True)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        hard_targets = targets
        if parts.mixup is not None:
            images, targets = parts.mixup(images, targets)
        step += 1
        loss, logits = _update(parts, config, images, targets, step)
        n = images.shape[0]
        loss_sum += float(loss) * n
        correct += int((logits.argmax(-1) == hard_targets).sum())
        seen += n
        elapsed = time.perf_counter() - start
        bar.set_postfix(
            loss=f"{loss_sum / seen:.3f}",
            acc=f"{100 * correct / seen:.1f}",
            img_s=f"{seen / max(elapsed, 1e-9):.0f}",
        )
    bar.close()
    loss_sum, correct, seen = parts.dist.all_sum([loss_sum, correct, seen], parts.device)
    train_time = time.perf_counter() - start
    if parts.scheduler is not None:
        parts.scheduler.step(epoch + 1)
    stats = {
        "train_loss": loss_sum / max(seen, 1),
        "train_top1": 100.0 * correct / max(seen, 1),
        "img_per_s": seen / max(train_time, 1e-9),
        "epoch_start": start,  # perf_counter at the epoch's start, for epoch_time_s
    }
    return stats, step


def evaluate(
    model: nn.Module,
    loader: Any,
    config: TrainConfig,
    device: torch.device,
    limit: int = 0,
    dist: Dist = SINGLE,
) -> ClassificationMetrics:
    """The metrics of ``model`` over ``loader``; with several processes, over every rank's
    slice (the accumulators are gathered and merged, so counts and sums are exact)."""
    metrics = ClassificationMetrics()
    model.eval()
    batches = itertools.islice(loader, limit) if limit else loader
    with torch.no_grad():
        for images, targets in batches:
            images = images.to(device, non_blocking=True)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with _autocast(config, device):
                logits = model(images)
            metrics.update(logits.float(), targets.to(device))
    if not dist.enabled:
        return metrics
    merged = ClassificationMetrics(metrics.n_bins)
    for part in dist.gather(metrics):
        merged.merge(part)
    return merged


def sync_batchnorm_stats(parts: Components, config: TrainConfig) -> None:
    """Give every rank the same BatchNorm running statistics (``--dist-bn``) before they
    evaluate their slices and rank 0 checkpoints them."""
    if not parts.dist.enabled:
        return
    reduce = config.dist_bn == "reduce"
    distribute_bn(parts.model, parts.dist.world_size, reduce)
    if parts.ema is not None:
        distribute_bn(parts.ema.module, parts.dist.world_size, reduce)


def evaluate_epoch(
    parts: Components, config: TrainConfig, epoch: int, step: int, stats: dict[str, float]
) -> dict[str, Any]:
    """Validate after an epoch; returns ``last_eval``: the metrics row and reliability bins."""
    sync_batchnorm_stats(parts, config)
    limit = config.limit_val_batches
    val = evaluate(parts.model, parts.val_loader, config, parts.device, limit, parts.dist)
    result = val.compute()
    row = {
        "epoch": epoch + 1,
        "step": step,
        "train_loss": stats["train_loss"],
        "train_top1": stats["train_top1"],
        "val_top1": 100.0 * result["top1"],
        "val_top5": 100.0 * result["top5"],
        "val_nll": result["nll"],
        "val_ece": result["ece"],
        "val_entropy_mean": result["entropy_mean"],
        "val_entropy_min": result["entropy_min"],
        "lr": parts.optimizer.param_groups[0]["lr"],
        "img_per_s": stats["img_per_s"],
        "epoch_time_s": time.perf_counter() - stats["epoch_start"],
        "min_entropy": config.min_entropy if config.era else None,
    }
    if parts.ema is not None:
        ema_result = evaluate(
            parts.ema.module, parts.val_loader, config, parts.device, limit, parts.dist
        ).compute()
        row["ema_val_top1"] = 100.0 * ema_result["top1"]
        row["ema_val_nll"] = ema_result["nll"]
    return {"row": row, "reliability": val.reliability().__dict__}


def _report_epoch(row: dict[str, Any], epochs: int) -> None:
    tqdm.write(
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
        f"top1 {row['train_top1']:.2f} | val top1 {row['val_top1']:.2f} "
        f"nll {row['val_nll']:.4f} ece {row['val_ece']:.4f} "
        f"H {row['val_entropy_mean']:.3f} (min {row['val_entropy_min']:.3f}) | "
        f"{row['img_per_s']:.0f} img/s"
    )


def save_checkpoint(
    run: runs.Run,
    parts: Components,
    prepared: Prepared,
    epoch: int,
    step: int,
    last_eval: dict[str, Any],
) -> None:
    """Everything an exact resume needs, written atomically to ``checkpoint.pt`` by rank 0
    (the weights and optimizer states are the same on every rank; the RNG states of every
    rank are gathered into ``rng_ranks``)."""
    per_rank = parts.dist.gather(rng_state())
    if not parts.dist.is_main:
        return

    def serialize(state: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    state = {
        "format": 1,
        "epoch": epoch,
        "step": step,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "rng": per_rank[0],
        "rng_ranks": per_rank,
        "world_size": parts.dist.world_size,
        "last_eval": last_eval,
        "config": prepared.config.to_dict(),
        "classes": prepared.data.classes,
    }
    run.save_checkpoint(state, serialize=serialize)


def finish(
    run: runs.Run, prepared: Prepared, last_eval: dict[str, Any], dist: Dist = SINGLE
) -> dict[str, Any]:
    """Write ``curves.png``, ``summary.json`` and ``DONE`` (rank 0); returns the summary."""
    config, data = prepared.config, prepared.data
    summary = {
        "config": config.to_dict(),
        "classes": data.classes,
        "layout": data.layout,
        "num_train": len(data.train),
        "num_train_relabelled": len(data.train.offsets)
        if isinstance(data.train, NoisyLabels)
        else 0,
        "num_val": len(data.val),
        "final": last_eval["row"],
        "reliability": last_eval["reliability"],
        "paper": config.paper,
    }
    if dist.is_main:
        from .plots import plot_run  # matplotlib (Agg backend) only once a run has finished

        plot_run(run.path, summary)
        run.finish(summary)
    dist.barrier()  # every rank returns once DONE is written
    return summary


def train(
    prepared: Prepared,
    out: str | Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    dist: Dist = SINGLE,
) -> dict[str, Any] | None:
    """Train (or resume) the run in ``out``; returns the final summary, or ``None`` when
    ``stop_after`` epochs were done in this call and the run is not finished yet.

    With ``dist`` from :func:`era_vision_app.distributed.from_env` (torchrun), every process
    calls this; rank 0 alone prints, logs and writes ``out``.
    """
    config = prepared.config
    device = resolve_device(config.device, dist)
    distributed.setup(dist, device)
    run = open_run(config, Path(out), resume=resume, dist=dist)
    if dist.broadcast(run.done):
        return run.read_summary()
    try:
        return _train(run, prepared, dist, device, stop_after=stop_after, progress=progress)
    except BaseException as error:
        if dist.is_main:
            run.discard()  # a new run that failed before its first checkpoint leaves nothing
        if isinstance(error, DataError):  # from a loader worker: with the worker's traceback
            raise DataError(_last_line(error)) from None
        raise


def _last_line(error: DataError) -> str:
    """The message of a :class:`DataError`; one raised in a data-loader worker comes back
    with the worker's traceback, whose last line holds the message."""
    text = str(error).strip()
    if "Traceback" not in text:
        return text
    return text.splitlines()[-1].split("DataError: ", 1)[-1]


def _train(
    run: runs.Run,
    prepared: Prepared,
    dist: Dist,
    device: torch.device,
    *,
    stop_after: int | None,
    progress: bool,
) -> dict[str, Any] | None:
    """:func:`train` once ``run`` is open: build, restore, epochs, finish."""
    config = prepared.config
    parts = build(config, prepared.data, dist, device)
    resumed = run.resumed
    start_epoch, step, last_eval = restore(run, parts, config) if resumed else (0, 0, None)
    progress = progress and dist.is_main
    logger: Any = contextlib.nullcontext()
    if dist.is_main:
        logger = MetricsLogger(run.path, tensorboard=True, resume_step=step if resumed else None)
    with logger:
        for epochs_this_call, epoch in enumerate(range(start_epoch, config.epochs)):
            if stop_after is not None and epochs_this_call >= stop_after:
                return None
            stats, step = train_epoch(parts, config, epoch, step, progress)
            last_eval = evaluate_epoch(parts, config, epoch, step, stats)
            if dist.is_main:
                logger.log(last_eval["row"])
            if progress:
                _report_epoch(last_eval["row"], config.epochs)
            save_checkpoint(run, parts, prepared, epoch + 1, step, last_eval)
    return finish(run, prepared, last_eval, dist)
