"""PNG plots of a run (entropy with the ERA band, reward/accuracy) and of a comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_comparison", "plot_run"]


def _series(rows: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts, strict=True)
    return np.asarray(steps, float), np.asarray(vals, float)


def _smooth(values: np.ndarray) -> np.ndarray:
    """Trailing moving average over ~1/30 of the run (per-step entropies are noisy)."""
    window = max(1, len(values) // 30)
    if window == 1:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (csum[i + 1] - csum[lo]) / (i + 1 - lo)
    return out


def _band(ax: Any, low: float, high: float, data_max: float) -> None:
    """Shade the band and zoom on the data: the band's top may be far above it."""
    ax.axhspan(low, high, color="tab:green", alpha=0.12, label=f"ERA band [{low:g}, {high:g}]")
    ax.axhline(low, color="tab:green", lw=0.8, ls="--")
    ax.set_ylim(0, max(data_max, low) * 1.25 if np.isfinite(data_max) else high * 1.05)


def plot_run(out: Path, rows: Sequence[Mapping], low: float, high: float) -> list[Path]:
    """``entropy.png`` (top-20 % / rest entropy, band shaded) and ``reward.png``."""
    out = Path(out)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = _series(rows, "top_entropy_mean")
    for key, label in [("top_entropy_mean", "top-20% tokens"), ("rest_entropy_mean", "other 80%")]:
        ax.plot(*_series(rows, key), label=label)
    _band(ax, low, high, float(np.max(top[1])) if len(top[1]) else float("nan"))
    ax.set(xlabel="GRPO step", ylabel="response entropy (nats)", title="Response entropy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "entropy.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*_series(rows, "reward_mean"), label="reward (sampled)")
    ax.plot(*_series(rows, "eval_accuracy"), marker="o", ms=3, label="held-out accuracy (greedy)")
    ax.set(xlabel="GRPO step", ylabel="reward / accuracy", title="Reward", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reward.png", dpi=120)
    plt.close(fig)
    return [out / "entropy.png", out / "reward.png"]


def plot_comparison(
    out: Path, runs: Mapping[str, Sequence[Sequence[Mapping]]], low: float, high: float
) -> list[Path]:
    """Mean (line) and min-max over seeds (shade) per method: entropy and accuracy.

    `runs` maps a method name to its seeds' metric rows.
    """
    out = Path(out)
    paths = []
    panels = [
        ("top_entropy_mean", "top-20% response entropy (nats)", "compare_entropy.png", True),
        ("eval_accuracy", "held-out accuracy (greedy)", "compare_accuracy.png", False),
        ("reward_mean", "reward (sampled)", "compare_reward.png", False),
    ]
    for key, ylabel, name, band in panels:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        data_max = float("nan")
        for method, seeds in runs.items():
            curves = [_series(rows, key) for rows in seeds]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)
            steps = curves[0][0][:n]
            smooth = _smooth if key != "eval_accuracy" else (lambda v: v)
            vals = np.stack([smooth(c[1][:n]) for c in curves])
            (line,) = ax.plot(steps, vals.mean(0), label=f"{method} ({len(curves)} seeds)")
            ax.fill_between(steps, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.2)
            data_max = np.nanmax([data_max, float(vals.max())])
        if band:
            _band(ax, low, high, data_max)
        else:
            ax.set_ylim(bottom=0)
        smoothing = "" if key == "eval_accuracy" else ", moving average"
        ax.set(
            xlabel="GRPO step", ylabel=ylabel, title=f"mean over seeds, shaded min-max{smoothing}"
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths
