"""Comparison runs: every arm (a preset) for every seed, then mean +- std over seeds.

``era-vision-train --preset digits-compare --seeds 0 1 2 --out DIR`` trains into
``DIR/<arm>/seed<k>/`` (ordinary run directories) and writes

* ``DIR/summary.csv``: one row per arm: the arm's settings, ``n`` seeds, and ``<metric>_mean``
  / ``<metric>_std`` (sample std, ddof=1) for top1, top5 (%), nll, ece, entropy_mean,
  entropy_min;
* ``DIR/summary.md``: the same as a Markdown table (mean ± sample std), then every seed's
  values, with each ERA run's smallest predicted entropy beside ``H_min`` and the head's floor;
* ``DIR/summary.json``: the per-seed finals and the aggregates; per run also
  ``lowest_entropy_min`` (the smallest predicted entropy over every validation pass) and
  ``floor`` (:func:`head_floor`: the smallest entropy the run's ERA head can output, ``None``
  for a baseline);
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

from era_core.runlog import atomic_write_text, read_jsonl
from era_core.runs import check_new_run, make_dir_with, run_status

from .config import ConfigError, compare_presets, resolve_config
from .plots import plot
from .plots import summarize as summarize_run
from .training import CHECKPOINT, DONE, prepare, train

__all__ = ["METRICS", "SPREAD", "head_floor", "run_comparison", "summarize"]

SPREAD = "mean ± sample std (n − 1) over seeds"

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
    plan_path = out / "comparison.json"
    if not plan_path.is_file():
        # a new comparison: --out must be usable (refused before any data or model is loaded)
        check_new_run(out, checkpoint=CHECKPOINT)
    # every run is checked (model, data, H_min) before the first one trains
    prepared, loaded = {}, {}
    for arm in arms:
        for seed in seeds:
            config = resolve_config({**explicit, "seed": seed}, preset=arm, quick=quick)
            run = prepare(config, loaded.get(config.data_dir))
            loaded[config.data_dir] = run.data
            prepared[arm, seed] = run
    if plan_path.exists():
        if json.loads(plan_path.read_text()) != json.loads(json.dumps(plan)):
            raise ConfigError(
                f"--out {str(out)!r} holds a different comparison ({plan_path}); "
                "choose another --out"
            )
    else:
        make_dir_with(out, plan_path.name, json.dumps(plan, indent=2) + "\n")
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


def head_floor(
    num_classes: int, min_entropy: float, tau: float = 4.0, mode: str = "paper"
) -> float:
    """The smallest entropy (nats) an ERA head can output for ``num_classes`` classes: the
    entropy of ``softmax_era`` at a one-hot input (its minimiser), in float64.

    ``mode="exact"`` gives ``min_entropy``; ``"paper"`` (the paper's closed-form inverse) gives
    more, e.g. 0.982 for 10 classes and ``H_min`` 0.6.
    """
    import torch

    from era_core import categorical_entropy, softmax_era

    logits = torch.zeros(1, num_classes, dtype=torch.float64)
    logits[0, 0] = float("inf")  # the one-hot limit (softmax_era gives its finite output)
    out = softmax_era(logits, min_entropy, tau=tau, mode=mode)
    return float(categorical_entropy(out)[0])


def _run_record(run_dir: Path) -> dict[str, Any]:
    """A run's final metrics row plus its lowest predicted entropy and its head's floor."""
    summary = summarize_run(run_dir)
    config = summary["config"]
    lows = [row["val_entropy_min"] for row in read_jsonl(run_dir / "metrics.jsonl")
            if row.get("val_entropy_min") is not None]  # fmt: skip
    floor = None
    if config["era"]:
        classes = len(summary["classes"]) if "classes" in summary else config["num_classes"]
        floor = head_floor(classes, config["min_entropy"], config["tau"], config["era_mode"])
    return {
        **summary["final"],
        "lowest_entropy_min": min(lows) if lows else None,
        "floor": floor,
        "era_mode": config["era_mode"] if config["era"] else None,
    }


def summarize(out: str | Path, arms: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """Aggregate the finished runs ``out/<arm>/seed<k>/`` (``plots.summarize``) into
    summary.csv / .md / .json."""
    out = Path(out)
    rows, runs = [], {}
    for arm in arms:
        finals = []
        for seed in seeds:
            record = _run_record(out / arm / f"seed{seed}")
            finals.append(record)
            runs[f"{arm}/seed{seed}"] = record
        config = summarize_run(out / arm / f"seed{seeds[-1]}")["config"]
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
    atomic_write_text(out / "summary.md", _markdown(rows, runs, seeds))
    atomic_write_text(
        out / "summary.json", json.dumps({"arms": rows, "runs": runs}, indent=2) + "\n"
    )
    return rows


def _markdown(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]], seeds: list[int]) -> str:
    """summary.md: the mean ± sample std table, then every seed's values."""
    lines = [
        f"{SPREAD.capitalize()} {seeds} (final epoch, validation split). Accuracies in %, "
        "NLL and entropies in nats, ECE with 15 bins.",
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
    lines += [
        "",
        "Every seed (the smallest predicted entropy is the lowest over every validation pass; "
        "the floor is the smallest entropy the ERA head can output):",
        "",
        "| run | top-1 (%) | NLL | ECE | entropy min (final) | smallest predicted entropy "
        "| H_min | head floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    settings = {row["arm"]: row for row in rows}
    for name, run in runs.items():
        arm = settings[name.split("/")[0]]
        h_min = f"{arm['min_entropy']:g}" if arm["era"] else "–"
        floor = "–" if run["floor"] is None else f"{run['floor']:.3f} ({run['era_mode']})"
        lowest = run["lowest_entropy_min"]
        lines.append(
            f"| {name} | {run['val_top1']:.2f} | {run['val_nll']:.4f} | {run['val_ece']:.4f} | "
            f"{run['val_entropy_min']:.3f} | {'n/a' if lowest is None else f'{lowest:.3f}'} | "
            f"{h_min} | {floor} |"
        )
    return "\n".join(lines) + "\n"
