"""The end-of-run figure: accuracy, NLL/ECE and entropy curves, and a reliability diagram."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt

from era_core.runlog import atomic_write_bytes, read_jsonl

__all__ = ["plot_run"]


def _column(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [math.nan if row.get(key) is None else float(row[key]) for row in rows]


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
