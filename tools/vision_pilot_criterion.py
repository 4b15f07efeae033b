"""The vision pilots' criterion (docs/reproduce.md, "Choosing the quick regimes"), per run of
a comparison directory: the last epoch's validation NLL is at least 10 % above its minimum over
epochs while the last epoch's training top-1 exceeds its validation top-1.

    python tools/vision_pilot_criterion.py OUT   # OUT: an era-vision-train comparison --out

Prints one line per OUT/<arm>/seed<k>/metrics.csv and whether every run meets it; exit 0.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from pilot_report import report

NLL_RISE = 1.10


def check(run: Path) -> tuple[str, bool]:
    """The criterion's numbers of one run directory, as a line, and whether it holds."""
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return f"{run}: no epoch logged", False
    nll = [float(row["val_nll"]) for row in rows]
    train, val = float(rows[-1]["train_top1"]), float(rows[-1]["val_top1"])
    ratio = nll[-1] / min(nll)
    ok = ratio >= NLL_RISE and train > val
    line = (
        f"{run.parent.name}/{run.name}: epochs {len(rows)}, val NLL per epoch "
        f"{', '.join(f'{x:.4f}' for x in nll)}; last {nll[-1]:.4f}, min {min(nll):.4f}, "
        f"ratio {ratio:.3f}; train top-1 {train:.2f} %, val top-1 {val:.2f} % -> "
        f"{'meets' if ok else 'fails'}"
    )
    return line, ok


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: vision_pilot_criterion.py OUT (a comparison directory)", file=sys.stderr)
        return 2
    runs = sorted(Path(argv[0]).glob("*/seed*/metrics.csv"))
    if not runs:
        print(f"OUT {argv[0]!r} holds no <arm>/seed<k>/metrics.csv", file=sys.stderr)
        return 2
    results = [check(path.parent) for path in runs]
    return report(results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
