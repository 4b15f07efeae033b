"""era-vision-train: train a timm classifier with or without the ERA head.

A thin loop around timm's factories (``create_transform``, ``create_optimizer_v2``,
``create_scheduler_v2``, its label-smoothing / soft-target losses, ``Mixup`` and
``ModelEmaV3``). One run writes into ``--out DIR``:

* ``config.json`` (at start), ``metrics.csv`` / ``metrics.jsonl`` / ``tb/`` (one row per epoch,
  through ``era_core.runlog``), ``checkpoint.pt`` (every epoch, written atomically);
* at the end ``curves.png`` (accuracy, NLL/ECE, entropy, reliability diagram),
  ``summary.json`` (final metrics) and the marker ``DONE``.

``--resume DIR`` continues an interrupted run exactly (model, optimizer, scheduler, EMA, AMP
scaler, RNG states, epoch). ``--preset NAME`` picks a recipe from ``presets.toml``; a
comparison preset (``digits-compare``) trains every arm for every seed and writes
``summary.csv`` / ``summary.md``. See docs/vision.md.
"""

from __future__ import annotations

import argparse
import difflib
import io
import itertools
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import era_vision
from era_core.runlog import MetricsLogger, atomic_write_bytes, atomic_write_text
from era_vision.metrics import ClassificationMetrics

from .config import ConfigError, TrainConfig, compare_presets, load_presets, resolve_config
from .data import DataError, Datasets, load_datasets

__all__ = ["RunError", "build_parser", "main", "prepare", "train"]

CHECKPOINT = "checkpoint.pt"
DONE = "DONE"
DIGITS_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class RunError(ValueError):
    """The run directory cannot be used (exists already, nothing to resume, ...)."""


# ----------------------------------------------------------------------------- setup


def check_model_name(name: str) -> None:
    """Unknown timm names fail before any data is read, with close names suggested."""
    if timm.is_model(name) or name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
    raise ConfigError(f"--model {name!r} is not a timm model{hint}")


def check_min_entropy(config: TrainConfig, num_classes: int) -> None:
    if not config.era:
        return
    try:
        era_vision.ERAConfig(config.min_entropy, config.tau, config.era_mode).check(num_classes)
    except ValueError as error:
        raise ConfigError(f"--min-entropy: {error}") from None


def create_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The timm model (ERA head if ``config.era``); ``img_size`` passed to models that take it."""
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": config.drop_rate}
    if config.drop_path_rate:
        kwargs["drop_path_rate"] = config.drop_path_rate
    try:
        model = timm.create_model(config.model, img_size=config.img_size, **kwargs)
    except TypeError as error:  # CNNs take any input size and have no img_size argument
        if "img_size" not in str(error):
            raise
        model = timm.create_model(config.model, **kwargs)
    if config.era:
        era_vision.wrap(model, config.min_entropy, tau=config.tau, mode=config.era_mode)
    return model


def make_transforms(config: TrainConfig, layout: str):
    mean, std = (
        DIGITS_MEAN_STD if layout == "digits" else (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    )
    common = {"interpolation": config.interpolation, "mean": mean, "std": std}
    train = create_transform(
        config.img_size,
        is_training=True,
        no_aug=not config.aug,
        scale=tuple(config.scale),
        hflip=config.hflip,
        color_jitter=config.color_jitter,
        auto_augment=config.auto_augment if config.aug else None,
        re_prob=config.re_prob if config.aug else 0.0,
        re_mode=config.re_mode,
        **common,
    )
    val = create_transform(config.img_size, is_training=False, crop_pct=config.crop_pct, **common)
    return train, val


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name!r} but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG that libraries draw from)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:  # python/numpy RNGs of a worker follow torch's seed
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- the run


@dataclass
class Prepared:
    """A validated configuration with its data, before any file is written."""

    config: TrainConfig
    data: Datasets


def prepare(config: TrainConfig, data: Datasets | None = None) -> Prepared:
    """Every check that can fail before training: config ranges, model name, data, H_min.

    ``data`` reuses datasets already loaded from the same ``--data-dir`` (comparisons).
    """
    config.validate()
    check_model_name(config.model)
    if config.era and config.num_classes is not None:
        check_min_entropy(config, config.num_classes)
    if data is None:
        data = load_datasets(config.data_dir, config.num_classes)
    elif config.num_classes is not None and config.num_classes != data.num_classes:
        raise DataError(
            f"class-count mismatch: expected --num-classes {config.num_classes}, but the data "
            f"has {data.num_classes} classes"
        )
    check_min_entropy(config, data.num_classes)
    if len(data.train) < config.batch_size:
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the training set "
            f"({len(data.train)} images)"
        )
    return Prepared(config, data)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 12345) % 2**63


def _autocast(config: TrainConfig, device: torch.device):
    dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=config.amp)


def evaluate(model, loader, config, device, limit: int = 0) -> ClassificationMetrics:
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
    return metrics


def _save_checkpoint(out: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(out / CHECKPOINT, buffer.getvalue())


def train(
    prepared: Prepared,
    out: str | Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Train (or resume) the run in ``out``; returns the final summary, or ``None`` when
    ``stop_after`` epochs were done in this call and the run is not finished yet."""
    config, data = prepared.config, prepared.data
    out = Path(out)
    if resume:
        if (out / DONE).exists():
            return json.loads((out / "summary.json").read_text())
        if not (out / CHECKPOINT).exists():
            raise RunError(f"--resume {str(out)!r}: no {CHECKPOINT} there (nothing to resume)")
    else:
        if (out / "config.json").exists():
            raise RunError(
                f"--out {str(out)!r} already holds a run; use --resume {out} to continue it "
                "or choose another --out"
            )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    device = resolve_device(config.device)
    seed_everything(config.seed)
    train_tf, val_tf = make_transforms(config, data.layout)
    data.train.transform, data.val.transform = train_tf, val_tf
    num_classes = data.num_classes

    model = create_model(config, num_classes).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    optimizer = create_optimizer_v2(
        model,
        opt=config.opt,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
    )
    generator = torch.Generator()
    train_loader = DataLoader(
        data.train,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=config.workers,
        worker_init_fn=_worker_init,
        drop_last=True,  # as timm: no tiny last batch (batch norm, Mixup's even batches)
        pin_memory=device.type == "cuda",
    )
    val_loader = DataLoader(
        data.val,
        batch_size=config.eval_batch_size,
        shuffle=False,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
    )
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
    mixup_active = config.mixup > 0 or config.cutmix > 0
    mixup = (
        Mixup(
            mixup_alpha=config.mixup,
            cutmix_alpha=config.cutmix,
            label_smoothing=config.label_smoothing,
            num_classes=num_classes,
        )
        if mixup_active
        else None
    )
    if mixup is not None:
        loss_fn: nn.Module = SoftTargetCrossEntropy()
    elif config.label_smoothing > 0:
        loss_fn = LabelSmoothingCrossEntropy(smoothing=config.label_smoothing)
    else:
        loss_fn = nn.CrossEntropyLoss()
    ema = ModelEmaV3(model, decay=config.ema_decay) if config.ema else None
    scaler = (
        torch.amp.GradScaler(device.type) if config.amp and config.amp_dtype == "float16" else None
    )

    start_epoch, step, last_eval = 0, 0, None
    if resume:
        state = torch.load(out / CHECKPOINT, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch, step, last_eval = state["epoch"], state["step"], state["last_eval"]

    logger = MetricsLogger(out, tensorboard=True, resume_step=step if resume else None)
    epochs_this_call = 0
    try:
        for epoch in range(start_epoch, config.epochs):
            if stop_after is not None and epochs_this_call >= stop_after:
                return None
            generator.manual_seed(_epoch_seed(config.seed, epoch))
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            batches = train_loader
            if config.limit_train_batches:
                batches = itertools.islice(train_loader, config.limit_train_batches)
            bar = tqdm(
                batches,
                total=updates_per_epoch,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not progress,
                leave=False,
                dynamic_ncols=True,
            )
            start = time.perf_counter()
            for images, targets in bar:
                images = images.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                hard_targets = targets
                if mixup is not None:
                    images, targets = mixup(images, targets)
                with _autocast(config, device):
                    logits = step_model(images)
                    loss = loss_fn(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                step += 1
                if ema is not None:
                    ema.update(model, step=step)
                if scheduler is not None:
                    scheduler.step_update(num_updates=step)
                n = images.shape[0]
                loss_sum += float(loss.detach()) * n
                correct += int((logits.detach().argmax(-1) == hard_targets).sum())
                seen += n
                elapsed = time.perf_counter() - start
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.3f}",
                    acc=f"{100 * correct / seen:.1f}",
                    img_s=f"{seen / max(elapsed, 1e-9):.0f}",
                )
            bar.close()
            train_time = time.perf_counter() - start
            if scheduler is not None:
                scheduler.step(epoch + 1)
            val = evaluate(model, val_loader, config, device, config.limit_val_batches)
            result = val.compute()
            row = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": loss_sum / max(seen, 1),
                "train_top1": 100.0 * correct / max(seen, 1),
                "val_top1": 100.0 * result["top1"],
                "val_top5": 100.0 * result["top5"],
                "val_nll": result["nll"],
                "val_ece": result["ece"],
                "val_entropy_mean": result["entropy_mean"],
                "val_entropy_min": result["entropy_min"],
                "lr": optimizer.param_groups[0]["lr"],
                "img_per_s": seen / max(train_time, 1e-9),
                "epoch_time_s": time.perf_counter() - start,
                "min_entropy": config.min_entropy if config.era else None,
            }
            if ema is not None:
                ema_result = evaluate(
                    ema.module, val_loader, config, device, config.limit_val_batches
                ).compute()
                row["ema_val_top1"] = 100.0 * ema_result["top1"]
                row["ema_val_nll"] = ema_result["nll"]
            logger.log(row)
            last_eval = {"row": row, "reliability": val.reliability().__dict__}
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f} "
                    f"top1 {row['train_top1']:.2f} | val top1 {row['val_top1']:.2f} "
                    f"nll {row['val_nll']:.4f} ece {row['val_ece']:.4f} "
                    f"H {row['val_entropy_mean']:.3f} (min {row['val_entropy_min']:.3f}) | "
                    f"{row['img_per_s']:.0f} img/s"
                )
            _save_checkpoint(
                out,
                {
                    "format": 1,
                    "epoch": epoch + 1,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "ema": ema.state_dict() if ema is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng_state(),
                    "last_eval": last_eval,
                    "config": config.to_dict(),
                    "classes": data.classes,
                },
            )
            epochs_this_call += 1
    finally:
        logger.close()

    summary = {
        "config": config.to_dict(),
        "classes": data.classes,
        "layout": data.layout,
        "num_train": len(data.train),
        "num_val": len(data.val),
        "final": last_eval["row"],
        "reliability": last_eval["reliability"],
        "paper": config.paper,
    }
    from .plots import plot_run

    plot_run(out, summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / DONE, "complete\n")
    return summary


# ----------------------------------------------------------------------------- CLI


def _add_bool(parser, flag: str, help: str) -> None:
    parser.add_argument(
        f"--{flag}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="era-vision-train",
        description="Train a timm classifier with or without the ERA head (arXiv 2510.08549).",
        epilog="Defaults: the embedded digits, resnet18 at 32x32, ERA with H_min 0.6. "
        "Flags override --preset, which overrides the defaults. See docs/vision.md.",
    )
    S = argparse.SUPPRESS
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, help="run directory (created; must not hold a run)")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    run.add_argument("--preset", help="a recipe from presets.toml (see --list-presets)")
    run.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    run.add_argument(
        "--quick", action="store_true", help="shrink to minutes on CPU (digits unless --data-dir)"
    )
    run.add_argument("--seeds", type=int, nargs="+", help="seeds of a comparison preset")
    run.add_argument("--arms", nargs="+", help="subset of a comparison preset's arms")
    run.add_argument(
        "--stop-after", type=int, metavar="N", help="stop after N epochs (resume later)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=S, help="timm model name (default resnet18)")
    _add_bool(model, "era", "ERA head on the logits (default on)")
    model.add_argument("--min-entropy", type=float, default=S, help="H_min in nats (0.6)")
    model.add_argument("--tau", type=float, default=S, help="ERA tau (4)")
    model.add_argument("--era-mode", choices=["paper", "exact"], default=S, help="(paper)")
    model.add_argument("--drop-rate", type=float, default=S, help="dropout before the classifier")
    model.add_argument("--drop-path-rate", type=float, default=S, help="stochastic depth")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", default=S, help="ImageFolder (train/, val/) or CIFAR-10 dir")
    data.add_argument("--dataset", choices=["digits", "cifar10", "imagenet"], default=S)
    data.add_argument("--num-classes", type=int, default=S, help="expected class count")
    data.add_argument("--img-size", type=int, default=S)
    _add_bool(data, "aug", "timm training augmentation (off: resize + center crop)")
    data.add_argument("--auto-augment", default=S, help="timm auto-augment, e.g. rand-m9-mstd0.5")
    data.add_argument("--re-prob", type=float, default=S, help="random erasing probability")
    data.add_argument("--color-jitter", type=float, default=S)
    data.add_argument("--hflip", type=float, default=S, help="horizontal flip probability")
    data.add_argument("--scale", type=float, nargs=2, default=S, help="random-resized-crop area")
    data.add_argument("--crop-pct", type=float, default=S, help="eval center-crop fraction")
    data.add_argument("--mixup", type=float, default=S, help="mixup alpha (0: off)")
    data.add_argument("--cutmix", type=float, default=S, help="cutmix alpha (0: off)")
    data.add_argument("--workers", type=int, default=S, help="data-loader workers")
    data.add_argument("--limit-train-batches", type=int, default=S, help="0: all")
    data.add_argument("--limit-val-batches", type=int, default=S, help="0: all")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=S)
    optim.add_argument("--batch-size", type=int, default=S)
    optim.add_argument("--eval-batch-size", type=int, default=S)
    optim.add_argument("--opt", default=S, help="timm optimizer name (sgd)")
    optim.add_argument("--lr", type=float, default=S)
    optim.add_argument("--momentum", type=float, default=S)
    optim.add_argument("--weight-decay", type=float, default=S)
    optim.add_argument("--sched", default=S, help="timm scheduler name (cosine)")
    optim.add_argument("--warmup-epochs", type=int, default=S)
    optim.add_argument("--warmup-lr", type=float, default=S)
    optim.add_argument("--min-lr", type=float, default=S)
    optim.add_argument("--label-smoothing", type=float, default=S, help="(0.1)")
    _add_bool(optim, "ema", "keep a timm ModelEmaV3 and evaluate it too")
    optim.add_argument("--ema-decay", type=float, default=S)
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N")
    _add_bool(execution, "amp", "mixed precision (autocast)")
    execution.add_argument("--amp-dtype", choices=["bfloat16", "float16"], default=S)
    _add_bool(execution, "compile", "torch.compile the model")
    _add_bool(execution, "channels-last", "channels-last memory format")
    execution.add_argument("--seed", type=int, default=S)
    return parser


