"""The run directory of ``era-control-train``: new or resumed, checkpoints, the finished files.

* :func:`new_run_dir`: ``--out`` must be new or empty.
* :func:`open_resumed`: ``--resume DIR`` must hold an unfinished run whose stored config the
  given flags do not change; returns the stored config and the checkpoint bytes (``None`` if
  the run was killed before its first checkpoint).
* :func:`write_config`, :func:`save_checkpoint`: ``config.json`` (first) and
  ``checkpoint.pkl``, both written atomically.
* :func:`finish`: ``curves.png``, ``summary.json`` and, last, ``DONE``.

Every refusal is a ``ValueError`` whose message names the flag and the directory.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from era_core.runlog import atomic_write_bytes, atomic_write_text

from .results import plot, summarize

CONFIG, DONE, SUMMARY, CURVES = "config.json", "DONE", "summary.json", "curves.png"
CHECKPOINT = "checkpoint.pkl"


def new_run_dir(out: str | None) -> Path:
    if not out:
        raise ValueError("--out DIR is required (or --resume DIR)")
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"--out {run_dir} exists and is not empty; use --resume {run_dir} to continue "
            "it, or choose a new directory"
        )
    return run_dir


def open_resumed(
    resume: str, out: str | None, requested: Callable[[dict[str, Any]], dict[str, Any]]
) -> tuple[Path, dict[str, Any], bytes | None]:
    """``(run_dir, stored config, checkpoint bytes or None)``; ``requested(stored)`` is the
    config the given flags make of the stored one, which must equal it."""
    run_dir = Path(resume)
    if out and Path(out) != run_dir:
        raise ValueError(f"--out {out} differs from --resume {resume}; pass one of them")
    if not (run_dir / CONFIG).exists():
        raise ValueError(f"--resume {run_dir}: no {CONFIG} there (not a run directory)")
    if (run_dir / DONE).exists():
        raise ValueError(f"--resume {run_dir}: that run is already complete (DONE exists)")
    stored = json.loads((run_dir / CONFIG).read_text())
    given = requested(stored)
    if given != stored:
        diff = {k: (stored.get(k), given.get(k)) for k in given if given[k] != stored.get(k)}
        raise ValueError(
            f"--resume {run_dir} was started with a different config; "
            f"differences (stored, given): {diff}"
        )
    ckpt = run_dir / CHECKPOINT
    return run_dir, stored, ckpt.read_bytes() if ckpt.exists() else None


def checkpoint_step(blob: bytes) -> int:
    return int(pickle.loads(blob)["step"])


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, json.dumps(config, indent=2) + "\n")


def save_checkpoint(run_dir: Path, blob: bytes) -> None:
    atomic_write_bytes(run_dir / CHECKPOINT, blob)


def finish(run_dir: Path, title: str) -> dict[str, Any]:
    """Write the figure and the summary of a complete run, then ``DONE``; returns the summary."""
    plot([run_dir], run_dir / CURVES, title=title, detail=True)
    summary = summarize(run_dir)
    atomic_write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(run_dir / DONE, "complete\n")
    return summary
