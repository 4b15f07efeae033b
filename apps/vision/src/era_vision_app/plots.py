"""What the vision app reports about its runs: summaries and figures.

* :func:`summarize` (one run directory -> its summary: config, final metrics row, ...);
* :func:`plot_run` (``curves.png`` of one run: accuracy, NLL/ECE and entropy curves, and a
  reliability diagram);
* :func:`plot` (validation curves of several runs in one figure, e.g. a comparison).
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


def plot(run_dirs: Mapping[str, str | Path] | Sequence[str | Path], path: str | Path) -> Path:
    """Write one figure of the validation curves (top-1, NLL, ECE, mean entropy per epoch) of
    several runs to ``path``; ``run_dirs`` maps a legend label to a run directory (or is a
    list of directories, labelled by their path)."""
    runs = _run_dirs(run_dirs)
    if not runs:
        raise ValueError("run_dirs must name at least one run directory, got none")
    panels = (("val_top1", "top-1 (%)"), ("val_nll", "NLL (nats)"), ("val_ece", "ECE"),
              ("val_entropy_mean", "mean entropy (nats)"))  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    for label, run_dir in runs.items():
        rows = read_jsonl(run_dir / "metrics.jsonl")
        for ax, (key, _) in zip(axes.flat, panels, strict=True):
            ax.plot(_column(rows, "epoch"), _column(rows, key), "o-", label=label)
    for ax, (_, name) in zip(axes.flat, panels, strict=True):
        ax.set(xlabel="epoch", ylabel=name, title=f"{name} (val)")
    axes[0, 0].legend(fontsize="small")
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
