"""era_core.runlog: the metric files, exact resume, atomic writes, TensorBoard events."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

from era_core.runlog import MetricsLogger, atomic_write_bytes, atomic_write_text, read_jsonl


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_reach_csv_and_jsonl_with_union_of_columns(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"step": 0, "loss": np.float32(1.5)})
        log.log({"step": 1, "loss": 0.5, "acc": np.array(0.25), "note": "x"})
        log.log({"step": 2, "acc": 1.0})
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows == [
        {"step": 0, "loss": 1.5},
        {"step": 1, "loss": 0.5, "acc": 0.25, "note": "x"},
        {"step": 2, "acc": 1.0},
    ]
    table = read_csv(tmp_path / "metrics.csv")
    assert list(table[0]) == ["step", "loss", "acc", "note"]
    assert [r["loss"] for r in table] == ["1.5", "0.5", ""]
    assert [r["acc"] for r in table] == ["", "0.25", "1.0"]


def test_non_finite_values_are_null_in_json_and_kept_in_csv(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"step": 0, "loss": float("nan"), "x": float("inf")})
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line) == {"step": 0, "loss": None, "x": None}
    row = read_csv(tmp_path / "metrics.csv")[0]
    assert math.isnan(float(row["loss"])) and float(row["x"]) == math.inf


def test_resume_keeps_rows_up_to_the_checkpoint_and_equals_an_uninterrupted_run(tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    with MetricsLogger(full, tensorboard=False) as log:
        for step in range(6):
            log.log({"step": step, "v": step * 0.5})
    with MetricsLogger(resumed, tensorboard=False) as log:
        for step in range(5):  # crashed after step 4; last checkpoint at step 2
            log.log({"step": step, "v": step * 0.5})
    with MetricsLogger(resumed, tensorboard=False, resume_step=2) as log:
        assert [row["step"] for row in log.rows] == [0, 1, 2]
        for step in range(3, 6):
            log.log({"step": step, "v": step * 0.5})
    for name in ("metrics.csv", "metrics.jsonl"):
        assert (full / name).read_text() == (resumed / name).read_text()


def test_fresh_start_replaces_old_metrics(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"step": 0, "old": 1})
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"step": 0, "new": 2})
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 0, "new": 2}]
    assert (tmp_path / "metrics.csv").read_text() == "step,new\n0,2\n"


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"ste')
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]
    path.write_text('{"ste\n{"step": 1}\n')
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path)


@pytest.mark.parametrize(
    ("row", "match"),
    [({}, "non-empty"), ({"step": 0, "v": [1, 2]}, "'v'"), ({"step": 0, "v": np.ones(3)}, "'v'")],
)
def test_bad_rows_raise_naming_the_metric(tmp_path, row, match):
    with (
        MetricsLogger(tmp_path, tensorboard=False) as log,
        pytest.raises((ValueError, TypeError), match=match),
    ):
        log.log(row)


def test_bad_resume_step(tmp_path):
    with pytest.raises(ValueError, match="resume_step"):
        MetricsLogger(tmp_path, resume_step=1.5)


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "ckpt.bin"
    atomic_write_bytes(target, b"a" * 100)
    atomic_write_text(target, "short")
    assert target.read_text() == "short"
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.bin"]


def test_tensorboard_events_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401  (import check)

    with MetricsLogger(tmp_path) as log:
        for step in range(3):
            log.log({"step": step, "loss": 1.0 / (step + 1), "tag": "a"})
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert files
    from tensorboardX.proto import event_pb2

    scalars = []
    data = files[0].read_bytes()
    offset = 0
    while offset < len(data):  # TFRecord framing: length (8), crc (4), payload, crc (4)
        length = int.from_bytes(data[offset : offset + 8], "little")
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 16 + length
        scalars += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
    assert [(s, t) for s, t, _ in scalars] == [(0, "loss"), (1, "loss"), (2, "loss")]
    assert scalars[2][2] == pytest.approx(1 / 3)


def _scalars(directory):
    from tensorboardX.proto import event_pb2

    scalars = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            length = int.from_bytes(data[offset : offset + 8], "little")
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 16 + length
            scalars += [(event.step, v.tag) for v in event.summary.value]
    return scalars


def test_tensorboard_rows_are_on_disk_before_close(tmp_path):
    """A process killed after logging leaves every logged step in its events file."""
    pytest.importorskip("tensorboardX")
    log = MetricsLogger(tmp_path)
    for step in range(3):
        log.log({"step": step, "loss": 1.0})
    assert _scalars(tmp_path / "tb") == [(0, "loss"), (1, "loss"), (2, "loss")]
    log.close()


def test_resume_keeps_nan_as_nan_in_csv(tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    rows = [{"step": s, "loss": float("nan") if s == 1 else 0.5, "x": -math.inf} for s in range(4)]
    with MetricsLogger(full, tensorboard=False) as log:
        for row in rows:
            log.log(row)
    with MetricsLogger(resumed, tensorboard=False) as log:
        for row in rows[:3]:
            log.log(row)
    with MetricsLogger(resumed, tensorboard=False, resume_step=2) as log:
        assert math.isnan(log.rows[1]["loss"]) and log.rows[0]["x"] == -math.inf
        log.log(rows[3])
    for name in ("metrics.csv", "metrics.jsonl"):
        assert (full / name).read_text() == (resumed / name).read_text()
    assert read_csv(resumed / "metrics.csv")[1]["loss"] == "nan"


def test_reopening_finished_metrics_rewrites_nothing(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for step in range(3):
            log.log({"step": step, "v": float("nan")})
    files = [tmp_path / "metrics.csv", tmp_path / "metrics.jsonl"]
    stamps = [os.stat(f).st_mtime_ns for f in files]
    inodes = [os.stat(f).st_ino for f in files]
    with MetricsLogger(tmp_path, tensorboard=False, resume_step=2):
        pass
    assert [os.stat(f).st_mtime_ns for f in files] == stamps
    assert [os.stat(f).st_ino for f in files] == inodes
