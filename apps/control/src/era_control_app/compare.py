"""``era-control-compare``: put finished (or running) ``era-control-train`` runs side by side.

    era-control-compare runs/cpu-cw/* --out docs/figures/control-cpu-cheetah-walker.png

For every run directory (its ``config.json`` and ``metrics.jsonl``), grouped by environment,
it prints a Markdown table and writes a figure:

* the table: seeds, last evaluated step, the final evaluation return (mean ± std over seeds),
  the mean over the last ``--last`` evaluations (less noisy with one evaluation episode), and
  the final policy entropy beside its target;
* the figure: one column per environment; evaluation return (top) and policy entropy (bottom)
  over steps, mean ± std over seeds, one colour per algorithm, the entropy targets dashed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from era_core.runlog import read_jsonl


@dataclass
class Run:
    path: Path
    algo: str
    env: str
    rows: list[dict[str, Any]] = field(repr=False)

    @property
    def seeds(self) -> list[int]:
        return sorted({int(r["seed"]) for r in self.rows})

    def series(self, key: str) -> dict[int, list[float]]:
        """``step -> values over seeds`` of ``key`` (finite values only)."""
        out: dict[int, list[float]] = {}
        for row in self.rows:
            value = row.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                out.setdefault(int(row["step"]), []).append(float(value))
        return dict(sorted(out.items()))


def load_run(path: Path) -> Run:
    config, metrics = path / "config.json", path / "metrics.jsonl"
    if not config.is_file() or not metrics.is_file():
        raise ValueError(
            f"{path}: not an era-control-train run directory (no config.json or metrics.jsonl)"
        )
    cfg = json.loads(config.read_text())
    return Run(path, cfg["algo"], cfg["env"], read_jsonl(metrics))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (numpy's default), over seeds."""
    return float(np.mean(values)), float(np.std(values))


def summary(run: Run, last: int = 3) -> dict[str, Any]:
    """Final and last-``last`` evaluation returns (over seeds), final entropy and target."""
    evals = run.series("eval_return")
    if not evals:
        return {"final_step": None}
    steps = list(evals)
    final = evals[steps[-1]]
    per_seed_tail: dict[int, list[float]] = {}
    tail_steps = set(steps[-last:])
    for row in run.rows:
        if int(row["step"]) in tail_steps and "eval_return" in row:
            per_seed_tail.setdefault(int(row["seed"]), []).append(float(row["eval_return"]))
    tail = [sum(v) / len(v) for v in per_seed_tail.values()]
    entropy, target = run.series("entropy"), run.series("target_entropy")
    return {
        "final_step": steps[-1],
        "final": _mean_std(final),
        "tail": _mean_std(tail),
        "tail_steps": sorted(tail_steps),
        "entropy": _mean_std(entropy[max(entropy)]) if entropy else None,
        "target_entropy": target[max(target)][0] if target else None,
    }


def table(runs: list[Run], last: int = 3) -> str:
    lines = [
        f"| env | algo | seeds | step | final eval return | mean of last {last} evals | "
        "final entropy (target) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in sorted(runs, key=lambda r: (r.env, r.algo)):
        s = summary(run, last)
        if s["final_step"] is None:
            lines.append(
                f"| {run.env} | {run.algo} | {len(run.seeds)} | – | no evaluation yet | | |"
            )
            continue
        ent = "" if s["entropy"] is None else f"{s['entropy'][0]:.2f}"
        if ent and s["target_entropy"] is not None:
            ent += f" ({s['target_entropy']:.2f})"
        lines.append(
            f"| {run.env} | {run.algo} | {len(run.seeds)} | {s['final_step']:,} | "
            f"{s['final'][0]:.1f} ± {s['final'][1]:.1f} | {s['tail'][0]:.1f} ± {s['tail'][1]:.1f}"
            f" | {ent} |"
        )
    return "\n".join(lines)


def figure(runs: list[Run], out: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r.env for r in runs})
    algos = sorted({r.algo for r in runs})
    colours = {a: f"C{i}" for i, a in enumerate(algos)}
    fig, axes = plt.subplots(2, len(envs), figsize=(5.5 * len(envs), 7), squeeze=False)
    for col, env in enumerate(envs):
        for run in (r for r in runs if r.env == env):
            for row, key in enumerate(("eval_return", "entropy")):
                data = run.series(key)
                if not data:
                    continue
                steps = list(data)
                stats = [_mean_std(v) for v in data.values()]
                mean = [m for m, _ in stats]
                ax = axes[row][col]
                ax.plot(steps, mean, color=colours[run.algo], label=run.algo)
                ax.fill_between(
                    steps,
                    [m - s for m, s in stats],
                    [m + s for m, s in stats],
                    color=colours[run.algo],
                    alpha=0.2,
                )
                if key == "entropy":
                    target = run.series("target_entropy")
                    if target:
                        ax.plot(
                            list(target),
                            [v[0] for v in target.values()],
                            "--",
                            color=colours[run.algo],
                            alpha=0.7,
                            label=f"{run.algo} target",
                        )
        axes[0][col].set_title(f"{env}: evaluation return")
        axes[1][col].set_title(f"{env}: policy entropy (nats)")
        for ax in axes[:, col]:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle(title or "mean ± std over seeds")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="era-control-compare", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="era-control-train run directories")
    parser.add_argument("--out", type=Path, help="PNG of the curves (default: none)")
    parser.add_argument("--last", type=int, default=3, help="evaluations averaged in the table")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error(f"--last must be >= 1, got {args.last}")
    try:
        runs = [load_run(p) for p in args.runs]
    except ValueError as err:
        parser.error(str(err))
    print(table(runs, args.last))
    if args.out is not None:
        figure(runs, args.out, args.title)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
