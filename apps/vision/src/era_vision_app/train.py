"""era-vision-train: train a timm classifier with or without the ERA head.

One run writes into ``--out DIR``:

* ``config.json`` (at start), ``metrics.csv`` / ``metrics.jsonl`` / ``tb/`` (one row per epoch,
  through ``era_core.runlog``), ``checkpoint.pt`` (every epoch, written atomically);
* at the end ``curves.png`` (accuracy, NLL/ECE, entropy, reliability diagram),
  ``summary.json`` (final metrics) and the marker ``DONE``.

``--resume DIR`` continues an interrupted run exactly (model, optimizer, scheduler, EMA, AMP
scaler, RNG states, epoch). ``--preset NAME`` picks a recipe from ``presets.toml``; a
comparison preset (``digits-compare``) trains every arm for every seed and writes
``summary.csv`` / ``summary.md``. See docs/vision.md.

This module is the command's public face: the command line is :mod:`era_vision_app.cli`, the
training run :mod:`era_vision_app.training`, comparisons :mod:`era_vision_app.compare`.
"""

from __future__ import annotations

import sys

from .cli import build_parser, main, run_cli
from .training import CHECKPOINT, DONE, Prepared, RunError, prepare, train

__all__ = [
    "CHECKPOINT",
    "DONE",
    "Prepared",
    "RunError",
    "build_parser",
    "main",
    "prepare",
    "run_cli",
    "train",
]

if __name__ == "__main__":
    sys.exit(main())
