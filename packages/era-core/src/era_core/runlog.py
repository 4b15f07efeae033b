"""Run logging shared by the apps: metrics as CSV, JSON lines and TensorBoard, and atomic writes.

Pure Python (no framework import). TensorBoard event files are written when ``tensorboardX``
is importable (the apps depend on it); otherwise the logger writes CSV and JSON lines only.

A run directory written by :class:`MetricsLogger` holds

* ``metrics.jsonl``: one JSON object per :meth:`MetricsLogger.log` call, in call order
  (non-finite floats are written as ``null``);
* ``metrics.csv``: the same rows; its columns are the union of the keys seen so far, in order
  of first appearance (the file is rewritten when a new key shows up);
* ``tb/``: TensorBoard scalars, one tag per numeric key, at the row's ``step``; each row's
  event is on disk when :meth:`MetricsLogger.log` returns.

Resuming: ``MetricsLogger(run_dir, resume_step=N)`` keeps only the rows whose step is at most
``N`` (what the checkpoint at step ``N`` promised) and continues from there, so a resumed run's
files equal those of a run that was never interrupted (NaN and inf, ``null`` in the JSON
lines, are read back from the CSV). TensorBoard is told to purge its later events (a
session-start marker at step ``N + 1``). Reopening files that would not change rewrites
nothing.

>>> import tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> with MetricsLogger(run, tensorboard=False) as log:
...     log.log({"step": 1, "loss": 0.5})
...     log.log({"step": 2, "loss": 0.25, "acc": 1.0})
>>> (run / "metrics.csv").read_text().splitlines()
['step,loss,acc', '1,0.5,', '2,0.25,1.0']
>>> with MetricsLogger(run, tensorboard=False, resume_step=1) as log:
...     log.log({"step": 2, "loss": 0.3})
>>> [row["loss"] for row in read_jsonl(run / "metrics.jsonl")]
[0.5, 0.3]
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import numbers
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MetricsLogger",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_jsonl",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same directory, are flushed to disk, and replace
    ``path`` with :func:`os.replace` (atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (a torn last line, from a crash mid-write, is dropped)."""
    rows = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                break
            raise
    return rows


