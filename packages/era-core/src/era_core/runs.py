"""The run-directory lifecycle shared by the apps: new run, resume, checkpoint, finish.

Pure Python (no framework import). A run directory holds

* ``config.json``: the run's settings, written once when the run starts;
* the checkpoint (its name is the app's choice, e.g. ``checkpoint.pt``), replaced atomically
  each time it is saved, so a crash leaves the previous checkpoint or the new one, never a
  torn file; a temporary file left by a killed process is removed when the run is opened;
* ``summary.json`` and then the marker ``DONE`` when the run is finished;
* whatever else the app writes (metrics through :mod:`era_core.runlog`, figures).

:func:`new_run` refuses a directory that is not empty, and one it cannot create or write
(one line naming the flag, the path and the reason; nothing is left behind);
:func:`check_new_run` gives the same refusals before anything is written, for an app that
checks ``--out`` before it loads data. A run that never
wrote a checkpoint (killed or failed before its first one) is started again in place with
:meth:`Run.restart`; :meth:`Run.discard` removes a new run that failed before its first
checkpoint. :func:`resume_run` reopens a run and
refuses a config that differs from the stored one in any key but those that may change between
sessions, naming the keys. Checkpoints are bytes on disk: the app passes its own
``serialize`` / ``deserialize`` (``torch.save``, ``pickle``, ...); the default is ``pickle``.
:func:`rng_state` / :func:`set_rng_state` save and restore Python's ``random`` and NumPy's
global RNG (and named NumPy generators); framework RNG states (torch, CUDA, JAX keys) travel
in the same dictionary as opaque picklable values the app captures and restores itself.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> run = new_run(out, {"lr": 0.1, "seed": 0})
>>> run.save_checkpoint({"step": 10}).name
'checkpoint.pkl'
>>> run = resume_run(out, {"lr": 0.1, "seed": 0})
>>> run.load_checkpoint()["step"]
10
>>> try:
...     resume_run(out, {"lr": 0.2, "seed": 0})
... except ValueError as error:
...     print(str(error).split(": ", 1)[1])
--lr cannot change on --resume (stored 0.1, given 0.2); settings that may change on --resume: none
>>> run.finish({"final": 1.0})
>>> run_status(out)
'done'
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .runlog import atomic_write_bytes, atomic_write_text

__all__ = [
    "CONFIG",
    "DONE",
    "SUMMARY",
    "Run",
    "RunError",
    "check_new_run",
    "config_diff",
    "make_dir_with",
    "new_run",
    "read_config",
    "resume_run",
    "rng_state",
    "run_status",
    "set_rng_state",
]

CONFIG = "config.json"
DONE = "DONE"
SUMMARY = "summary.json"
DEFAULT_CHECKPOINT = "checkpoint.pkl"
_MISSING = "<missing>"


class RunError(ValueError):
    """A run directory cannot be used as asked (not empty, nothing to resume, other config)."""


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from ``config.json`` (tuples become lists, ...)."""
    if not isinstance(config, Mapping):
        raise RunError(f"config must be a mapping of setting name to value, got {config!r}")
    return json.loads(json.dumps(dict(config)))


