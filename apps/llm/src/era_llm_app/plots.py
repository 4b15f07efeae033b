"""PNG plots of a run (entropy with the ERA band, reward/accuracy) and of a comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

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


def _band(ax: Axes, low: float, high: float, data_max: float) -> None:
    """Shade the band beneath the curves and zoom on the data: its top may be far above it."""
    # grey, so that the band never shares a colour with a method's curve
    ax.axhspan(low, high, facecolor="none", edgecolor="0.6", hatch="//", lw=0, alpha=0.5,
               zorder=0, label=f"ERA band [{low:g}, {high:g}] nats")  # fmt: skip
    ax.axhline(low, color="k", lw=1.0, ls="--", zorder=1, label=f"floor {low:g}")
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

    # accuracy in % (as everywhere in the reports), the sampled reward on its own [0, 1] axis
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, accuracy = _series(rows, "eval_accuracy")
    ax.plot(steps, accuracy * 100, "o-", ms=3, color="C1", label="held-out accuracy (greedy)")
    ax.set(
        xlabel="GRPO step",
        ylabel="held-out accuracy (%)",
        title="Reward and accuracy",
        ylim=(0, 102),
    )
    reward_ax = ax.twinx()
    reward_ax.plot(*_series(rows, "reward_mean"), color="C0", label="reward (sampled)")
    reward_ax.set(ylabel="reward (sampled, mean per step)", ylim=(0, 1.02))
    lines = [*ax.get_lines(), *reward_ax.get_lines()]
    ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reward.png", dpi=120)
    plt.close(fig)
    return [out / "entropy.png", out / "reward.png"]


STYLES = ("-", "--", "-.", ":")  # one per method, so overlapping curves stay apart
MARKERS = ("o", "s", "^", "D")


def plot_comparison(
    out: Path, runs: Mapping[str, Sequence[Sequence[Mapping]]], low: float, high: float
) -> list[Path]:
    """Mean (line) and ± one sample std over seeds (shade) per method, against the GRPO step:
    top-20 % response entropy (the band shaded, drawn beneath the curves), held-out accuracy
    (%) and sampled reward. Each method has its own colour, line style and marker.

    `runs` maps a method name to its seeds' metric rows.
    """
    out = Path(out)
    paths = []
    panels = [
        ("top_entropy_mean", "top-20% response entropy (nats)", "compare_entropy.png", True, 1),
        ("eval_accuracy", "held-out accuracy (%, greedy)", "compare_accuracy.png", False, 100),
        ("reward_mean", "reward (sampled, mean per step)", "compare_reward.png", False, 1),
    ]
    for key, ylabel, name, band, scale in panels:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        data_max = float("nan")
        for i, (method, seeds) in enumerate(runs.items()):
            curves = [_series(rows, key) for rows in seeds]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)
            steps = curves[0][0][:n]
            smooth = _smooth if key != "eval_accuracy" else (lambda v: v)
            vals = np.stack([smooth(c[1][:n]) for c in curves]) * scale
            mean = vals.mean(0)
            std = vals.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            (line,) = ax.plot(
                steps, mean, ls=STYLES[i % len(STYLES)], lw=1.8, zorder=3,
                marker=MARKERS[i % len(MARKERS)], markevery=max(1, n // 12), ms=4,
                label=f"{method} ({len(curves)} seeds)",
            )  # fmt: skip
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.12,
                            lw=0, zorder=2)  # fmt: skip
            data_max = np.nanmax([data_max, float((mean + std).max())])
        if band:
            _band(ax, low, high, data_max)
        else:
            ax.set_ylim(bottom=0)
        smoothing = "" if key == "eval_accuracy" else ", moving average"
        ax.set(
            xlabel="GRPO step",
            ylabel=ylabel,
            title=f"mean ± sample std over seeds (shaded){smoothing}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths
