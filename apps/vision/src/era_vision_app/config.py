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

__all__ = [
    "ConfigError",
    "TrainConfig",
    "compare_presets",
    "load_presets",
    "preset_names",
    "quick_overrides",
    "resolve_config",
]


class ConfigError(ValueError):
    """A bad setting: the message names the flag, the value and what is valid."""


@dataclass
class TrainConfig:
    """Every setting of one training run (saved as ``config.json`` in the run directory)."""

    # model and head
    model: str = "resnet18"
    era: bool = True
    min_entropy: float = 0.6
    tau: float = 4.0
    era_mode: str = "paper"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    # data
    dataset: str = "digits"  # digits | cifar10 | imagenet (any ImageFolder tree)
    data_dir: str | None = None
    num_classes: int | None = None  # expected class count; None: whatever the data has
    img_size: int = 32
    aug: bool = True
    auto_augment: str | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"
    color_jitter: float = 0.0
    hflip: float = 0.0
    scale: list[float] = field(default_factory=lambda: [0.6, 1.0])
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mixup: float = 0.0
    cutmix: float = 0.0
    workers: int = 0
    limit_train_batches: int = 0  # 0: all
    limit_val_batches: int = 0
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    opt: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sched: str = "cosine"
    warmup_epochs: int = 1
    warmup_lr: float = 1e-3
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    ema: bool = False
    ema_decay: float = 0.9998
    # execution
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False
    amp_dtype: str = "bfloat16"
    compile: bool = False
    channels_last: bool = False
    seed: int = 0
    # bookkeeping (not used to train)
    preset: str | None = None
    quick: bool = False
    description: str = ""
    paper: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        return cls(**data)

    def validate(self) -> None:
        """Range checks that need no data (the class count is checked once data is loaded)."""

        def need(ok: bool, flag: str, value: Any, valid: str) -> None:
            if not ok:
                raise ConfigError(f"--{flag} must be {valid}, got {value!r}")

        need(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        need(self.batch_size >= 1, "batch-size", self.batch_size, ">= 1")
        need(self.eval_batch_size >= 1, "eval-batch-size", self.eval_batch_size, ">= 1")
        need(self.img_size >= 8, "img-size", self.img_size, ">= 8")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "> 0")
        need(0 <= self.label_smoothing < 1, "label-smoothing", self.label_smoothing, "in [0, 1)")
        need(0 <= self.drop_rate < 1, "drop-rate", self.drop_rate, "in [0, 1)")
        need(0 <= self.drop_path_rate < 1, "drop-path-rate", self.drop_path_rate, "in [0, 1)")
        need(0 <= self.re_prob <= 1, "re-prob", self.re_prob, "in [0, 1]")
        need(0 <= self.hflip <= 1, "hflip", self.hflip, "in [0, 1]")
        need(self.mixup >= 0 and self.cutmix >= 0, "mixup/--cutmix", self.mixup, ">= 0")
        need(0 < self.ema_decay < 1, "ema-decay", self.ema_decay, "in (0, 1)")
        need(self.workers >= 0, "workers", self.workers, ">= 0")
        need(self.warmup_epochs >= 0, "warmup-epochs", self.warmup_epochs, ">= 0")
        need(self.era_mode in ("paper", "exact"), "era-mode", self.era_mode, "paper or exact")
        need(self.amp_dtype in ("bfloat16", "float16"), "amp-dtype", self.amp_dtype,
             "bfloat16 or float16")  # fmt: skip
        need(
            self.dataset in ("digits", "cifar10", "imagenet"),
            "dataset",
            self.dataset,
            "digits, cifar10 or imagenet",
        )
        need(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1, "scale",
             self.scale, "two numbers 0 < lo <= hi <= 1")  # fmt: skip
        if self.dataset != "digits" and self.data_dir is None:
            raise ConfigError(
                f"the {self.dataset} recipe needs --data-dir (or --quick to try it on the "
                "embedded digits)"
            )


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