def _pickle_dumps(state: Any) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def config_diff(
    stored: Mapping[str, Any], given: Mapping[str, Any], *, may_change: Collection[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """``{key: (stored value, given value)}`` for every key whose value differs (a key missing
    on one side counts as ``"<missing>"``), except the keys in ``may_change``; both sides are
    compared as they read back from JSON.

    >>> config_diff({"lr": 0.1, "workers": 0}, {"lr": 0.2, "workers": 4}, may_change={"workers"})
    {'lr': (0.1, 0.2)}
    """
    stored, given = _jsonable(stored), _jsonable(given)
    keys = list(stored) + [key for key in given if key not in stored]
    return {
        key: (stored.get(key, _MISSING), given.get(key, _MISSING))
        for key in keys
        if key not in may_change and stored.get(key, _MISSING) != given.get(key, _MISSING)
    }


def read_config(path: str | os.PathLike, *, flag: str = "--resume") -> dict[str, Any]:
    """The stored ``config.json`` of the run in ``path``; ``RunError`` if there is none."""
    path = Path(path)
    config_path = path / CONFIG
    if not config_path.is_file():
        raise RunError(
            f"{flag} {str(path)!r}: no {CONFIG} there (not a run directory); pass the "
            "directory of a run started with --out"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{flag} {str(path)!r}: {CONFIG} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise RunError(f"{flag} {str(path)!r}: {CONFIG} must hold a JSON object, got {config!r}")
    return config


def run_status(
    path: str | os.PathLike, *, checkpoint: str = DEFAULT_CHECKPOINT
) -> Literal["absent", "empty", "foreign", "started", "checkpointed", "done"]:
    """Where the run in ``path`` stands.

    ``"absent"`` (no directory), ``"empty"``, ``"foreign"`` (files but no ``config.json``),
    ``"started"`` (``config.json``, no checkpoint yet), ``"checkpointed"`` (resumable) or
    ``"done"`` (``DONE`` written).
    """
    path = Path(path)
    if not path.exists():
        return "absent"
    if not path.is_dir():
        return "foreign"
    if (path / DONE).exists():
        return "done"
    if (path / checkpoint).exists():
        return "checkpointed"
    if (path / CONFIG).exists():
        return "started"
    return "empty" if not any(path.iterdir()) else "foreign"


def _remove_stale_tmp(path: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process left behind."""
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@dataclass
class Run:
    """An open run directory (from :func:`new_run` or :func:`resume_run`).

    Attributes:
        path: the run directory.
        config: the run's settings as stored in ``config.json``.
        resumed: ``True`` when the run was reopened with :func:`resume_run`.
        checkpoint: the checkpoint's file name inside ``path``.
        flag: the command-line flag that named ``path`` (used in error messages).
        created: ``True`` when :func:`new_run` created the directory itself.
    """

    path: Path
    config: dict[str, Any]
    resumed: bool = False
    checkpoint: str = DEFAULT_CHECKPOINT
    flag: str = "--out"
    created: bool = False

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.checkpoint

    @property
    def done(self) -> bool:
        """Whether :meth:`finish` has run (``DONE`` exists)."""
        return (self.path / DONE).exists()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def save_checkpoint(
        self, state: Any, *, serialize: Callable[[Any], bytes] = _pickle_dumps
    ) -> Path:
        """Write ``serialize(state)`` to the checkpoint atomically (``serialize=bytes`` stores
        bytes as they are)."""
        return atomic_write_bytes(self.checkpoint_path, serialize(state))

    def load_checkpoint(self, *, deserialize: Callable[[bytes], Any] = pickle.loads) -> Any:
        """``deserialize`` of the checkpoint's bytes; ``RunError`` if it is missing, empty or
        cannot be read."""
        where = f"{self.flag} {str(self.path)!r}"
        if not self.has_checkpoint():
            raise RunError(f"{where}: no {self.checkpoint} there (nothing to resume)")
        data = self.checkpoint_path.read_bytes()
        if not data:
            raise RunError(
                f"{where}: {self.checkpoint} is empty (0 bytes); the checkpoint is lost, "
                "start the run again in a new directory"
            )
        try:
            return deserialize(data)
        except Exception as error:  # any unpickling / format error means the same to the user
            raise RunError(
                f"{where}: {self.checkpoint} cannot be read ({type(error).__name__}: {error}); "
                "the checkpoint is corrupted, start the run again in a new directory"
            ) from None

    def read_summary(self) -> dict[str, Any]:
        """The ``summary.json`` written by :meth:`finish`."""
        return json.loads((self.path / SUMMARY).read_text(encoding="utf-8"))

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json`` and then the ``DONE`` marker (both atomically)."""
        text = json.dumps(dict(summary), indent=2) + "\n"
        atomic_write_text(self.path / SUMMARY, text)
        atomic_write_text(self.path / DONE, "complete\n")

    def restart(self) -> Run:
        """Start a run that never wrote a checkpoint again in place, from its stored config:
        every file in the directory is removed (it was empty when the run began) and
        ``config.json`` is written again. Returns the new run (``resumed`` is ``False``).

        Raises:
            RunError: the run has a checkpoint or is done (resume it instead).
        """
        if self.has_checkpoint() or self.done:
            raise RunError(f"{self.flag} {str(self.path)!r}: has a checkpoint; resume it instead")
        _clear(self.path)
        atomic_write_text(self.path / CONFIG, json.dumps(self.config, indent=2) + "\n")
        return Run(self.path, self.config, checkpoint=self.checkpoint, flag=self.flag)

    def discard(self) -> bool:
        """Remove a new run that failed before its first checkpoint, so that nothing looks
        like a started run: every file in the directory (it was empty when the run began) and
        the directory itself if :func:`new_run` created it. A resumed run, or one with a
        checkpoint or ``DONE``, is kept as it is. Returns whether anything was removed."""
        if self.resumed or self.has_checkpoint() or self.done or not self.path.is_dir():
            return False
        _clear(self.path)
        if self.created:
            self.path.rmdir()
        return True


def new_run(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    flag: str = "--out",
    resume_flag: str = "--resume",
) -> Run:
    """Start a run in ``path`` (created; it must be missing or empty) and write
    ``config.json``.

    Raises:
        RunError: ``path`` is a file, or a directory that is not empty (the message says
            whether it holds a run, to continue with ``resume_flag``, or other files), or it
            cannot be created or written (a read-only or missing parent, a path through a
            file); then nothing is left behind.
    """
    path = Path(path)
    check_new_run(path, checkpoint=checkpoint, flag=flag, resume_flag=resume_flag)
    stored = _jsonable(config)
    created = make_dir_with(path, CONFIG, json.dumps(stored, indent=2) + "\n", flag=flag)
    return Run(path, stored, resumed=False, checkpoint=checkpoint, flag=flag, created=bool(created))


def make_dir_with(
    path: str | os.PathLike, name: str, text: str, *, flag: str = "--out"
) -> list[Path]:
    """Create directory ``path`` (and its missing parents) holding the file ``name`` with
    ``text`` (written atomically): how :func:`new_run` writes ``config.json``, and how an app
    starts a directory of several runs (a comparison's plan). Returns the directories created,
    deepest first.

    Raises:
        RunError: a folder on the way is a file, or ``path`` cannot be created or written; then
            every directory this call made is removed again.
    """
    path = Path(path)
    created = _make_dirs(path, flag)
    try:
        atomic_write_text(path / name, text)
    except OSError as error:
        for directory in created:
            directory.rmdir()
        raise RunError(f"{flag} {str(path)!r}: cannot write there ({_reason(error)})") from None
    return created


def check_new_run(
    path: str | os.PathLike,
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    flag: str = "--out",
    resume_flag: str = "--resume",
) -> None:
    """The refusals of :func:`new_run`, checked without creating or writing anything, so that
    an app can refuse an unusable ``--out`` before it loads data or builds a model: ``path``
    is a file or a non-empty directory, a folder on its way is a file, or the permissions say
    it cannot be created or written (what the permissions do not show, e.g. a read-only file
    system, :func:`new_run` still refuses).

    Raises:
        RunError: with the message :func:`new_run` would give.
    """
    path = Path(path)
    status = _status_for(path, checkpoint, flag)
    if status not in ("absent", "empty"):
        if path.exists() and not path.is_dir():
            reason = "is a file, not a directory"
        elif status == "foreign":
            reason = "is not empty and not a run of this app"
        else:
            reason = f"already holds a run ({status})"
            if status == "started":
                reason = "already holds a run that never wrote a checkpoint (started)"
        raise RunError(
            f"{flag} {str(path)!r}: {reason}; pass {resume_flag} {path} to continue a run, or "
            "choose a new or empty directory"
        )
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunError(f"{flag} {str(path)!r}: {str(blocker)!r} is a file, not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunError(f"{flag} {str(path)!r}: cannot write there (Permission denied)")
        return
    parent = next(p for p in path.parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{flag} {str(path)!r}: cannot create it (Permission denied)")


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _status_for(path: Path, checkpoint: str, flag: str) -> str:
    """:func:`run_status`, with an unreadable or unreachable path as a :class:`RunError`."""
    try:
        return run_status(path, checkpoint=checkpoint)
    except OSError as error:
        raise RunError(f"{flag} {str(path)!r}: cannot be read ({_reason(error)})") from None


def _make_dirs(path: Path, flag: str) -> list[Path]:
    """Create ``path`` and its missing parents; the directories created, deepest first. On
    failure, remove what was created and raise a :class:`RunError` with the reason."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunError(f"{flag} {str(path)!r}: {str(blocker)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        for directory in missing:
            if directory.is_dir():
                directory.rmdir()
        raise RunError(f"{flag} {str(path)!r}: cannot create it ({_reason(error)})") from None
    return missing


def _clear(path: Path) -> None:
    """Remove every file and folder inside ``path``."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def resume_run(
    path: str | os.PathLike,
    config: Mapping[str, Any] | None = None,
    *,
    may_change: Collection[str] = (),
    checkpoint: str = DEFAULT_CHECKPOINT,
    flag: str = "--resume",
    flag_names: Mapping[str, str] | None = None,
) -> Run:
    """Reopen the run in ``path``; with ``config``, check it against the stored one.

    Every key but those in ``may_change`` must equal the stored value. The stored config stays
    as written at the start; the returned :class:`Run` holds it. Stale temporary files of
    interrupted atomic writes are removed. A finished run (``Run.done``) or one without a
    checkpoint yet (``Run.has_checkpoint()``) is returned as well: what to do then is the
    app's choice.

    Args:
        flag_names: the command-line flag of a config key, where it is not ``--key-with-dashes``.

    Raises:
        RunError: no ``config.json`` in ``path``, or ``config`` differs from it (the message
            names each differing key with its stored and given value, and the keys that may
            change).
    """
    path = Path(path)
    stored = read_config(path, flag=flag)
    if config is not None:
        diff = config_diff(stored, config, may_change=may_change)
        if diff:
            names = dict(flag_names or {})
            changes = "; ".join(
                f"{names.get(key, _flag(key))} cannot change on {flag} "
                f"(stored {old!r}, given {new!r})"
                for key, (old, new) in diff.items()
            )
            allowed = ", ".join(names.get(key, _flag(key)) for key in may_change) or "none"
            raise RunError(
                f"{flag} {str(path)!r}: {changes}; settings that may change on {flag}: {allowed}"
            )
    _remove_stale_tmp(path)
    return Run(path, stored, resumed=True, checkpoint=checkpoint, flag=flag)


# ----------------------------------------------------------------------------- RNG state

_OWN_KEYS = ("python", "numpy", "generators")


def rng_state(
    *,
    generators: Mapping[str, np.random.Generator] | None = None,
    **framework: Any,
) -> dict[str, Any]:
    """The RNG states to checkpoint: Python's ``random``, NumPy's global RNG, the named NumPy
    ``generators``, and each ``framework`` state as given (e.g. ``torch=torch.get_rng_state()``),
    in one picklable dictionary.

    >>> import random
    >>> state = rng_state()
    >>> first = random.random()
    >>> _ = set_rng_state(state)
    >>> random.random() == first
    True
    """
    clash = sorted(set(framework) & set(_OWN_KEYS))
    if clash:
        raise ValueError(f"framework RNG names must not be {list(_OWN_KEYS)}, got {clash}")
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global RNG that libraries draw from)
    }
    if generators:
        state["generators"] = {name: g.bit_generator.state for name, g in generators.items()}
    state.update(framework)
    return state


def set_rng_state(
    state: Mapping[str, Any], *, generators: Mapping[str, np.random.Generator] | None = None
) -> dict[str, Any]:
    """Restore what :func:`rng_state` captured; returns the framework states for the app to
    restore (``{name: state}``, everything but Python's, NumPy's and the generators').

    Raises:
        ValueError: ``state`` lacks the Python or NumPy state, or a generator in ``generators``
            is not in it.
    """
    missing = [key for key in ("python", "numpy") if key not in state]
    if missing:
        raise ValueError(f"state must hold the RNG states {missing} (from rng_state())")
    saved = state.get("generators", {})
    unknown = sorted(set(generators or {}) - set(saved))
    if unknown:
        raise ValueError(f"generators {unknown} are not in state (saved: {sorted(saved)})")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    for name, generator in (generators or {}).items():
        generator.bit_generator.state = saved[name]
    return {key: value for key, value in state.items() if key not in _OWN_KEYS}
