"""Summaries and figures of ``era-control-train`` run directories, written once for all callers.

* :func:`load_run`: a run directory (``config.json`` + ``metrics.jsonl``) as a :class:`Run`.
* :func:`summarize`: the final and last-``K`` evaluation returns (over seeds), the final
  entropy and its target; ``era-control-train`` writes it as ``summary.json``.
* :func:`seed_checks`: per seed, the final return and the entropy mechanism (the Gaussian's
  entropy against the target, the bounded policy's below it, a seed stuck at an action bound).
* :func:`table`: a Markdown table of runs (``era-control-compare`` prints it).
* :func:`plot`: one column per environment, evaluation return (top) and policy entropy
  (bottom) over environment steps (after action repeat), mean ± sample std over seeds, one
  colour per algorithm, targets dashed
  (``curves.png`` of a run, ``era-control-compare --out``, ``era-reproduce``'s figures).
* :func:`baseline_pairs`: which algorithms of a set compare against which (from the registry).

Every spread over seeds is the sample standard deviation (``n - 1``; 0 for one seed).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from era_core.runlog import read_jsonl

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# series per panel: the first solid, the next dotted (``detail=True`` adds them)
PANELS = (("eval_return",), ("entropy",))
DETAIL_PANELS = (("eval_return", "episode_return"), ("entropy", "gaussian_entropy"))


@dataclass
class Run:
    path: Path
    algo: str
    env: str
    rows: list[dict[str, Any]] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The algorithm, and its variant where the run's agent settings make one: SAC-ERA with
        the learned compensation (``--set compensation=learned``) is ``sac-era (learned δ)``."""
        if self.config.get("agent", {}).get("compensation") == "learned":
            return f"{self.algo} (learned δ)"
        return self.algo

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


def load_run(path: str | Path) -> Run:
    path = Path(path)
    config, metrics = path / "config.json", path / "metrics.jsonl"
    if not config.is_file() or not metrics.is_file():
        raise ValueError(
            f"{path}: not an era-control-train run directory (no config.json or metrics.jsonl)"
        )
    cfg = json.loads(config.read_text())
    return Run(path, cfg["algo"], cfg["env"], read_jsonl(metrics), cfg)


def _as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else load_run(run)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (``n - 1``; 0 for one value), over seeds."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def summarize(run: Run | str | Path, last: int = 3) -> dict[str, Any]:
    """Final and last-``last`` evaluation returns (over seeds), final entropy and target.

    Keys: ``final_step`` (``None`` before the first evaluation), ``final_eval_returns`` (one
    per seed) with their ``final_eval_return_mean`` / ``_std``, ``final`` and ``tail`` as
    ``(mean, std)`` (``tail``: per seed, the mean over the last ``last`` evaluations),
    ``tail_steps``, ``entropy`` (``(mean, std)`` at the last logged step) and
    ``target_entropy``.
    """
    run = _as_run(run)
    evals = run.series("eval_return")
    if not evals:
        return {
            "final_step": None,
            "final_eval_return_mean": None,
            "final_eval_return_std": None,
            "final_eval_returns": [],
        }
    steps = list(evals)
    final = evals[steps[-1]]
    tail_steps = set(steps[-last:])
    per_seed_tail: dict[int, list[float]] = {}
    for row in run.rows:
        if int(row["step"]) in tail_steps and "eval_return" in row:
            per_seed_tail.setdefault(int(row["seed"]), []).append(float(row["eval_return"]))
    tail = [sum(v) / len(v) for v in per_seed_tail.values()]
    entropy, target = run.series("entropy"), run.series("target_entropy")
    return {
        "final_step": steps[-1],
        "final_eval_return_mean": mean_std(final)[0],
        "final_eval_return_std": mean_std(final)[1],
        "final_eval_returns": final,
        "final": mean_std(final),
        "tail": mean_std(tail),
        "tail_steps": sorted(tail_steps),
        "entropy": mean_std(entropy[max(entropy)]) if entropy else None,
        "target_entropy": target[max(target)][0] if target else None,
    }


