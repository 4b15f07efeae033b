"""``era-control-train``: train any registered algorithm (SAC, SAC-ERA, PPO, PPO-ERA, ...) on
several seeds at once.

    era-control-train --algo sac-era --env dmc/cartpole-swingup --steps 3000 --seeds 2 --out DIR

writes ``DIR/config.json`` first, then ``DIR/metrics.csv``, ``DIR/metrics.jsonl``, ``DIR/tb/``
(TensorBoard) and ``DIR/checkpoint.pkl`` while training, and ``DIR/curves.png``,
``DIR/summary.json`` and ``DIR/DONE`` at the end (a run without ``DONE`` is unfinished:
continue it with ``--resume DIR``). See ``docs/control.md``.

The flags come from two dataclasses through ``era_core.cli``: :class:`RunOptions` (where the
run goes and how it is driven) and :class:`~era_control_app.config.RunFlags` (the run config;
a flag not given leaves the preset's or the default value), plus the repeatable ``--set``.
The pieces: :mod:`.presets` (``--config``), :mod:`.config` (flags + preset -> run config,
``--quick``), :mod:`.training` (the run directory on ``era_core.runs``, the loop),
:mod:`.results` (summary and figure).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from era_control import get_algorithm, list_algorithms
from era_core import threads
from era_core.cli import add_dataclass_arguments, dataclass_from_args, option

from . import training
from .config import (  # noqa: F401  (re-exported: the names this module has always offered)
    RUN_FLAGS,
    RUN_GROUP,
    RUN_INTERVALS,
    THREADS_KEY,
    RunFlags,
    align_intervals,
    cpu_sized,
    default_intervals,
    parse_set,
    quick,
    resolve,
)
from .presets import load_preset, preset_agent, preset_names  # noqa: F401  (re-exported)
from .results import Run
from .results import summarize as _summarize

RUN_DIR_GROUP = "preset, run directory and output"
# One thread per XLA op on CPU: the networks are small (at most 2x512 on batches of 256), and
# splitting their ops over threads gains little and loses much on a shared machine.
DEFAULT_THREADS = 1
USAGE = """%(prog)s --algo ALGO [--env ID] --out DIR [options]
       %(prog)s --resume DIR [--no-progress] [--no-tensorboard] [--threads N]
       %(prog)s --list-configs"""


def _opt(help: str, **kwargs: Any) -> Any:
    return option(help, group=RUN_DIR_GROUP, **kwargs)


@dataclass
class RunOptions:
    """The flags that say where a run goes and how it is driven (not saved in the config)."""

    out: Path | None = field(
        default=None,
        metadata=_opt("run directory (must not exist or be empty)", metavar="DIR",
                      default_text="required unless --resume"),
    )  # fmt: skip
    config: str | None = field(
        default=None, metadata=_opt("preset name or TOML path", metavar="NAME")
    )
    quick: bool = field(
        default=False, metadata=_opt("shrink the run to minutes on CPU", action="store_true")
    )
    resume: Path | None = field(
        default=None,
        metadata=_opt("continue the unfinished run in DIR exactly", metavar="DIR"),
    )
    list_configs: bool = field(
        default=False, metadata=_opt("print the presets and exit", action="store_true")
    )
    no_tensorboard: bool = field(
        default=False, metadata=_opt("no TensorBoard files", action="store_true")
    )
    no_progress: bool = field(default=False, metadata=_opt("no progress bar", action="store_true"))
    threads: int = field(
        default=0,
        metadata=_opt(
            "CPU threads of XLA and of the BLAS pools; 0: the resumed run's count, else "
            f"{DEFAULT_THREADS} (one thread per op: the networks are small); recorded in "
            f"config.json ({THREADS_KEY})",
            metavar="N",
        ),
    )
    stop_at: int | None = field(default=None, metadata=_opt("stop at this step (tests)"))


def build_parser() -> argparse.ArgumentParser:
    algos = list_algorithms()
    parallel = [a for a in algos if get_algorithm(a).trainer == "parallel off-policy"]
    p = argparse.ArgumentParser(
        prog="era-control-train",
        usage=USAGE,
        description=f"Train {', '.join(algos)} (JAX, several seeds in one program).",
        epilog="Flags override --config, which overrides the defaults. See docs/control.md.",
    )
    groups: dict[str, Any] = {}
    flags = add_dataclass_arguments(p, RunFlags, groups=groups)
    # the registry and the presets are read when the parser is built, not when RunFlags is
    # defined: an algorithm registered after import is a valid --algo too
    flags["algo"].choices = algos
    flags["algo"].help = f"required unless --resume: {'; '.join(_algo_help(a) for a in algos)}"
    flags["num_envs"].help = (
        f"parallel environments per seed, in worker processes ({', '.join(parallel)}: N >= 2, "
        "--steps then counts transitions; the other algorithms: 1) (default: 1)"
    )
    groups[RUN_GROUP].add_argument(  # a repeatable KEY=VALUE has no dataclass-field form
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an algorithm hyper-parameter (TOML value), e.g. --set hidden=[256,256]; "
        "repeatable (default: the preset's or the algorithm's values)",
    )
    options = add_dataclass_arguments(p, RunOptions, groups=groups)
    presets = ", ".join(preset_names())
    options["config"].help = f"preset name or TOML path; presets: {presets} (default: none)"
    options["stop_at"].help = argparse.SUPPRESS  # tests: simulate a kill
    return p


def _algo_help(name: str) -> str:
    return get_algorithm(name).description


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a run's metric rows (:func:`era_control_app.results.summarize`)."""
    return _summarize(Run(Path("."), "", "", list(rows)))


