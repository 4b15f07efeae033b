"""The ``era-vision-train`` command line: flags, then one training run or a comparison.

The flags come from two dataclasses through ``era_core.cli``: :class:`RunOptions` (where the
run goes and how it is driven) and :class:`~era_vision_app.config.TrainConfig` (the recipe;
a flag not given leaves the preset's or the default value). :func:`main` dispatches to
:func:`era_vision_app.training.train` or :func:`era_vision_app.compare.run_comparison`.

Under ``torchrun`` (``torchrun --nproc-per-node N -m era_vision_app ...``) every process runs
:func:`main`; the ranks come from the environment (:mod:`era_vision_app.distributed`) and only
rank 0 prints.

Importing this module and building the parser imports neither torch nor timm (``--help`` and
``--list-presets`` answer at once): the training modules are imported once a run starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from era_core import runs
from era_core.cli import add_dataclass_arguments, dataclass_from_args, explicit_values, option
from era_core.runs import RunError

from .config import (
    ConfigError,
    DataError,
    TrainConfig,
    compare_presets,
    load_presets,
    resolve_config,
)

if TYPE_CHECKING:
    from .distributed import Dist

__all__ = ["RunOptions", "build_parser", "main", "run_cli"]


def _run(help: str, **kwargs: Any) -> Any:
    return option(help, group="run", **kwargs)


@dataclass
class RunOptions:
    """The flags that say where a run goes and how it is driven (not saved in the config)."""

    out: Path | None = field(
        default=None,
        metadata=_run("run directory (created; must be missing or empty)",
                      default_text="required unless --resume"),
    )  # fmt: skip
    resume: Path | None = field(
        default=None, metadata=_run("continue the run in DIR exactly", metavar="DIR")
    )
    preset: str | None = field(
        default=None, metadata=_run("a recipe from presets.toml (see --list-presets)")
    )
    list_presets: bool = field(
        default=False, metadata=_run("print the presets and exit", action="store_true")
    )
    quick: bool = field(
        default=False,
        metadata=_run("shrink to minutes on CPU (digits unless --data-dir)", action="store_true"),
    )
    seeds: list[int] | None = field(
        default=None,
        metadata=_run("seeds of a comparison preset", default_text="the preset's seeds"),
    )
    arms: list[str] | None = field(
        default=None,
        metadata=_run("subset of a comparison preset's arms", default_text="every arm"),
    )
    stop_after: int | None = field(
        default=None,
        metadata=_run("stop after N epochs (resume later)", metavar="N",
                      default_text="run to the end"),
    )  # fmt: skip
    no_progress: bool = field(default=False, metadata=_run("no progress bar", action="store_true"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="era-vision-train",
        description="Train a timm classifier with or without the ERA head (arXiv 2510.08549).",
        epilog="Defaults: the embedded digits, resnet18 at 32x32, ERA with H_min 0.6. "
        "Flags override --preset, which overrides the defaults. See docs/vision.md.",
    )
    groups: dict[str, Any] = {}
    add_dataclass_arguments(parser, RunOptions, groups=groups)
    add_dataclass_arguments(parser, TrainConfig, explicit_only=True, groups=groups)
    return parser


def _list_presets() -> str:
    lines = []
    for name, body in sorted(load_presets().items()):
        lines.append(f"{name:34s} {body.get('description', '')}")
    for name, body in sorted(compare_presets().items()):
        lines.append(f"{name:34s} [comparison] {body.get('description', '')}")
    return "\n".join(lines)


def _resume(opts: RunOptions, explicit: dict[str, Any], dist: Dist) -> int:
    from .training import CHECKPOINT, prepare, resume_overrides, train

    if opts.preset or opts.quick or opts.out is not None:
        raise ConfigError("--resume DIR takes its settings from DIR/config.json; "
                          "do not combine it with --out, --preset or --quick")  # fmt: skip
    assert opts.resume is not None
    stored = runs.read_config(opts.resume)
    source = f"--resume {str(opts.resume)!r}: config.json"
    config = TrainConfig.from_dict({**stored, **explicit}, source=source)
    # the config check runs before any data is loaded
    runs.resume_run(opts.resume, config.to_dict(), may_change=resume_overrides(stored, config),
                    checkpoint=CHECKPOINT)  # fmt: skip
    summary = train(prepare(config, dist=dist), opts.resume, resume=True,
                    stop_after=opts.stop_after, progress=not opts.no_progress,
                    dist=dist)  # fmt: skip
    _report(opts.resume, summary, dist)
    return 0


def run_cli(args: argparse.Namespace, dist: Dist | None = None) -> int:
    """One parsed command line; ``dist`` defaults to the torchrun environment's ranks."""
    from . import distributed
    from .compare import run_comparison
    from .training import CHECKPOINT, prepare, train

    dist = distributed.from_env() if dist is None else dist
    opts: RunOptions = dataclass_from_args(RunOptions, args)
    explicit = explicit_values(TrainConfig, args)
    progress = not opts.no_progress
    if opts.stop_after is not None and opts.stop_after < 1:
        raise ConfigError(f"--stop-after must be >= 1, got {opts.stop_after}")
    if opts.resume is not None:
        return _resume(opts, explicit, dist)
    if opts.out is None:
        raise ConfigError("--out DIR is required (or --resume DIR)")
    if opts.preset in compare_presets() and dist.enabled:
        raise ConfigError(
            f"--preset {opts.preset} is a comparison (one process, run after run); start it "
            "without torchrun, or launch its arms one by one under torchrun"
        )
    if opts.preset in compare_presets():
        run_comparison(
            opts.preset,
            opts.out,
            explicit=explicit,
            seeds=opts.seeds,
            arms=opts.arms,
            quick=opts.quick,
            progress=progress,
        )
        return 0
    if opts.seeds or opts.arms:
        raise ConfigError("--seeds and --arms need a comparison --preset (see --list-presets)")
    config = resolve_config(explicit, preset=opts.preset, quick=opts.quick)
    runs.check_new_run(opts.out, checkpoint=CHECKPOINT)  # before any data is read
    summary = train(prepare(config, dist=dist), opts.out, stop_after=opts.stop_after,
                    progress=progress, dist=dist)  # fmt: skip
    _report(opts.out, summary, dist)
    return 0


def _report(out: Path, summary: dict[str, Any] | None, dist: Dist) -> None:
    if not dist.is_main:
        return
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
    """``era-vision-train``: returns the exit status (2 on a bad setting, with the reason)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_presets:
        print(_list_presets())
        return 0
    from . import distributed
    from .distributed import DistError

    try:
        return run_cli(args)
    except (ConfigError, DataError, RunError, DistError) as error:
        # under torchrun every rank meets the same bad setting; rank 0 reports it
        if isinstance(error, DistError) or os.environ.get("RANK", "0") == "0":
            print(f"era-vision-train: error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