# A bounded policy whose Gaussian mean sits at an action bound loses about half its mass there:
# its entropy is near the Gaussian's less ln 2 per dimension (a half-normal), or lower.
AT_BOUND_TOLERANCE = 0.05  # nats per dimension


def action_dim(run: Run) -> int | None:
    """The action dimension, from the logged target and the per-dimension target of the
    algorithm (its config's default unless the run overrode it); ``None`` if unknown."""
    target = run.series("target_entropy")
    if not target or not run.algo:
        return None
    from era_control import get_algorithm

    try:
        default = get_algorithm(run.algo).config().target_entropy_per_dim
    except (KeyError, ValueError, AttributeError, TypeError):
        return None
    per_dim = run.config.get("agent", {}).get("target_entropy_per_dim", default)
    total = next(iter(target.values()))[0]
    if not per_dim or total / per_dim < 0.5:
        return None
    return round(total / per_dim)


def _per_seed(run: Run, key: str) -> dict[int, list[tuple[int, float]]]:
    """``seed -> [(step, value), ...]`` of ``key`` (finite values, in step order)."""
    out: dict[int, list[tuple[int, float]]] = {}
    for row in run.rows:
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out.setdefault(int(row["seed"]), []).append((int(row["step"]), float(value)))
    return {seed: sorted(points) for seed, points in sorted(out.items())}


def seed_checks(run: Run | str | Path, tail: float = 0.2) -> list[dict[str, Any]]:
    """Per seed: the final evaluation return and the entropy mechanism over the last ``tail``
    of the logged steps.

    Keys: ``seed``, ``final_eval_return``, ``entropy`` (the bounded policy's, tail mean),
    ``gaussian_entropy`` (tail mean, ``None`` when not logged), ``target_entropy``,
    ``action_dim``, ``gap_to_target`` (Gaussian minus target), ``deficit_per_dim`` (Gaussian
    minus bounded, per dimension), ``at_bound`` (the bounded entropy is within
    :data:`AT_BOUND_TOLERANCE` of the Gaussian's less ln 2 per dimension, or below: the mean
    sits at an action bound) and ``at_bound_since`` (the first logged step of the streak that
    lasts to the end, ``None`` unless ``at_bound``).
    """
    run = _as_run(run)
    dim = action_dim(run)
    evals, bounded = _per_seed(run, "eval_return"), _per_seed(run, "entropy")
    gaussian, target = _per_seed(run, "gaussian_entropy"), _per_seed(run, "target_entropy")
    out = []
    for seed in run.seeds:
        ent, gau = bounded.get(seed, []), dict(gaussian.get(seed, []))
        k = max(1, math.ceil(len(ent) * tail))
        row: dict[str, Any] = {
            "seed": seed,
            "final_eval_return": evals[seed][-1][1] if evals.get(seed) else None,
            "entropy": float(np.mean([v for _, v in ent[-k:]])) if ent else None,
            "gaussian_entropy": None,
            "target_entropy": target[seed][-1][1] if target.get(seed) else None,
            "action_dim": dim,
            "gap_to_target": None,
            "deficit_per_dim": None,
            "at_bound": False,
            "at_bound_since": None,
        }
        if gau and ent:
            row["gaussian_entropy"] = float(np.mean([gau[s] for s, _ in ent[-k:] if s in gau]))
            if row["target_entropy"] is not None:
                row["gap_to_target"] = row["gaussian_entropy"] - row["target_entropy"]
        if gau and ent and dim:
            row["deficit_per_dim"] = (row["gaussian_entropy"] - row["entropy"]) / dim

            def pinned(bounded_value: float, gaussian_value: float) -> bool:
                return (
                    bounded_value / dim <= gaussian_value / dim - math.log(2) + AT_BOUND_TOLERANCE
                )

            row["at_bound"] = pinned(row["entropy"], row["gaussian_entropy"])
            if row["at_bound"]:  # the first step of the pinned streak that lasts to the end
                for step, value in reversed([(s, v) for s, v in ent if s in gau]):
                    if not pinned(value, gau[step]):
                        break
                    row["at_bound_since"] = step
        out.append(row)
    return out


