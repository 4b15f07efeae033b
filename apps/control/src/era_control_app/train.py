"""``era-control-train``: train SAC, SAC-ERA, PPO or PPO-ERA on several seeds at once.

    era-control-train --algo sac-era --env dmc/cartpole-swingup --steps 3000 --seeds 2 --out DIR

writes ``DIR/config.json`` first, then ``DIR/metrics.csv``, ``DIR/metrics.jsonl``, ``DIR/tb/``
(TensorBoard) and ``DIR/checkpoint.pkl`` while training, and ``DIR/curves.png``,
``DIR/summary.json`` and ``DIR/DONE`` at the end (a run without ``DONE`` is unfinished:
continue it with ``--resume DIR``). See ``docs/control.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

RUN_FLAGS = {
    # flag dest -> RunConfig field
    "algo": "algo",
    "env": "env",
    "steps": "steps",
    "seeds": "seeds",
    "seed": "seed",
    "action_repeat": "action_repeat",
    "log_interval": "log_interval",
    "eval_interval": "eval_interval",
    "eval_episodes": "eval_episodes",
    "checkpoint_interval": "checkpoint_interval",
}
QUICK_STEPS = {"sac": 5000, "sac-era": 5000, "ppo": 20480, "ppo-era": 20480}


def preset_names() -> list[str]:
    folder = resources.files("era_control_app") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset by name (``era_control_app/presets/<name>.toml``) or a path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        return tomllib.loads(path.read_text())
    if name not in preset_names():
        raise ValueError(f"unknown --config {name!r}; valid: {', '.join(preset_names())}")
    return tomllib.loads(
        (resources.files("era_control_app") / "presets" / f"{name}.toml").read_text()
    )


def preset_agent(preset: dict[str, Any], algo: str) -> dict[str, Any]:
    agent = preset.get("agent", {})
    out = {k: v for k, v in agent.items() if not isinstance(v, dict)}
    out.update(agent.get(algo, {}))
    return out


RUN_INTERVALS = ("eval_interval", "checkpoint_interval")


def default_intervals(steps: int) -> dict[str, int]:
    log = max(steps // 30, 1)
    evals = max(steps // 10 // log, 1) * log
    return {"log_interval": log, "eval_interval": evals, "checkpoint_interval": evals}


def quick(run: dict[str, Any]) -> dict[str, Any]:
    """Shrink a run to a few minutes on CPU: fewer steps and seeds, 2x256 at most, 1 update
    per step, intervals scaled down."""
    run = copy.deepcopy(run)
    run["steps"] = min(run["steps"], QUICK_STEPS[run["algo"]])
    run["seeds"] = min(run["seeds"], 2)
    run["eval_episodes"] = 1
    agent = run["agent"]
    if run["algo"] in ("sac", "sac-era"):
        agent["hidden"] = [min(int(h), 256) for h in agent.get("hidden", [512, 512])]
        agent["updates_per_step"] = 1
        agent["batch_size"] = min(int(agent.get("batch_size", 256)), 256)
        agent["warmup_steps"] = min(int(agent.get("warmup_steps", 5000)), run["steps"] // 10)
    else:
        agent["rollout_steps"] = min(int(agent.get("rollout_steps", 2048)), 1024)
    for key in ("log_interval", "eval_interval", "checkpoint_interval"):
        run[key] = min(run[key], default_intervals(run["steps"])[key])
    return align_intervals(run)


def align_intervals(run: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Round the eval and checkpoint intervals (those not in ``keep``, i.e. not given as flags)
    down to multiples of the log interval: both happen only on logging steps."""
    log = run["log_interval"]
    for key in ("eval_interval", "checkpoint_interval"):
        if key not in keep and run[key] % log:
            run[key] = max(run[key] // log, 1) * log
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="era-control-train",
        description="Train SAC, SAC-ERA, PPO or PPO-ERA (JAX, several seeds in one program).",
    )
    p.add_argument("--algo", choices=["sac", "sac-era", "ppo", "ppo-era"])
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
    p.add_argument("--target-entropy", type=float, help="ERA/SAC target entropy PER action dim")
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


def parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def resolve(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run config (a RunConfig dict) from ``base`` (a stored run, for --resume) or from
    the defaults and preset, then the flags given, then ``--quick``."""
    if base is not None:
        run = copy.deepcopy(base)
    else:
        preset = load_preset(args.config) if args.config else {}
        if args.algo is None:
            raise ValueError("--algo is required (sac, sac-era, ppo, ppo-era)")
        if preset and args.algo not in preset.get("algos", [args.algo]):
            raise ValueError(
                f"--algo {args.algo} is not part of --config {args.config} "
                f"(its algos: {', '.join(preset['algos'])})"
            )
        env = args.env or (preset.get("envs") or [None])[0]
        if env is None:
            raise ValueError("--env is required, e.g. --env dmc/cartpole-swingup")
        steps = (
            args.steps if args.steps is not None else preset.get("run", {}).get("steps", 100_000)
        )
        run = {"algo": args.algo, "env": env, "steps": steps, "seeds": 1, "seed": 0}
        run["action_repeat"] = None
        run.update(default_intervals(max(int(steps), 1)))
        run["eval_episodes"] = 1
        run.update({k: v for k, v in preset.get("run", {}).items()})
        run["agent"] = preset_agent(preset, args.algo)
    for dest, field in RUN_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            run[field] = value
    if args.steps is not None and base is None:
        for key, value in default_intervals(max(args.steps, 1)).items():
            if getattr(args, key) is None and run[key] > args.steps:
                run[key] = value
        align_intervals(run, keep=tuple(k for k in RUN_INTERVALS if getattr(args, k) is not None))
    agent = dict(run["agent"])
    agent.update(parse_set(args.set))
    if args.target_entropy is not None:
        agent["entropy_per_dim"] = args.target_entropy
    run["agent"] = agent
    if args.quick:
        run = quick(run)
    if run["steps"] < 1:
        raise ValueError(f"--steps must be a positive integer, got {run['steps']}")
    return run


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        ("eval_return", "episode_return"),
        ("entropy", "gaussian_entropy", "target_entropy"),
    )
    for ax, keys in zip(axes, panels, strict=True):
        for key in keys:
            by_step: dict[int, list[float]] = {}
            for row in rows:
                value = row.get(key)
                if value is not None and math.isfinite(value):
                    by_step.setdefault(row["step"], []).append(value)
            if not by_step:
                continue
            steps = np.array(sorted(by_step))
            mean = np.array([np.mean(by_step[s]) for s in steps])
            std = np.array([np.std(by_step[s]) for s in steps])
            style = "--" if key == "target_entropy" else "-"
            ax.plot(steps, mean, style, label=key)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0].set_title("return (mean ± std over seeds)")
    axes[1].set_title("policy entropy (nats)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    last_step = max((r["step"] for r in rows if r.get("eval_return") is not None), default=None)
    finals = [r["eval_return"] for r in rows if r["step"] == last_step and "eval_return" in r]
    return {
        "final_step": last_step,
        "final_eval_return_mean": float(np.mean(finals)) if finals else None,
        "final_eval_return_std": float(np.std(finals)) if finals else None,
        "final_eval_returns": finals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_configs:
        for name in preset_names():
            preset = load_preset(name)
            print(f"{name}: {preset['description']}")
        return 0
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")

    from era_core.runlog import MetricsLogger, atomic_write_bytes, atomic_write_text, read_jsonl

    resume_blob = None
    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out) != run_dir:
            parser.error(f"--out {args.out} differs from --resume {args.resume}; pass one of them")
        if not (run_dir / "config.json").exists():
            parser.error(f"--resume {run_dir}: no config.json there (not a run directory)")
        if (run_dir / "DONE").exists():
            parser.error(f"--resume {run_dir}: that run is already complete (DONE exists)")
        stored = json.loads((run_dir / "config.json").read_text())
        try:
            requested = resolve(args, base=stored)
        except ValueError as err:
            parser.error(str(err))
        if requested != stored:
            diff = {
                k: (stored.get(k), requested.get(k))
                for k in requested
                if requested[k] != stored.get(k)
            }
            parser.error(
                f"--resume {run_dir} was started with a different config; "
                f"differences (stored, given): {diff}"
            )
        ckpt = run_dir / "checkpoint.pkl"
        resume_blob = ckpt.read_bytes() if ckpt.exists() else None
        run_dict = stored
    else:
        if not args.out:
            parser.error("--out DIR is required (or --resume DIR)")
        run_dir = Path(args.out)
        if run_dir.exists() and any(run_dir.iterdir()):
            parser.error(
                f"--out {run_dir} exists and is not empty; use --resume {run_dir} to continue "
                "it, or choose a new directory"
            )
        try:
            run_dict = resolve(args)
        except ValueError as err:
            parser.error(str(err))

    from era_control.training import RunConfig, make_trainer

    try:
        run = RunConfig.from_dict(run_dict)
        trainer = make_trainer(run)
    except (ValueError, ImportError, TypeError) as err:
        parser.error(str(err))

    run_dir.mkdir(parents=True, exist_ok=True)
    if resume_blob is None:
        atomic_write_text(run_dir / "config.json", json.dumps(run.to_dict(), indent=2) + "\n")
    start = 0
    if resume_blob is not None:
        import pickle

        start = pickle.loads(resume_blob)["step"]
    logger = MetricsLogger(
        run_dir, tensorboard=not args.no_tensorboard, resume_step=start if resume_blob else None
    )

    from tqdm import tqdm

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

    def save(step: int, blob: bytes) -> None:
        atomic_write_bytes(run_dir / "checkpoint.pkl", blob)

    with logger:
        last = trainer.run(
            logger.log,
            save_checkpoint=save,
            resume=resume_blob,
            stop_at=args.stop_at,
            on_step=on_step,
        )
    bar.close()
    if last < run.steps:
        print(f"stopped at step {last} of {run.steps}; continue with --resume {run_dir}")
        return 0
    rows = read_jsonl(run_dir / "metrics.jsonl")
    _plot(rows, run_dir / "curves.png", f"{run.algo} on {run.env} ({run.seeds} seeds)")
    summary = summarize(rows)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(run_dir / "DONE", "complete\n")
    print(
        f"done: {run.algo} on {run.env}, final eval return "
        f"{summary['final_eval_return_mean']:.1f} ± {summary['final_eval_return_std']:.1f}; "
        f"outputs in {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
