"""Comparison runs: every arm (a preset) for every seed, then mean +- std over seeds.

``era-vision-train --preset digits-compare --seeds 0 1 2 --out DIR`` trains into
``DIR/<arm>/seed<k>/`` (ordinary run directories) and writes

* ``DIR/summary.csv``: one row per arm: the arm's settings, ``n`` seeds, and ``<metric>_mean``
  / ``<metric>_std`` (sample std, ddof=1) for top1, top5 (%), nll, ece, entropy_mean,
  entropy_min;
* ``DIR/summary.md``: the same as a Markdown table (mean ± std);
* ``DIR/summary.json``: the per-seed finals and the aggregates;
* ``DIR/comparison.png``: the validation curves of every run (``plots.plot``); ``DIR/DONE``
  at the end.

Running the same command again skips finished runs and resumes interrupted ones, so a long
comparison survives preemption. :func:`run_comparison` is the Python entry point.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

from era_core.runlog import atomic_write_text
from era_core.runs import run_status

from .config import ConfigError, compare_presets, resolve_config
from .plots import plot
from .plots import summarize as summarize_run
from .training import CHECKPOINT, DONE, prepare, train

__all__ = ["METRICS", "run_comparison", "summarize"]

METRICS = {  # summary name -> column of the final metrics row
    "top1": "val_top1",
    "top5": "val_top5",
    "nll": "val_nll",
    "ece": "val_ece",
    "entropy_mean": "val_entropy_mean",
    "entropy_min": "val_entropy_min",
}
SETTINGS = ("model", "era", "min_entropy", "label_smoothing", "drop_rate", "epochs", "aug")


def run_comparison(
    name: str,
    out: str | Path,
    *,
    explicit: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    arms: list[str] | None = None,
    quick: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train every arm of comparison preset ``name`` for every seed; returns the summary rows."""
    spec = compare_presets()[name]
    explicit = dict(explicit or {})
    if "seed" in explicit:
        raise ConfigError("a comparison takes --seeds, not --seed")
    seeds = list(seeds if seeds is not None else spec["seeds"])
    all_arms = list(spec["arms"])
    arms = list(arms if arms is not None else all_arms)
    bad = [arm for arm in arms if arm not in all_arms]
    if bad:
        raise ConfigError(f"--arms {bad} are not arms of {name}: {all_arms}")
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    out = Path(out)
    plan = {"comparison": name, "arms": arms, "seeds": seeds, "quick": quick, "explicit": explicit}
    # every run is checked (model, data, H_min) before the first one trains
    prepared, loaded = {}, {}
    for arm in arms:
        for seed in seeds:
            config = resolve_config({**explicit, "seed": seed}, preset=arm, quick=quick)
            run = prepare(config, loaded.get(config.data_dir))
            loaded[config.data_dir] = run.data
            prepared[arm, seed] = run
    plan_path = out / "comparison.json"
    if plan_path.exists():
        if json.loads(plan_path.read_text()) != json.loads(json.dumps(plan)):
            raise ConfigError(
                f"--out {str(out)!r} holds a different comparison ({plan_path}); "
                "choose another --out"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(plan_path, json.dumps(plan, indent=2) + "\n")
    for (arm, seed), run in prepared.items():
        run_dir = out / arm / f"seed{seed}"
        if progress:
            print(f"== {arm} seed {seed} -> {run_dir}", flush=True)
        status = run_status(run_dir, checkpoint=CHECKPOINT)
        if status == "started":
            # started but killed before its first checkpoint: start that run over
            for path in sorted(run_dir.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
        train(run, run_dir, resume=status in ("checkpointed", "done"), progress=progress)
    rows = summarize(out, arms, seeds)
    plot({f"{arm}/seed{seed}": out / arm / f"seed{seed}" for arm, seed in prepared},
         out / "comparison.png")  # fmt: skip
    atomic_write_text(out / DONE, "complete\n")
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def summarize(out: str | Path, arms: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """Aggregate the finished runs ``out/<arm>/seed<k>/`` (``plots.summarize``) into
    summary.csv / .md / .json."""
    out = Path(out)
    rows, runs = [], {}
    for arm in arms:
        finals = []
        for seed in seeds:
            summary = summarize_run(out / arm / f"seed{seed}")
            finals.append(summary["final"])
            runs[f"{arm}/seed{seed}"] = summary["final"]
        config = summary["config"]
        row: dict[str, Any] = {"arm": arm}
        row.update({key: config[key] for key in SETTINGS})
        row["n"] = len(finals)
        for metric, column in METRICS.items():
            row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std([f[column] for f in finals])
        rows.append(row)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buffer.getvalue())

    lines = [
        f"Mean ± std over seeds {seeds} (final epoch, validation split).",
        "",
        "| arm | ERA (H_min) | label smoothing | dropout | top-1 (%) | top-5 (%) | NLL | ECE "
        "| entropy mean | entropy min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        era = f"yes ({row['min_entropy']:g})" if row["era"] else "no"
        cells = [
            f"{row['top1_mean']:.2f} ± {row['top1_std']:.2f}",
            f"{row['top5_mean']:.2f} ± {row['top5_std']:.2f}",
            f"{row['nll_mean']:.4f} ± {row['nll_std']:.4f}",
            f"{row['ece_mean']:.4f} ± {row['ece_std']:.4f}",
            f"{row['entropy_mean_mean']:.3f} ± {row['entropy_mean_std']:.3f}",
            f"{row['entropy_min_mean']:.3f} ± {row['entropy_min_std']:.3f}",
        ]
        lines.append(
            f"| {row['arm']} | {era} | {row['label_smoothing']:g} | {row['drop_rate']:g} | "
            + " | ".join(cells)
            + " |"
        )
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    atomic_write_text(
        out / "summary.json", json.dumps({"arms": rows, "runs": runs}, indent=2) + "\n"
    )
    return rows
