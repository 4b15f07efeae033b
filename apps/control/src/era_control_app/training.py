"""One ``era-control-train`` run in its run directory, on the shared lifecycle ``era_core.runs``.

* :func:`check_out`: ``--out`` must be new or empty, and creatable or writable (checked
  before anything is built).
* :func:`resume_config`: the stored config of ``--resume DIR`` and the one the given flags make
  of it, which must be equal (every difference is named by its flag).
* :func:`open_run`: the :class:`era_core.runs.Run` (new: ``config.json`` written; resumed: a
  finished run refused) and the checkpoint to continue from, a :class:`Resume` (``None`` for a
  fresh start, or a resumed run killed before its first checkpoint).
* :func:`train`: the trainer's loop with the metric files (``era_core.runlog``), the atomic
  ``checkpoint.pkl`` and a progress bar.
* :func:`finish`: ``curves.png``, then ``summary.json`` and ``DONE`` (``Run.finish``).

A checkpoint is the trainer's pickled blob (:mod:`era_control.checkpoint`), stored as it is.
It holds every random state a run draws from: the JAX keys are part of the learner state and
the environments' own generators are restored from their seeds and recorded actions, while
no code of the loop draws from Python's or NumPy's global generator, so the app saves no
``era_core.runs.rng_state`` beside it. Every refusal is an ``era_core.runs.RunError`` (a
``ValueError``) whose message names the flag and the directory.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from era_control.checkpoint import CHECKPOINT
from era_control.run_config import RunConfig
from era_control.trainer import Trainer
from era_core import runs
from era_core.runs import RunError
from era_core.threads import CONFIG_KEY as THREADS_KEY

from .results import plot, summarize

__all__ = [
    "CHECKPOINT",
    "CURVES",
    "Resume",
    "RunError",
    "check_out",
    "finish",
    "open_run",
    "train",
]

CURVES = "curves.png"


def check_out(out: Path | None) -> Path:
    """``out`` as a path; ``RunError`` if it is missing, a file or a non-empty directory."""
    if out is None:
        raise RunError("--out DIR is required (or --resume DIR)")
    try:
        status = runs.run_status(out, checkpoint=CHECKPOINT)
    except OSError as error:  # e.g. a folder on the way that may not be listed
        raise RunError(f"--out {str(out)!r}: cannot be read ({error.strerror})") from None
    if status == "foreign" and Path(out).exists() and not Path(out).is_dir():
        raise RunError(f"--out {str(out)!r}: is a file, not a directory; choose a new directory")
    if status not in ("absent", "empty"):
        raise RunError(
            f"--out {out} exists and is not empty; use --resume {out} to continue it, or "
            "choose a new directory"
        )
    runs.check_new_run(out, checkpoint=CHECKPOINT)  # a folder that cannot be created or written
    return Path(out)


def _differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``--flag (stored X, given Y)`` for every setting ``given`` changes; the agent's
    overrides are compared key by key and named by their ``--set KEY``."""
    diff = runs.config_diff({k: v for k, v in stored.items() if k != "agent"},
                            {k: v for k, v in given.items() if k != "agent"})  # fmt: skip
    named = {"--" + key.replace("_", "-"): values for key, values in diff.items()}
    agent = runs.config_diff(stored.get("agent", {}), given.get("agent", {}))
    named |= {f"--set {key}": values for key, values in agent.items()}
    return [f"{flag} (stored {old!r}, given {new!r})" for flag, (old, new) in named.items()]