def table(runs: Iterable[Run | str | Path], last: int = 3) -> str:
    """A Markdown table: one line per run, sorted by environment and algorithm."""
    lines = [
        f"| env | algo | seeds | step | final eval return | mean of last {last} evals | "
        "final entropy (target) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in sorted(map(_as_run, runs), key=lambda r: (r.env, r.name)):
        s = summarize(run, last)
        if s["final_step"] is None:
            lines.append(
                f"| {run.env} | {run.name} | {len(run.seeds)} | – | no evaluation yet | | |"
            )
            continue
        ent = "" if s["entropy"] is None else f"{s['entropy'][0]:.2f}"
        if ent and s["target_entropy"] is not None:
            ent += f" ({s['target_entropy']:.2f})"
        lines.append(
            f"| {run.env} | {run.name} | {len(run.seeds)} | {s['final_step']:,} | "
            f"{s['final'][0]:.1f} ± {s['final'][1]:.1f} | {s['tail'][0]:.1f} ± {s['tail'][1]:.1f}"
            f" | {ent} |"
        )
    return "\n".join(lines)


def baseline_pairs(algos: Iterable[str]) -> list[tuple[str, str]]:
    """``(baseline, era)`` for every ERA algorithm in ``algos`` whose baseline is there too."""
    from era_control import get_algorithm

    algos = list(algos)
    pairs = [(get_algorithm(a).baseline, a) for a in algos if get_algorithm(a).is_era]
    return [(base, era) for base, era in pairs if base in algos]


def _band(ax: Axes, data: dict[int, list[float]], colour: str, label: str, style: str) -> None:
    """Mean over seeds per step as a line, ± one sample std as a band."""
    steps = list(data)
    stats = [mean_std(v) for v in data.values()]
    mean = [m for m, _ in stats]
    ax.plot(steps, mean, style, color=colour, label=label)
    lower, upper = [m - s for m, s in stats], [m + s for m, s in stats]
    ax.fill_between(steps, lower, upper, color=colour, alpha=0.2 if style == "-" else 0.1)


def _draw_run(axes: Sequence[Axes], run: Run, colour: str, panels: Sequence[Sequence[str]]) -> None:
    for ax, keys in zip(axes, panels, strict=True):
        for key, style in zip(keys, ("-", ":"), strict=False):
            data = run.series(key)
            if data:
                label = run.name if style == "-" else f"{run.name} {key}"
                _band(ax, data, colour, label, style)
    target = run.series("target_entropy")
    if target:
        steps, values = list(target), [v[0] for v in target.values()]
        axes[1].plot(steps, values, "--", color=colour, alpha=0.7, label=f"{run.name} target")


def plot(
    runs: Iterable[Run | str | Path],
    path: str | Path,
    *,
    title: str | None = None,
    detail: bool = False,
) -> Path:
    """The figure of ``runs`` (run directories or :class:`Run`) at ``path`` (PNG).

    ``detail=True`` adds the training episodes' return and the Gaussian's entropy (dotted).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, path = [_as_run(r) for r in runs], Path(path)
    envs = sorted({r.env for r in runs})
    colours = {a: f"C{i}" for i, a in enumerate(sorted({r.name for r in runs}))}
    fig, axes = plt.subplots(2, len(envs), figsize=(5.5 * len(envs), 7), squeeze=False)
    for col, env in enumerate(envs):
        for run in (r for r in runs if r.env == env):
            _draw_run(axes[:, col], run, colours[run.name], DETAIL_PANELS if detail else PANELS)
        axes[0][col].set_title(f"{env}: evaluation return")
        axes[1][col].set_title(f"{env}: policy entropy")
        axes[0][col].set_ylabel("evaluation return (episode sum of rewards)")
        axes[1][col].set_ylabel("policy entropy (nats)")
        repeats = {r.config.get("action_repeat") for r in runs if r.env == env} - {None}
        repeat = (
            f"action repeat {repeats.pop()}" if len(repeats) == 1 else "the env's action repeat"
        )
        for ax in axes[:, col]:
            ax.set_xlabel(f"environment steps (after {repeat})")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    width = 50 * len(envs)  # about the characters that fit above the columns
    fig.suptitle(textwrap.fill(title or "mean ± sample std over seeds", width))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
