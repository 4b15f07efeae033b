"""``era-control-compare``: put finished (or running) ``era-control-train`` runs side by side.

    era-control-compare runs/cpu-cw/* --out docs/figures/control-cpu-cheetah-walker.png

For every run directory (its ``config.json`` and ``metrics.jsonl``), grouped by environment,
it prints a Markdown table and writes a figure (both from :mod:`era_control_app.results`):

* the table: seeds, last evaluated step, the final evaluation return (mean ± std over seeds),
  the mean over the last ``--last`` evaluations (less noisy with one evaluation episode), and
  the final policy entropy beside its target;
* the figure: one column per environment; evaluation return (top) and policy entropy (bottom)
  over steps, mean ± std over seeds, one colour per algorithm, the entropy targets dashed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .results import Run, load_run, plot, summarize, table

__all__ = ["Run", "figure", "load_run", "main", "summary", "table"]


def summary(run: Run, last: int = 3) -> dict[str, Any]:
    """Final and last-``last`` evaluation returns (over seeds), final entropy and target."""
    return summarize(run, last)


def figure(runs: list[Run], out: Path, title: str | None = None) -> None:
    plot(runs, out, title=title)


def main(argv: list[str] | None = None) -> int:
    description = "Put finished (or running) era-control-train runs side by side."
    parser = argparse.ArgumentParser(prog="era-control-compare", description=description)
    parser.add_argument("runs", nargs="+", type=Path, help="era-control-train run directories")
    parser.add_argument("--out", type=Path, help="PNG of the curves (default: none)")
    parser.add_argument(
        "--last", type=int, default=3, help="evaluations averaged in the table (default: 3)"
    )
    parser.add_argument("--title", help="figure title (default: 'mean ± std over seeds')")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error(f"--last must be >= 1, got {args.last}")
    try:
        runs = [load_run(p) for p in args.runs]
    except ValueError as err:
        parser.error(str(err))
    print(table(runs, args.last))
    if args.out is not None:
        plot(runs, args.out, title=args.title)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
