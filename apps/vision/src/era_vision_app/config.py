"""The training configuration, presets (``presets.toml``) and ``--quick``.

A run's settings are resolved in this order, later wins: :class:`TrainConfig` defaults (the
embedded-digits recipe with ERA on), the preset's recipes (``extends``) and keys, the
``--quick`` shrink (only for keys not given on the command line), then the command-line flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from era_core.cli import check_field_types, option

__all__ = [
    "ConfigError",
    "DataError",
    "TrainConfig",
    "compare_presets",
    "load_presets",
    "preset_names",
    "quick_overrides",
    "resolve_config",
]


class ConfigError(ValueError):
    """A bad setting: the message names the flag, the value and what is valid."""


class DataError(ValueError):
    """The data directory is missing, has an unknown layout, its classes do not match, or a
    file in it cannot be read (also :class:`era_vision_app.data.DataError`)."""


ERA_MODES = ("paper", "exact")
DATASETS = ("digits", "cifar10", "imagenet")
AMP_DTYPES = ("bfloat16", "float16")
DIST_BN = ("reduce", "broadcast")


def _opt(group: str, help: str = "", **kwargs: Any) -> Any:
    """A ``TrainConfig`` field's command-line form (``era_core.cli.option``) in ``group``."""
    return option(help, group=group, **kwargs)


def _f(default: Any, group: str, help: str = "", **kwargs: Any) -> Any:
    """A ``TrainConfig`` field with an immutable ``default`` and its command-line form."""
    return field(default=default, metadata=_opt(group, help, **kwargs))


_OFF_CLI = option(cli=False)