def resume_config(
    resume: Path, out: Path | None, requested: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The stored config of the run in ``resume``; ``requested(stored)`` is the config the
    given flags make of it, which must equal it (``RunError`` naming each difference)."""
    if out is not None and Path(out) != Path(resume):
        raise RunError(f"--out {out} differs from --resume {resume}; pass one of them")
    stored = runs.read_config(resume)
    given = requested(stored)
    differences = _differences(stored, given)
    if differences:
        raise RunError(
            f"--resume {resume} was started with a different config; these flags change it: "
            + "; ".join(differences)
        )
    return stored


class Resume(NamedTuple):
    """A checkpoint to continue from: its bytes as stored, the step it was written at and the
    run config it was written with (``None`` in a checkpoint that does not record it)."""

    blob: bytes
    step: int
    run: dict[str, Any] | None = None


def _read_resume(data: bytes) -> Resume:
    checkpoint = pickle.loads(data)
    return Resume(data, int(checkpoint["step"]), checkpoint.get("run"))


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the agent's overrides as ``agent.<key>`` entries and no thread record."""
    flat = {k: v for k, v in config.items() if k not in ("agent", THREADS_KEY)}
    flat |= {f"agent.{k}": v for k, v in dict(config.get("agent") or {}).items()}
    return flat


def check_checkpoint_config(resume: Path, config: dict[str, Any], checkpoint: Resume) -> None:
    """``RunError`` when ``config.json`` (``config``) is not the config the checkpoint was
    written with: the file was edited after the run started, and the run cannot go on with
    other settings than those it trained with so far."""
    if checkpoint.run is None:
        return
    diff = runs.config_diff(_flat(checkpoint.run), _flat(config))
    if diff:
        named = "; ".join(
            f"{key}: checkpoint {old!r}, config.json {new!r}" for key, (old, new) in diff.items()
        )
        raise RunError(
            f"--resume {resume}: config.json differs from the config its {CHECKPOINT} was "
            f"written with ({named}); restore config.json, or start a new run with --out"
        )


def open_run(
    config: dict[str, Any], *, out: Path | None = None, resume: Path | None = None
) -> tuple[runs.Run, Resume | None]:
    """The run directory of ``config`` and the checkpoint to resume from (or ``None``).

    A new run (``out``) writes ``config.json``; a resumed one (``resume``, its config already
    checked by :func:`resume_config`) must not be finished, and its checkpoint must be readable;
    one that never wrote a checkpoint starts again in place (`era_core.runs.Run.restart`).
    """
    if resume is None:
        return runs.new_run(check_out(out), config, checkpoint=CHECKPOINT), None
    run = runs.resume_run(resume, checkpoint=CHECKPOINT)
    if run.done:
        raise RunError(f"--resume {resume}: that run is already complete (DONE exists)")
    if not run.has_checkpoint():  # killed before its first checkpoint: start again in place
        return run.restart(), None
    checkpoint = run.load_checkpoint(deserialize=_read_resume)
    check_checkpoint_config(resume, config, checkpoint)
    return run, checkpoint


def train(
    trainer: Trainer,
    run: runs.Run,
    resume: Resume | None,
    *,
    tensorboard: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> int:
    """Train with logging, checkpoints and a progress bar; returns the last step reached."""
    from tqdm import tqdm

    from era_core.runlog import MetricsLogger

    config: RunConfig = trainer.run_config
    start = resume.step if resume is not None else 0
    resume_step = resume.step if resume is not None else None
    logger = MetricsLogger(run.path, tensorboard=tensorboard, resume_step=resume_step)
    bar = tqdm(
        total=config.steps,
        initial=start,
        unit="step",
        disable=not progress,
        desc=f"{config.algo} {config.env} x{config.seeds}",
        dynamic_ncols=True,
    )

    def on_step(step: int, latest: float | None) -> None:
        bar.update(1)
        if latest is not None and step % 50 == 0:
            bar.set_postfix(ret=f"{latest:.1f}", refresh=False)

    def save_checkpoint(step: int, blob: bytes) -> None:
        run.save_checkpoint(blob, serialize=bytes)

    try:
        with logger:
            last = trainer.run(
                logger.log,
                save_checkpoint=save_checkpoint,
                resume=resume.blob if resume is not None else None,
                stop_at=stop_at,
                on_step=on_step,
            )
    except BaseException:
        bar.close()
        run.discard()  # a new run that failed before its first checkpoint leaves nothing
        raise
    bar.close()
    return last


def finish(run: runs.Run, title: str) -> dict[str, Any]:
    """Write the figure and the summary of a complete run, then ``DONE``; returns the summary."""
    plot([run.path], run.path / CURVES, title=title, detail=True)
    summary = summarize(run.path)
    run.finish(summary)
    return summary
