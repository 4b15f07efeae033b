"""What the vision app reports about its runs: summaries and figures.

* :func:`summarize` (one run directory -> its summary: config, final metrics row, ...);
* :func:`plot_run` (``curves.png`` of one run: accuracy, NLL/ECE and entropy curves, and a
  reliability diagram);
* :func:`plot` (validation curves of several runs in one figure, e.g. a comparison: one
  colour per arm, top-1 zoomed, the smallest predicted entropy beside ``H_min``).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt

from era_core.runlog import atomic_write_bytes, read_jsonl
from era_core.runs import CONFIG, SUMMARY

__all__ = ["plot", "plot_run", "summarize"]


def _column(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [math.nan if row.get(key) is None else float(row[key]) for row in rows]


def summarize(run_dir: str | Path) -> dict[str, Any]:
    """The summary of the run in ``run_dir``.

    A finished run's ``summary.json`` (config, classes, layout, sizes, ``final`` metrics row,
    reliability bins, paper figures). For an unfinished run: its ``config`` and the last
    metrics row as ``final`` (``finished`` tells which).

    Raises:
        ValueError: ``run_dir`` holds no run, or an unfinished one without metrics yet.
    """
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).is_file():
        return {**json.loads((run_dir / SUMMARY).read_text()), "finished": True}
    metrics = run_dir / "metrics.jsonl"
    if not (run_dir / CONFIG).is_file() or not metrics.is_file() or not read_jsonl(metrics):
        raise ValueError(
            f"run_dir {str(run_dir)!r} holds no run with metrics (needs {SUMMARY}, or "
            f"{CONFIG} and metrics.jsonl)"
        )
    config = json.loads((run_dir / CONFIG).read_text())
    return {"config": config, "final": read_jsonl(metrics)[-1], "finished": False}


def _run_dirs(run_dirs: Mapping[str, str | Path] | Sequence[str | Path]) -> dict[str, Path]:
    if isinstance(run_dirs, Mapping):
        return {str(label): Path(path) for label, path in run_dirs.items()}
    return {str(path): Path(path) for path in run_dirs}


def _arm(label: str) -> str:
    """The arm of a ``"<arm>/seed<k>"`` label (a label without ``/`` is its own arm)."""
    return label.split("/")[0]


def _zoom(ax: Any, values: list[float], pad: float = 0.25) -> None:
    """Limit ``ax``'s y-axis to ``values`` (finite ones) with ``pad`` of their range around."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    margin = max((high - low) * pad, 0.05)
    ax.set_ylim(low - margin, high + margin)


def plot(run_dirs: Mapping[str, str | Path] | Sequence[str | Path], path: str | Path) -> Path:
    """Write one figure of the validation curves of several runs to ``path``.

    Panels: top-1 over all epochs, top-1 zoomed on the second half of training (where the
    arms differ by fractions of a point), NLL, ECE, mean and smallest predicted entropy per
    epoch (the latter with each ERA arm's ``H_min`` dashed). ``run_dirs`` maps a legend label
    to a run directory (or is a list of directories, labelled by their path); labels
    ``"<arm>/seed<k>"`` share their arm's colour, one line style per seed.
    """
    runs = _run_dirs(run_dirs)
    if not runs:
        raise ValueError("run_dirs must name at least one run directory, got none")
    panels = (("val_top1", "top-1 (%)"), ("val_top1", "top-1 (%), second half, zoomed"),
              ("val_nll", "NLL (nats)"), ("val_ece", "ECE (15 bins)"),
              ("val_entropy_mean", "mean predicted entropy (nats)"),
              ("val_entropy_min", "smallest predicted entropy (nats)"))  # fmt: skip
    arms = list(dict.fromkeys(_arm(label) for label in runs))
    colours = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
    styles = ("-", "--", ":", "-.")
    fig, axes = plt.subplots(3, 2, figsize=(11, 11), constrained_layout=True)
    seen: dict[str, int] = {}
    zoomed: list[float] = []
    floors: dict[str, float] = {}
    for label, run_dir in runs.items():
        rows = read_jsonl(run_dir / "metrics.jsonl")
        arm = _arm(label)
        style = styles[seen.get(arm, 0) % len(styles)]
        seen[arm] = seen.get(arm, 0) + 1
        epochs = _column(rows, "epoch")
        half = len(rows) // 2
        for ax, (key, name) in zip(axes.flat, panels, strict=True):
            values = _column(rows, key)
            if "zoomed" in name:
                epochs_shown, values = epochs[half:], values[half:]
                zoomed += values
            else:
                epochs_shown = epochs
            ax.plot(epochs_shown, values, marker="o", ms=3, ls=style, color=colours[arm],
                    label=label)  # fmt: skip
        config_path = run_dir / CONFIG
        if config_path.is_file():
            config = json.loads(config_path.read_text())
            if config.get("era"):
                floors[arm] = float(config["min_entropy"])
    _zoom(axes[0, 1], zoomed)
    for arm, h_min in floors.items():
        axes[2, 1].axhline(
            h_min, color=colours[arm], lw=1, ls="--", label=f"{arm}: H_min {h_min:g}"
        )
    for ax, (_, name) in zip(axes.flat, panels, strict=True):
        ax.set(xlabel="epoch", ylabel=name, title=f"{name} (val)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    axes[2, 1].legend(fontsize="small", loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def plot_run(out: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``out/curves.png`` from ``out/metrics.jsonl`` and the final reliability bins."""
    out = Path(out)
    rows = read_jsonl(out / "metrics.jsonl")
    epochs = _column(rows, "epoch")
    config = summary["config"]
    title = f"{config['model']} {'ERA H_min=' + str(config['min_entropy']) if config['era'] else 'baseline'}"

    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    ax = axes[0, 0]
    ax.plot(epochs, _column(rows, "train_top1"), "o-", label="train top-1")
    ax.plot(epochs, _column(rows, "val_top1"), "o-", label="val top-1")
    ax.plot(epochs, _column(rows, "val_top5"), "o--", label="val top-5")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend()

    ax = axes[0, 1]
    ax.plot(epochs, _column(rows, "val_nll"), "o-", color="C0", label="val NLL")
    ax.set(xlabel="epoch", ylabel="NLL (nats)", title="NLL and ECE")
    twin = ax.twinx()
    twin.plot(epochs, _column(rows, "val_ece"), "s--", color="C3", label="val ECE")
    twin.set_ylabel("ECE (15 bins)")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")

    ax = axes[1, 0]
    ax.plot(epochs, _column(rows, "val_entropy_mean"), "o-", label="mean")
    ax.plot(epochs, _column(rows, "val_entropy_min"), "o--", label="min")
    if config["era"]:
        ax.axhline(config["min_entropy"], color="k", lw=0.8, ls=":", label="H_min")
    ax.set(xlabel="epoch", ylabel="entropy (nats)", title="predictive entropy (val)")
    ax.legend()

    ax = axes[1, 1]
    bins = summary["reliability"]
    edges = bins["edges"]
    centers = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    width = edges[1] - edges[0]
    accuracy = [0.0 if a is None or math.isnan(a) else a for a in bins["accuracy"]]
    ax.bar(centers, accuracy, width=width, edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    ece = summary["final"]["val_ece"]
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"reliability (final epoch, ECE {ece:.4f})",
    )
    ax.legend(loc="upper left")
    fig.suptitle(title)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(out / "curves.png", buffer.getvalue())