_RUN_KEYS = {"out", "resume", "preset", "list_presets", "quick", "seeds", "arms", "stop_after",
             "no_progress"}  # fmt: skip
_RESUME_OVERRIDES = {"workers", "device"}  # may change between sessions; nothing else may


def _list_presets() -> str:
    lines = []
    for name, body in sorted(load_presets().items()):
        lines.append(f"{name:34s} {body.get('description', '')}")
    for name, body in sorted(compare_presets().items()):
        lines.append(f"{name:34s} [comparison] {body.get('description', '')}")
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    explicit = {k: v for k, v in vars(args).items() if k not in _RUN_KEYS}
    progress = not args.no_progress
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError(f"--stop-after must be >= 1, got {args.stop_after}")
    if args.resume is not None:
        if args.preset or args.quick or args.out is not None:
            raise ConfigError("--resume DIR takes its settings from DIR/config.json; "
                              "do not combine it with --out, --preset or --quick")  # fmt: skip
        changed = sorted(set(explicit) - _RESUME_OVERRIDES)
        if changed:
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise ConfigError(f"{flags} cannot change on --resume (only --workers, --device)")
        config_path = args.resume / "config.json"
        if not config_path.exists():
            raise RunError(f"--resume {str(args.resume)!r}: no config.json there")
        config = TrainConfig.from_dict({**json.loads(config_path.read_text()), **explicit})
        summary = train(
            prepare(config), args.resume, resume=True, stop_after=args.stop_after,
            progress=progress,
        )  # fmt: skip
        _report(args.resume, summary)
        return 0
    if args.out is None:
        raise ConfigError("--out DIR is required (or --resume DIR)")
    if args.preset in compare_presets():
        from .compare import run_comparison

        run_comparison(
            args.preset,
            args.out,
            explicit=explicit,
            seeds=args.seeds,
            arms=args.arms,
            quick=args.quick,
            progress=progress,
        )
        return 0
    if args.seeds or args.arms:
        raise ConfigError("--seeds and --arms need a comparison --preset (see --list-presets)")
    config = resolve_config(explicit, preset=args.preset, quick=args.quick)
    summary = train(prepare(config), args.out, stop_after=args.stop_after, progress=progress)
    _report(args.out, summary)
    return 0


def _report(out: Path, summary: dict[str, Any] | None) -> None:
    if summary is None:
        print(f"stopped; continue with: era-vision-train --resume {out}")
        return
    final = summary["final"]
    print(
        f"done: val top1 {final['val_top1']:.2f}% top5 {final['val_top5']:.2f}% "
        f"nll {final['val_nll']:.4f} ece {final['val_ece']:.4f} "
        f"entropy {final['val_entropy_mean']:.3f} (min {final['val_entropy_min']:.3f}) -> {out}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_presets:
        print(_list_presets())
        return 0
    try:
        return run_cli(args)
    except (ConfigError, DataError, RunError) as error:
        print(f"era-vision-train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
