"""The llm pilots' criterion (docs/reproduce.md, "Choosing the quick regimes"), per GRPO run
directory: the lowest step-mean top-20 % response entropy (``top_entropy_mean`` of
``metrics.csv``) is below the paper's floor 0.45 while the highest held-out accuracy logged
during GRPO is strictly above the accuracy at GRPO step 0 (the last ``eval_accuracy`` of
``warmup/metrics.csv``).

    python tools/llm_pilot_criterion.py RUN [RUN ...]   # RUN: an era-llm-train --out

Prints one line per run and whether every run meets it; exit 0.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from pilot_report import report

FLOOR = 0.45


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _accuracies(rows: list[dict[str, str]]) -> list[float]:
    values = [float(row.get("eval_accuracy") or "nan") for row in rows]
    return [value for value in values if not math.isnan(value)]


def check(run: Path) -> tuple[str, bool]:
    """The criterion's numbers of one run directory, as a line, and whether it holds."""
    rows = _rows(run / "metrics.csv")
    warmup = _accuracies(_rows(run / "warmup" / "metrics.csv"))
    if not rows or not warmup:
        return f"{run}: no GRPO step or no warm-up evaluation logged", False
    entropy = [(float(row["top_entropy_mean"]), int(row["step"])) for row in rows]
    lowest, at = min(entropy)
    start = warmup[-1]
    accuracy = _accuracies(rows)
    best = max(accuracy) if accuracy else float("nan")
    final = accuracy[-1] if accuracy else float("nan")
    ok = lowest < FLOOR and best > start
    line = (
        f"{run}: lowest top-20 % entropy {lowest:.3f} nats at step {at} "
        f"({entropy[0][0]:.3f} at step {entropy[0][1]}); held-out accuracy at GRPO step 0 "
        f"{start:.3f}, max {best:.3f}, final {final:.3f} -> {'meets' if ok else 'fails'}"
    )
    return line, ok


def main(argv: list[str]) -> int:
    runs = [Path(arg) for arg in argv]
    if not runs or not all((run / "metrics.csv").is_file() for run in runs):
        print(
            "usage: llm_pilot_criterion.py RUN [RUN ...] (era-llm-train run directories)",
            file=sys.stderr,
        )
        return 2
    results = [check(run) for run in runs]
    return report(results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