def _plain(key: str, value: Any) -> Any:
    """A JSON/CSV-friendly scalar: numbers (NumPy, torch and JAX scalars included), str, bool."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    # 0-d arrays and one-element tensors of any framework (.item() raises for larger ones).
    if hasattr(value, "item"):
        try:
            item = value.item()
        except (ValueError, RuntimeError, TypeError):
            item = None
        if isinstance(item, (numbers.Real, bool)):
            return _plain(key, item)
    raise TypeError(
        f"metric {key!r} must be a number, string, bool or None (or a one-element array); "
        f"got {type(value).__name__}"
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_NON_FINITE = ("nan", "inf", "-inf")


class _EventFile:
    """A TensorBoard events file written synchronously (tensorboardX's record format).

    Each :meth:`scalars` call is one event, written and flushed before it returns, so a process
    killed at any point leaves every logged step in the file (tensorboardX's ``SummaryWriter``
    queues events for a background thread, which a killed process never drains). With
    ``purge_step``, the file starts with the session-start marker that makes TensorBoard drop
    the events at and after that step in older files of the directory (a resumed run's steps
    replace those its killed predecessor logged after its last checkpoint).
    """

    def __init__(self, directory: Path, *, purge_step: int | None = None) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        # generated protobuf modules: their classes are not visible to a type checker
        event_pb2: Any = importlib.import_module("tensorboardX.proto.event_pb2")
        self._event_pb2 = event_pb2
        self._summary_pb2: Any = importlib.import_module("tensorboardX.proto.summary_pb2")
        directory.mkdir(parents=True, exist_ok=True)
        # EventsWriter names files by the second and host; the suffix keeps two runs of one
        # second (a kill and an immediate resume) in two files.
        self._file = EventsWriter(str(directory / "events"), f".{os.getpid()}.{time.time_ns()}")
        if purge_step is not None:
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._write(event_pb2.Event(step=purge_step, session_log=start))

    def _write(self, event: Any) -> None:
        event.wall_time = time.time()
        self._file.write_event(event)
        self._file.flush()

    def scalars(self, step: int, values: Mapping[str, float | int]) -> None:
        if not values:
            return
        summary = self._summary_pb2.Summary(
            value=[
                self._summary_pb2.Summary.Value(tag=key, simple_value=float(value))
                for key, value in values.items()
            ]
        )
        self._write(self._event_pb2.Event(step=step, summary=summary))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _write_if_changed(path: Path, text: str) -> None:
    """:func:`atomic_write_text`, unless ``path`` already holds exactly ``text`` (so reopening
    a finished run's metrics rewrites nothing)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(path, text)


class MetricsLogger:
    """Append metric rows to ``metrics.csv``, ``metrics.jsonl`` and TensorBoard in ``directory``.

    Args:
        directory: the run directory (created if missing).
        tensorboard: also write TensorBoard scalars under ``directory/tb`` when tensorboardX is
            importable.
        resume_step: ``None`` starts fresh (existing metric files are replaced); an integer
            keeps the existing rows whose ``step_key`` value is at most ``resume_step`` and
            appends after them.
        step_key: the row key holding the global step (used for resuming and TensorBoard).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        tensorboard: bool = True,
        resume_step: int | None = None,
        step_key: str = "step",
    ) -> None:
        if resume_step is not None and (
            isinstance(resume_step, bool) or not isinstance(resume_step, numbers.Integral)
        ):
            raise ValueError(f"resume_step must be None or an int, got {resume_step!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.step_key = step_key
        self.csv_path = self.directory / "metrics.csv"
        self.jsonl_path = self.directory / "metrics.jsonl"
        self._rows: list[dict[str, Any]] = []
        if resume_step is not None and self.jsonl_path.exists():
            self._rows = [
                row
                for row in read_jsonl(self.jsonl_path)
                if row.get(step_key) is None or row[step_key] <= resume_step
            ]
            self._restore_non_finite()
        self._columns: list[str] = []
        for row in self._rows:
            self._add_columns(row)
        self._rewrite_jsonl()
        self._rewrite_csv()
        self._writer: _EventFile | None = None
        if tensorboard and importlib.util.find_spec("tensorboardX") is not None:
            purge = None if resume_step is None else int(resume_step) + 1
            self._writer = _EventFile(self.directory / "tb", purge_step=purge)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows logged so far (including those kept on resume), oldest first."""
        return list(self._rows)

    def _add_columns(self, row: Mapping[str, Any]) -> bool:
        new = [key for key in row if key not in self._columns]
        self._columns.extend(new)
        return bool(new)

    def _restore_non_finite(self) -> None:
        """Put back the NaN / inf values that ``metrics.jsonl`` holds as ``null`` (JSON has no
        NaN), from ``metrics.csv``, which keeps them, so that a resumed run's files equal an
        uninterrupted run's."""
        if not self.csv_path.exists():
            return
        with self.csv_path.open(encoding="utf-8", newline="") as handle:
            written = list(csv.DictReader(handle))
        for row, text in zip(self._rows, written, strict=False):
            for key, value in row.items():
                cell = (text.get(key) or "").strip().lower()
                if value is None and cell in _NON_FINITE:
                    row[key] = float(cell)

    def _rewrite_jsonl(self) -> None:
        text = "".join(self._json_line(row) for row in self._rows)
        _write_if_changed(self.jsonl_path, text)

    def _rewrite_csv(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns, lineterminator="\n")
        if self._columns:
            writer.writeheader()
        writer.writerows(self._rows)
        _write_if_changed(self.csv_path, buffer.getvalue())

    @staticmethod
    def _json_line(row: Mapping[str, Any]) -> str:
        return json.dumps({k: _json_value(v) for k, v in row.items()}, allow_nan=False) + "\n"

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row (a mapping of metric name to scalar)."""
        if not isinstance(row, Mapping) or not row:
            raise ValueError(
                f"row must be a non-empty mapping of metric name to value, got {row!r}"
            )
        clean = {str(key): _plain(str(key), value) for key, value in row.items()}
        self._rows.append(clean)
        with self.jsonl_path.open("a", encoding="utf-8") as handle:
            handle.write(self._json_line(clean))
        if self._add_columns(clean):
            self._rewrite_csv()
        else:
            with self.csv_path.open("a", encoding="utf-8", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self._columns, lineterminator="\n").writerow(
                    clean
                )
        if self._writer is not None:
            step = clean.get(self.step_key)
            step = int(step) if isinstance(step, (int, float)) else len(self._rows) - 1
            scalars = {
                key: value
                for key, value in clean.items()
                if key != self.step_key and not isinstance(value, (bool, str)) and value is not None
            }
            self._writer.scalars(step, scalars)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