@dataclass
class TrainConfig:
    """Every setting of one training run (saved as ``config.json`` in the run directory).

    Each field's metadata gives its ``era-vision-train`` flag (``--field-name``), help text
    and ``--help`` section (``era_core.cli``); fields marked off the command line are set by
    presets or are bookkeeping.
    """

    # model and head
    model: str = _f("resnet18", "model", "timm model name")
    era: bool = _f(True, "model", "ERA head on the logits")
    min_entropy: float = _f(0.6, "model", "H_min in nats")
    tau: float = _f(4.0, "model", "ERA tau")
    era_mode: str = _f("paper", "model", "ERA variant", choices=ERA_MODES)
    drop_rate: float = _f(0.0, "model", "dropout before the classifier")
    drop_path_rate: float = _f(0.0, "model", "stochastic depth")
    # data
    dataset: str = _f("digits", "data", "recipe family (imagenet: any ImageFolder tree)",
                      choices=DATASETS)  # fmt: skip
    data_dir: str | None = _f(None, "data", "ImageFolder (train/, val/) or CIFAR-10 dir",
                              default_text="the embedded digits")  # fmt: skip
    timm_dataset: str | None = _f(None, "data", "read --data-dir with timm.data.create_dataset "
                                  "(e.g. torch/cifar100, torch/image_folder, hfds/NAME)",
                                  default_text="the layout found in --data-dir")  # fmt: skip
    train_split: str = _f("train", "data", "--timm-dataset's training split")
    val_split: str = _f("validation", "data", "--timm-dataset's validation split")
    num_classes: int | None = _f(None, "data", "expected class count",
                                 default_text="whatever the data has")  # fmt: skip
    img_size: int = _f(32, "data", "input resolution")
    aug: bool = _f(True, "data", "timm training augmentation (off: resize + center crop)")
    auto_augment: str | None = _f(None, "data", "timm auto-augment, e.g. rand-m9-mstd0.5")
    re_prob: float = _f(0.0, "data", "random erasing probability")
    re_mode: str = field(default="pixel", metadata=_OFF_CLI)
    resplit: bool = _f(False, "data", "no random erasing on the clean split (timm's --resplit)")
    aug_splits: int = _f(0, "data", "timm's augmentation splits: each image as 1 clean + N-1 "
                         "augmented views in the batch (0: off, else >= 2)")  # fmt: skip
    color_jitter: float = _f(0.0, "data", "color jitter strength")
    hflip: float = _f(0.0, "data", "horizontal flip probability")
    scale: list[float] = field(
        default_factory=lambda: [0.6, 1.0],
        metadata=_opt("data", "random-resized-crop area", nargs=2),
    )
    crop_pct: float = _f(1.0, "data", "eval center-crop fraction")
    interpolation: str = field(default="bicubic", metadata=_OFF_CLI)
    mixup: float = _f(0.0, "data", "mixup alpha (0: off)")
    cutmix: float = _f(0.0, "data", "cutmix alpha (0: off)")
    workers: int = _f(0, "data", "data-loader workers")
    label_noise: float = _f(0.0, "data", "fraction P of training labels redrawn, each to one "
                            "of the other classes (round(P x N) images, chosen from --seed; "
                            "validation untouched)")  # fmt: skip
    limit_train_batches: int = _f(0, "data", "training batches per epoch (0: all)")
    limit_val_batches: int = _f(0, "data", "validation batches per evaluation (0: all)")
    # optimisation
    epochs: int = _f(10, "optimisation", "training epochs")
    batch_size: int = _f(
        64, "optimisation", "global training batch size (split evenly over the torchrun processes)"
    )
    eval_batch_size: int = _f(256, "optimisation", "global evaluation batch size")
    opt: str = _f("sgd", "optimisation", "timm optimizer name")
    lr: float = _f(0.05, "optimisation", "peak learning rate")
    momentum: float = _f(0.9, "optimisation", "optimizer momentum")
    weight_decay: float = _f(5e-4, "optimisation", "weight decay")
    sched: str = _f("cosine", "optimisation", "timm scheduler name")
    warmup_epochs: int = _f(1, "optimisation", "linear warm-up epochs")
    warmup_lr: float = _f(1e-3, "optimisation", "learning rate at the start of warm-up")
    min_lr: float = _f(0.0, "optimisation", "final learning rate of the schedule")
    label_smoothing: float = _f(0.1, "optimisation", "label smoothing")
    jsd_loss: bool = _f(False, "optimisation", "timm's JsdCrossEntropy: cross-entropy on the "
                        "clean split + Jensen-Shannon consistency over the --aug-splits")  # fmt: skip
    ema: bool = _f(False, "optimisation", "keep a timm ModelEmaV3 and evaluate it too")
    ema_decay: float = _f(0.9998, "optimisation", "EMA decay per update")
    # execution
    device: str = _f("auto", "execution", "auto, cpu, cuda, cuda:N")
    amp: bool = _f(False, "execution", "mixed precision (autocast)")
    amp_dtype: str = _f("bfloat16", "execution", "autocast dtype", choices=AMP_DTYPES)
    compile: bool = _f(False, "execution", "torch.compile the model")
    channels_last: bool = _f(False, "execution", "channels-last memory format")
    seed: int = _f(0, "execution", "random seed (>= 0)")
    threads: int = _f(0, "execution", "CPU threads of torch and of the BLAS pools (0: the "
                      "resumed run's count, else 1 on the embedded digits, whose 32x32 images "
                      "make ops too small to split, else every usable core up to 8); "
                      "recorded in config.json (cpu_threads)")  # fmt: skip
    sync_bn: bool = _f(False, "execution", "SyncBatchNorm across the torchrun processes")
    split_bn: bool = _f(False, "execution", "timm's split BatchNorm: one BatchNorm per "
                        "--aug-splits split while training")  # fmt: skip
    dist_bn: str = _f("reduce", "execution",
                      "BatchNorm running stats of the processes before each evaluation: "
                      "averaged, or rank 0's", choices=DIST_BN)  # fmt: skip
    # bookkeeping (not used to train)
    preset: str | None = field(default=None, metadata=_OFF_CLI)
    quick: bool = field(default=False, metadata=_OFF_CLI)
    description: str = field(default="", metadata=_OFF_CLI)
    source: str = field(default="", metadata=_OFF_CLI)  # where a preset's recipe comes from
    paper: dict[str, float] | None = field(default=None, metadata=_OFF_CLI)
    # the thread counts the run computes with (era_core.threads.ThreadPlan.to_dict())
    cpu_threads: dict[str, Any] | None = field(default=None, metadata=_OFF_CLI)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> TrainConfig:
        """The config of ``data``; ``ConfigError`` for an unknown key or a value of the wrong
        type, naming ``source`` (e.g. ``DIR/config.json``) and the key, or else the flag."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}unknown config keys {unknown}")
        try:
            check_field_types(data, cls, (lambda key: f"{source} {key}") if source else None)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return cls(**data)

    def validate(self) -> None:
        """Range checks that need no data (the class count is checked once data is loaded)."""

        def need(ok: bool, flag: str, value: Any, valid: str) -> None:
            if not ok:
                raise ConfigError(f"--{flag} must be {valid}, got {value!r}")

        need(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        need(self.seed >= 0, "seed", self.seed, ">= 0")
        need(self.threads >= 0, "threads", self.threads, ">= 0 (0: the app's choice)")
        need(math.isfinite(self.tau) and self.tau > math.e, "tau", self.tau,
             f"> e = {math.e:.4f} (ERA needs 1/tau < 1/e)")  # fmt: skip
        need(math.isfinite(self.min_entropy), "min-entropy", self.min_entropy, "a finite number")
        need(self.num_classes is None or self.num_classes >= 2, "num-classes", self.num_classes,
             ">= 2")  # fmt: skip
        need(self.limit_train_batches >= 0, "limit-train-batches", self.limit_train_batches,
             ">= 0 (0: all)")  # fmt: skip
        need(self.limit_val_batches >= 0, "limit-val-batches", self.limit_val_batches,
             ">= 0 (0: all)")  # fmt: skip
        need(self.batch_size >= 1, "batch-size", self.batch_size, ">= 1")
        need(self.eval_batch_size >= 1, "eval-batch-size", self.eval_batch_size, ">= 1")
        need(self.img_size >= 8, "img-size", self.img_size, ">= 8")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "> 0")
        need(0 <= self.label_smoothing < 1, "label-smoothing", self.label_smoothing, "in [0, 1)")
        need(0 <= self.label_noise < 1, "label-noise", self.label_noise, "in [0, 1)")
        need(0 <= self.drop_rate < 1, "drop-rate", self.drop_rate, "in [0, 1)")
        need(0 <= self.drop_path_rate < 1, "drop-path-rate", self.drop_path_rate, "in [0, 1)")
        need(0 <= self.re_prob <= 1, "re-prob", self.re_prob, "in [0, 1]")
        need(0 <= self.hflip <= 1, "hflip", self.hflip, "in [0, 1]")
        need(self.mixup >= 0 and self.cutmix >= 0, "mixup/--cutmix", self.mixup, ">= 0")
        need(0 < self.ema_decay < 1, "ema-decay", self.ema_decay, "in (0, 1)")
        need(self.workers >= 0, "workers", self.workers, ">= 0")
        need(self.warmup_epochs >= 0, "warmup-epochs", self.warmup_epochs, ">= 0")
        need(self.era_mode in ERA_MODES, "era-mode", self.era_mode, "paper or exact")
        need(self.dist_bn in DIST_BN, "dist-bn", self.dist_bn, "reduce or broadcast")
        need(self.amp_dtype in AMP_DTYPES, "amp-dtype", self.amp_dtype,
             "bfloat16 or float16")  # fmt: skip
        need(
            self.dataset in DATASETS,
            "dataset",
            self.dataset,
            "digits, cifar10 or imagenet",
        )
        need(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1, "scale",
             self.scale, "two numbers 0 < lo <= hi <= 1")  # fmt: skip
        self.validate_splits()
        if self.timm_dataset is not None and self.data_dir is None:
            raise ConfigError(f"--timm-dataset {self.timm_dataset!r} needs --data-dir (its root)")
        if self.dataset != "digits" and self.data_dir is None:
            raise ConfigError(
                f"the {self.dataset} recipe needs --data-dir (or --quick to try it on the "
                "embedded digits)"
            )

    def validate_splits(self) -> None:
        """The augmentation-split settings (timm's --aug-splits, --jsd-loss, --split-bn)."""
        splits = self.aug_splits
        if splits < 0 or splits == 1:
            raise ConfigError(f"--aug-splits must be 0 (off) or >= 2, got {splits}")
        for flag, on in (("jsd-loss", self.jsd_loss), ("split-bn", self.split_bn)):
            if on and splits < 2:
                raise ConfigError(f"--{flag} needs --aug-splits >= 2 (it works on the splits), "
                                  f"got --aug-splits {splits}")  # fmt: skip
        if splits and not self.aug:
            raise ConfigError(f"--aug-splits {splits} needs --aug: with --no-aug there is no "
                              "augmentation to split")  # fmt: skip
        if splits and (self.mixup > 0 or self.cutmix > 0):
            raise ConfigError(f"--aug-splits {splits} cannot be combined with --mixup/--cutmix "
                              "(Mixup would blend the splits of different images)")  # fmt: skip
        if self.split_bn and self.sync_bn:
            raise ConfigError("--split-bn and --sync-bn cannot be combined (timm has no "
                              "synchronised split BatchNorm)")  # fmt: skip


_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _read_presets() -> dict[str, Any]:
    text = resources.files("era_vision_app").joinpath("presets.toml").read_text("utf-8")
    return tomllib.loads(text)


def load_presets() -> dict[str, dict[str, Any]]:
    """Every preset, resolved to flat ``TrainConfig`` keys (``extends`` merged in order)."""
    data = _read_presets()
    recipes = data.get("recipe", {})
    out = {}
    for name, body in data.get("preset", {}).items():
        merged: dict[str, Any] = {}
        for recipe in body.get("extends", []):
            merged.update(recipes[recipe])
        merged.update({k: v for k, v in body.items() if k != "extends"})
        unknown = sorted(set(merged) - _FIELDS)
        if unknown:  # a typo in presets.toml is a bug of the app; fail loudly
            raise RuntimeError(f"preset {name!r} has unknown keys {unknown}")
        merged["preset"] = name
        out[name] = merged
    return out


def compare_presets() -> dict[str, dict[str, Any]]:
    """The comparison presets: ``{name: {"arms": [...], "seeds": [...], "description": ...}}``."""
    return dict(_read_presets().get("compare", {}))


def preset_names() -> list[str]:
    return sorted(load_presets()) + sorted(compare_presets())


def unknown_preset(name: str) -> ConfigError:
    names = preset_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"--preset {name!r} is not a preset{hint} (see --list-presets)")


