"""`era-llm-train --compare`: GRPO vs GRPO+ERA vs an adaptive entropy bonus, several seeds.

Every run gets the same budget (steps, prompts, group size, warm-up); only the method differs:

* ``grpo``: `--no-era`;
* ``era``: `--era` with the configured band;
* ``entropy-bonus``: `--no-era --entropy-bonus-target H`, the loss-side alternative: an entropy
  bonus whose coefficient is raised while the top-20 % response entropy is below ``H`` and
  lowered (to 0 at least) above it; ``H`` defaults to the band's lower bound.

Runs go to ``OUT/<method>/seed<N>/`` and are resumed (or skipped when complete) if the
comparison is started again. At the end, written atomically:

* ``summary.csv``: one row per (method, seed): the columns of `SUMMARY_COLUMNS`;
* ``summary.md``: mean ± std over seeds per method, and the plots;
* ``summary.json``: the same numbers plus the configuration;
* ``compare_entropy.png`` (band shaded), ``compare_accuracy.png``, ``compare_reward.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from era_core.runlog import atomic_write_text, read_jsonl
from era_core.runs import run_status
from era_llm_app.config import TrainConfig, validate
from era_llm_app.plots import plot_comparison
from era_llm_app.train import CHECKPOINT, summarize_run, train

METHODS = ("grpo", "era", "entropy-bonus")
# The CPU-scale setting of docs/llm.md (for callers such as era-reproduce):
#   era-llm-train --compare --seeds 0 1 2 --out DIR *RECOMMENDED_ARGS
# A longer warm-up makes the tiny model confident (top-20 % entropy ~0.87 nats at the start of
# GRPO); its 2-4-token answers never reach the paper's 0.45 floor in 300 steps, so the band's
# lower bound is raised to 0.8 (the entropy-bonus target follows it).
RECOMMENDED_ARGS = (
    "--steps",
    "300",
    "--warmup-steps",
    "600",
    "--lr",
    "5e-4",
    "--era-low",
    "0.8",
    "--eval-every",
    "25",
)
SUMMARY_COLUMNS = (
    "method",
    "seed",
    "steps",
    "final_eval_accuracy",
    "best_eval_accuracy",
    "tail_accuracy",
    "tail_top_entropy_mean",
    "min_top_entropy_mean",
    "tail_rest_entropy_mean",
    "tail_frac_inside",
    "tail_frac_below",
    "tail_scale_mean",
    "wall_s",
)


def method_config(base: TrainConfig, method: str, seed: int) -> TrainConfig:
    """The configuration of one run of the comparison."""
    out = str(Path(base.out) / method / f"seed{seed}")
    target = base.entropy_bonus_target if base.entropy_bonus_target is not None else base.era_low
    per_method = {
        "grpo": {"era": False, "entropy_bonus_target": None},
        "era": {"era": True, "entropy_bonus_target": None},
        "entropy-bonus": {"era": False, "entropy_bonus_target": target},
    }
    if method not in per_method:
        raise ValueError(f"method {method!r} must be one of {METHODS}")
    return dataclasses.replace(
        base,
        out=out,
        seed=seed,
        resume=True,
        extra={**base.extra, "method": method},
        **per_method[method],
    )


def run_comparison(base: TrainConfig, seeds: list[int], methods: tuple[str, ...] = METHODS) -> Path:
    """Train every (method, seed) not yet complete, then write the summary and plots."""
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {seeds} has duplicates")
    configs = [method_config(base, m, s) for m in methods for s in seeds]
    for cfg in configs:
        validate(cfg)  # every run's input is checked before the first one trains
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.csv").unlink(missing_ok=True)
    atomic_write_text(
        out / "compare.json",
        json.dumps(
            {"methods": list(methods), "seeds": seeds, "base": dataclasses.asdict(base)}, indent=2
        ),
    )
    wall: dict[str, float] = {}
    for i, cfg in enumerate(configs, 1):
        run_dir = Path(cfg.out)
        status = run_status(run_dir, checkpoint=CHECKPOINT)
        if status == "done":
            continue
        if status == "started":
            shutil.rmtree(run_dir)  # stopped during its warm-up: nothing to resume
        cfg = dataclasses.replace(cfg, resume=status == "checkpointed")
        print(f"[{i}/{len(configs)}] {cfg.extra['method']} seed {cfg.seed} -> {run_dir}")
        t0 = time.perf_counter()
        train(cfg)
        wall[cfg.out] = time.perf_counter() - t0
    return write_summary(out, configs, wall)


def write_summary(out: Path, configs: list[TrainConfig], wall: dict[str, float]) -> Path:
    rows, curves = [], {}
    for cfg in configs:
        metrics = read_jsonl(Path(cfg.out) / "metrics.jsonl")
        s = summarize_run(metrics, cfg)
        tops = [r["top_entropy_mean"] for r in metrics if r.get("top_entropy_mean") is not None]
        method = cfg.extra["method"]
        rows.append(
            {
                "method": method,
                "seed": cfg.seed,
                **{k: s.get(k) for k in SUMMARY_COLUMNS if k in s},
                "min_top_entropy_mean": min(tops) if tops else None,
                "wall_s": wall.get(cfg.out),
            }
        )
        curves.setdefault(method, []).append(metrics)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r.get(k)) for k in SUMMARY_COLUMNS})
    base = configs[0]
    plot_comparison(out, curves, base.era_low, base.era_high)
    aggregate = _aggregate(rows)
    atomic_write_text(
        out / "summary.md", _markdown(aggregate, base, len(curves[rows[0]["method"]]))
    )
    atomic_write_text(
        out / "summary.json",
        json.dumps({"runs": rows, "aggregate": aggregate}, indent=2, default=str),
    )
    atomic_write_text(out / "summary.csv", buf.getvalue())  # last: marks the comparison complete
    return out


def _fmt(v: object) -> object:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)


def _aggregate(rows: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per method and metric: [mean, std] over seeds (std 0 for one seed)."""
    out: dict[str, dict[str, list[float]]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out[method] = {}
        for key in SUMMARY_COLUMNS[2:]:
            vals = [r[key] for r in mine if r.get(key) is not None and math.isfinite(r[key])]
            if vals:
                out[method][key] = [float(np.mean(vals)), float(np.std(vals))]
    return out


def _markdown(aggregate: dict[str, dict[str, list[float]]], base: TrainConfig, n_seeds: int) -> str:
    cols = [
        ("final_eval_accuracy", "final acc. (greedy)", 100),
        ("tail_accuracy", "acc. last 20% (sampled)", 100),
        ("tail_top_entropy_mean", "top-20% entropy, last 20%", 1),
        ("min_top_entropy_mean", "min top-20% entropy", 1),
        ("tail_frac_inside", "in band, last 20%", 100),
        ("tail_scale_mean", "mean c, last 20%", 1),
    ]
    task = (
        f"{base.task_op} with {base.min_digits}-{base.max_digits} digits"
        if not base.data
        else (base.data)
    )
    lines = [
        "# GRPO vs GRPO+ERA vs adaptive entropy bonus",
        "",
        f"Task: {task}; {base.steps} GRPO steps x {base.prompts_per_step} prompts x "
        f"{base.group_size} responses; band [{base.era_low:g}, {base.era_high:g}], "
        f"k={base.era_k:g}; {n_seeds} seed(s); mean ± std over seeds. Accuracies in %, "
        "entropies in nats.",
        "",
        "| method | " + " | ".join(c[1] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for method, stats in aggregate.items():
        cells = []
        for key, _, mult in cols:
            if key in stats:
                m, s = stats[key]
                cells.append(f"{m * mult:.2f} ± {s * mult:.2f}")
            else:
                cells.append("n/a")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![entropy](compare_entropy.png)",
        "![accuracy](compare_accuracy.png)",
        "",
    ]
    return "\n".join(lines)