def _open(args: argparse.Namespace, opts: RunOptions) -> dict[str, Any]:
    """The run config: the stored one (checked against the flags) for ``--resume``, else from
    the flags, the preset and the defaults; nothing is written yet."""
    if opts.resume is not None:
        if opts.config is not None:
            raise training.RunError(
                f"--config {opts.config} cannot be combined with --resume: a resumed run keeps "
                f"the settings stored in {opts.resume}/config.json"
            )
        return training.resume_config(opts.resume, opts.out, lambda s: resolve(args, base=s))
    training.check_out(opts.out)
    return resolve(args)


def choose_threads(opts: RunOptions, run: dict[str, Any]) -> dict[str, Any]:
    """Pick and set the run's CPU threads (``era_core.threads``: ``--threads``, else the
    resumed run's record in ``run``, else :data:`DEFAULT_THREADS`) before JAX starts its
    backend; removes the record from ``run`` and returns the new one for ``config.json``."""
    plan = threads.choose_threads(
        opts.threads,
        default=DEFAULT_THREADS,
        reason="one thread per XLA op: small networks",
        stored=run.pop(THREADS_KEY, None),
    )
    threads.apply_blas(plan)
    return {**plan.to_dict(), "xla_flags": threads.apply_xla(plan)}


def _size_for_cpu(run: dict[str, Any], eval_interval_given: bool) -> str | None:
    """A fresh run that :data:`~era_control_app.config.CPU_SIZED` names (``mjx/`` Fast*,
    TD-MPC2) on a CPU backend takes the CPU sizes (:func:`cpu_sized`) of the fields not given;
    returns the line that says so (``None``: nothing changed)."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    changed = cpu_sized(run, eval_interval_given=eval_interval_given)
    if not changed:
        return None
    return (
        f"{run['algo']} on {run['env']} with a CPU backend: CPU-sized {', '.join(changed)} "
        "(give them with --set, or --eval-interval, to keep the published GPU-sized defaults)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    opts: RunOptions = dataclass_from_args(RunOptions, args)
    if opts.list_configs:
        for name in preset_names():
            print(f"{name}: {load_preset(name)['description']}")
        return 0
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    try:
        run_dict = _open(args, opts)
        cpu_threads = choose_threads(opts, run_dict)
        given = args.eval_interval is not None
        sized = _size_for_cpu(run_dict, given) if opts.resume is None else None
    except ValueError as err:
        parser.error(str(err))

    from era_control.training import RunConfig, make_trainer

    try:
        config = RunConfig.from_dict(run_dict)
        trainer = make_trainer(config)
        stored = {**config.to_dict(), THREADS_KEY: cpu_threads}
        run, resume = training.open_run(stored, out=opts.out, resume=opts.resume)
    except (ValueError, ImportError, TypeError) as err:
        parser.error(str(err))
    if sized is not None:  # said once the run is valid: bad input stays one line
        print(sized, file=sys.stderr)

    last = training.train(
        trainer,
        run,
        resume,
        tensorboard=not opts.no_tensorboard,
        progress=not opts.no_progress,
        stop_at=opts.stop_at,
    )
    if last < config.steps:
        print(f"stopped at step {last} of {config.steps}; continue with --resume {run.path}")
        return 0
    summary = training.finish(run, f"{config.algo} on {config.env} ({config.seeds} seeds)")
    print(
        f"done: {config.algo} on {config.env}, final eval return "
        f"{summary['final_eval_return_mean']:.1f} ± {summary['final_eval_return_std']:.1f}; "
        f"outputs in {run.path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