def quick_overrides(base: dict[str, Any]) -> dict[str, Any]:
    """What ``--quick`` changes: minutes on CPU, the embedded digits unless ``--data-dir``."""
    quick: dict[str, Any] = {
        "quick": True,
        "epochs": min(int(base.get("epochs", 2)), 2),
        "batch_size": 64,
        "eval_batch_size": 256,
        # AdamW learns the digits in 2 epochs (SGD at 0.05 needs about 5)
        "opt": "adamw",
        "lr": 0.003,
        "weight_decay": 0.01,
        "warmup_epochs": 0,
        "img_size": 32,
        "amp": False,
        "compile": False,
        "workers": 0,
        "ema": False,
    }
    if base.get("model", "resnet18") in ("resnet50", "resnet101", "resnet152"):
        quick["model"] = "resnet18"
    if base.get("data_dir") is None:
        quick.update(
            dataset="digits",
            timm_dataset=None,
            num_classes=10,
            hflip=0.0,  # digits are not mirror-symmetric
            crop_pct=1.0,
            scale=[0.6, 1.0],
            color_jitter=0.0,
        )
    else:
        quick.update(limit_train_batches=20, limit_val_batches=10)
    return quick


def resolve_config(
    explicit: dict[str, Any], *, preset: str | None = None, quick: bool = False
) -> TrainConfig:
    """Defaults < preset < ``--quick`` < explicit flags (``explicit`` holds only flags given)."""
    unknown = sorted(set(explicit) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown settings {unknown}")
    values = TrainConfig().to_dict()
    if preset is not None:
        presets = load_presets()
        if preset not in presets:
            raise unknown_preset(preset)
        values.update(presets[preset])
    if quick:
        shrink = quick_overrides({**values, **explicit})
        values.update({k: v for k, v in shrink.items() if k not in explicit})
    values.update(explicit)
    values["scale"] = list(values["scale"])
    config = TrainConfig.from_dict(values)
    config.validate()
    return config
