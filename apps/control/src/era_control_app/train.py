"""``era-control-train``: train any registered algorithm (SAC, SAC-ERA, PPO, PPO-ERA, ...) on
several seeds at once.

    era-control-train --algo sac-era --env dmc/cartpole-swingup --steps 3000 --seeds 2 --out DIR

writes ``DIR/config.json`` first, then ``DIR/metrics.csv``, ``DIR/metrics.jsonl``, ``DIR/tb/``
(TensorBoard) and ``DIR/checkpoint.pkl`` while training, and ``DIR/curves.png``,
``DIR/summary.json`` and ``DIR/DONE`` at the end (a run without ``DONE`` is unfinished:
continue it with ``--resume DIR``). See ``docs/control.md``.

The pieces: :mod:`.presets` (``--config``), :mod:`.config` (flags + preset -> run config,
``--quick``), :mod:`.rundir` (the run directory), :mod:`.results` (summary and figure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from era_control import get_algorithm, list_algorithms

from . import rundir
from .config import (  # noqa: F401  (re-exported: the names this module has always offered)
    RUN_FLAGS,
    RUN_INTERVALS,
    align_intervals,
    default_intervals,
    parse_set,
    quick,
    resolve,
)
from .presets import load_preset, preset_agent, preset_names  # noqa: F401  (re-exported)
from .results import Run
from .results import summarize as _summarize


def build_parser() -> argparse.ArgumentParser:
    algos = list_algorithms()
    parallel = [a for a in algos if get_algorithm(a).trainer == "parallel off-policy"]
    p = argparse.ArgumentParser(
        prog="era-control-train",
        description=f"Train {', '.join(algos)} (JAX, several seeds in one program).",
    )
    p.add_argument("--algo", choices=algos, help="; ".join(_algo_help(a) for a in algos))
    p.add_argument("--env", help="dmc/<domain>-<task>, gym/<Id> or hb/<task>")
    p.add_argument("--steps", type=int, help="agent steps per seed (after action repeat)")
    p.add_argument("--seeds", type=int, help="number of seeds trained at once (vmapped)")
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    p.add_argument("--out", help="run directory (must not exist or be empty)")
    p.add_argument(
        "--config", help=f"preset name or TOML path; presets: {', '.join(preset_names())}"
    )
    p.add_argument("--quick", action="store_true", help="shrink the run to minutes on CPU")
    p.add_argument("--resume", metavar="DIR", help="continue the unfinished run in DIR exactly")
    p.add_argument("--action-repeat", type=int)
    p.add_argument(
        "--num-envs",
        type=int,
        metavar="N",
        help=f"parallel environments per seed, in worker processes ({', '.join(parallel)}: "
        "N >= 2, --steps then counts transitions; the other algorithms: 1)",
    )
    p.add_argument(
        "--target-entropy-per-dim",
        "--target-entropy",
        dest="target_entropy_per_dim",
        type=float,
        metavar="H",
        help="target entropy PER action dimension (H0 = D*H); --target-entropy is an alias",
    )
    p.add_argument("--log-interval", type=int)
    p.add_argument("--eval-interval", type=int)
    p.add_argument("--eval-episodes", type=int)
    p.add_argument("--checkpoint-interval", type=int)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an algorithm hyper-parameter (TOML value), e.g. --set hidden=[256,256]",
    )
    p.add_argument("--list-configs", action="store_true", help="print the presets and exit")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-at", type=int, help=argparse.SUPPRESS)  # tests: simulate a kill
    return p


def _algo_help(name: str) -> str:
    return get_algorithm(name).description


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a run's metric rows (:func:`era_control_app.results.summarize`)."""
    return _summarize(Run(Path("."), "", "", list(rows)))


def _open(args: argparse.Namespace) -> tuple[Path, dict[str, Any], bytes | None]:
    """The run directory, the run config and the checkpoint to resume from (or None)."""
    if args.resume:
        return rundir.open_resumed(args.resume, args.out, lambda s: resolve(args, base=s))
    run_dir = rundir.new_run_dir(args.out)
    return run_dir, resolve(args), None


def _train(args, run, trainer, run_dir: Path, resume_blob: bytes | None) -> int:
    """Train with logging, checkpoints and a progress bar; returns the last step reached."""
    from tqdm import tqdm

    from era_core.runlog import MetricsLogger

    if resume_blob is None:
        rundir.write_config(run_dir, run.to_dict())
    start = rundir.checkpoint_step(resume_blob) if resume_blob is not None else 0
    logger = MetricsLogger(
        run_dir, tensorboard=not args.no_tensorboard, resume_step=start if resume_blob else None
    )
    bar = tqdm(
        total=run.steps,
        initial=start,
        unit="step",
        disable=args.no_progress,
        desc=f"{run.algo} {run.env} x{run.seeds}",
        dynamic_ncols=True,
    )

    def on_step(step: int, latest: float | None) -> None:
        bar.update(1)
        if latest is not None and step % 50 == 0:
            bar.set_postfix(ret=f"{latest:.1f}", refresh=False)

    with logger:
        last = trainer.run(
            logger.log,
            save_checkpoint=lambda step, blob: rundir.save_checkpoint(run_dir, blob),
            resume=resume_blob,
            stop_at=args.stop_at,
            on_step=on_step,
        )
    bar.close()
    return last


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_configs:
        for name in preset_names():
            print(f"{name}: {load_preset(name)['description']}")
        return 0
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    try:
        run_dir, run_dict, resume_blob = _open(args)
    except ValueError as err:
        parser.error(str(err))

    from era_control.training import RunConfig, make_trainer

    try:
        run = RunConfig.from_dict(run_dict)
        trainer = make_trainer(run)
    except (ValueError, ImportError, TypeError) as err:
        parser.error(str(err))

    last = _train(args, run, trainer, run_dir, resume_blob)
    if last < run.steps:
        print(f"stopped at step {last} of {run.steps}; continue with --resume {run_dir}")
        return 0
    summary = rundir.finish(run_dir, f"{run.algo} on {run.env} ({run.seeds} seeds)")
    print(
        f"done: {run.algo} on {run.env}, final eval return "
        f"{summary['final_eval_return_mean']:.1f} ± {summary['final_eval_return_std']:.1f}; "
        f"outputs in {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
