"""era_core.runs: new run, resume, config diff, atomic checkpoints, DONE, RNG state."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest

from era_core import runs
from era_core.runs import RunError, config_diff, new_run, read_config, resume_run, run_status

CONFIG = {"lr": 0.1, "seed": 0, "workers": 0, "scale": (0.6, 1.0)}


def test_new_run_writes_config_and_refuses_a_non_empty_directory(tmp_path):
    out = tmp_path / "a" / "run"
    assert run_status(out) == "absent"
    run = new_run(out, CONFIG)
    assert not run.resumed and run.config == {**CONFIG, "scale": [0.6, 1.0]}
    assert json.loads((out / "config.json").read_text()) == run.config
    assert run_status(out) == "started"
    with pytest.raises(RunError, match=r"--out .*already holds a run.*--resume"):
        new_run(out, CONFIG)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert run_status(other) == "foreign"
    with pytest.raises(ValueError, match="not empty and not a run of this app"):
        new_run(other, CONFIG, flag="--output")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_status(empty) == "empty"
    new_run(empty, CONFIG)  # an empty directory is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file, not a directory"):
        new_run(tmp_path / "file", CONFIG)


def test_resume_returns_the_stored_config_and_checkpoint(tmp_path):
    run = new_run(tmp_path / "r", CONFIG, checkpoint="ckpt.pkl")
    run.save_checkpoint({"step": 3, "weights": np.arange(4)})
    assert run_status(run.path, checkpoint="ckpt.pkl") == "checkpointed"
    again = resume_run(run.path, {**CONFIG, "workers": 4}, may_change={"workers"},
                       checkpoint="ckpt.pkl")  # fmt: skip
    assert again.resumed and again.config["workers"] == 0  # the stored config is kept
    state = again.load_checkpoint()
    assert state["step"] == 3 and (state["weights"] == np.arange(4)).all()
    assert resume_run(run.path).config == run.config  # no config: no check


def test_config_diff_names_every_differing_key(tmp_path):
    assert config_diff(CONFIG, dict(CONFIG)) == {}
    assert config_diff(CONFIG, {**CONFIG, "scale": [0.6, 1.0]}) == {}  # as read back from JSON
    given = {**CONFIG, "lr": 0.2, "seed": 1, "workers": 8, "new": True}
    diff = config_diff(CONFIG, given, may_change=("workers",))
    assert diff == {"lr": (0.1, 0.2), "seed": (0, 1), "new": ("<missing>", True)}
    new_run(tmp_path / "r", CONFIG)
    with pytest.raises(RunError) as error:
        resume_run(tmp_path / "r", given, may_change=("workers",),
                   flag_names={"seed": "--seed-value"})  # fmt: skip
    message = str(error.value)
    assert "--lr cannot change on --resume (stored 0.1, given 0.2)" in message
    assert "--seed-value cannot change" in message and "--new cannot change" in message
    assert "--workers" in message and "--workers cannot" not in message


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(RunError, match=r"--resume .*no config.json there"):
        resume_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RunError, match=r"config.json is not valid JSON"):
        resume_run(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(RunError, match="must hold a JSON object"):
        resume_run(tmp_path)


def test_checkpoint_write_is_atomic_when_the_process_dies(tmp_path, monkeypatch):
    run = new_run(tmp_path / "r", CONFIG)
    run.save_checkpoint({"step": 1})
    good = run.checkpoint_path.read_bytes()

    def crash(fd):  # the disk flush of the new checkpoint fails (power cut, kill)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint({"step": 2, "blob": b"x" * 100_000})
    monkeypatch.undo()
    assert run.checkpoint_path.read_bytes() == good
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.pkl", "config.json"]
    # a process killed with SIGKILL cannot clean up: the next resume removes its temporary file
    (run.path / ".checkpoint.pkl.abc123.tmp").write_bytes(b"torn")
    resumed = resume_run(run.path, CONFIG)
    assert not list(run.path.glob(".*.tmp"))
    assert resumed.load_checkpoint() == {"step": 1}


def test_serializers_are_the_apps_choice(tmp_path):
    run = new_run(tmp_path / "r", CONFIG)
    run.save_checkpoint(b"raw bytes", serialize=bytes)
    assert run.checkpoint_path.read_bytes() == b"raw bytes"
    assert run.load_checkpoint(deserialize=bytes) == b"raw bytes"
    run.save_checkpoint({"a": 1}, serialize=lambda s: json.dumps(s).encode())
    assert run.load_checkpoint(deserialize=json.loads) == {"a": 1}


@pytest.mark.parametrize("content", [b"", b"\x80\x05garbage", b"not a pickle at all"])
def test_a_corrupted_or_empty_checkpoint_gives_a_clear_error(tmp_path, content):
    run = new_run(tmp_path / "r", CONFIG)
    run.checkpoint_path.write_bytes(content)
    resumed = resume_run(run.path, CONFIG)
    with pytest.raises(RunError) as error:
        resumed.load_checkpoint()
    message = str(error.value)
    assert "--resume" in message and "checkpoint.pkl" in message and str(run.path) in message
    assert ("is empty" if not content else "cannot be read") in message
    assert "new directory" in message


def test_missing_checkpoint_says_nothing_to_resume(tmp_path):
    run = resume_run(new_run(tmp_path / "r", CONFIG).path)
    assert not run.has_checkpoint()
    with pytest.raises(RunError, match=r"no checkpoint.pkl there"):
        run.load_checkpoint()


def test_finish_writes_summary_then_done(tmp_path):
    run = new_run(tmp_path / "r", CONFIG)
    assert not run.done
    run.finish({"final": {"top1": 0.9}})
    assert run.done and run_status(run.path) == "done"
    assert (run.path / "DONE").read_text() == "complete\n"
    assert run.read_summary() == {"final": {"top1": 0.9}}
    assert resume_run(run.path, CONFIG).done
    with pytest.raises(RunError, match=r"already holds a run \(done\)"):
        new_run(run.path, CONFIG)


def test_rng_state_round_trips_through_pickle():
    generator = np.random.default_rng(7)
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    state = pickle.loads(pickle.dumps(runs.rng_state(generators={"data": generator},
                                                     torch="opaque", cuda=[1, 2])))  # fmt: skip
    expected = (random.random(), np.random.rand(3), generator.random())  # noqa: NPY002
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    generator.random(10)
    framework = runs.set_rng_state(state, generators={"data": generator})
    assert framework == {"torch": "opaque", "cuda": [1, 2]}
    assert random.random() == expected[0]
    np.testing.assert_array_equal(np.random.rand(3), expected[1])  # noqa: NPY002
    assert generator.random() == expected[2]


def test_rng_state_rejects_bad_input():
    with pytest.raises(ValueError, match="framework RNG names must not be"):
        runs.rng_state(python=1)
    with pytest.raises(ValueError, match=r"state must hold the RNG states \['numpy'\]"):
        runs.set_rng_state({"python": random.getstate()})
    with pytest.raises(ValueError, match=r"generators \['data'\] are not in state"):
        runs.set_rng_state(runs.rng_state(), generators={"data": np.random.default_rng()})


def test_config_must_be_a_mapping(tmp_path):
    with pytest.raises(RunError, match="config must be a mapping"):
        new_run(tmp_path / "r", [("lr", 0.1)])


def _unwritable_outs(tmp_path):
    """``--out`` values that cannot hold a run, each with the reason the error must give."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    (readonly / "keep.txt").write_text("x")
    readonly_empty = tmp_path / "readonly-empty"
    readonly_empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for folder in (readonly, readonly_empty):
        folder.chmod(0o555)
    return [
        (readonly / "run", "cannot create it"),
        (readonly / "deeper" / "run", "cannot create it"),
        (readonly_empty, "cannot write there"),
        (a_file / "run", "is a file, not a directory"),
        (a_file, "is a file, not a directory"),
    ]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else False, reason="as root")
def test_unusable_out_is_one_clear_error_and_leaves_nothing(tmp_path):
    cases = _unwritable_outs(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    for out, reason in cases:
        with pytest.raises(RunError, match=reason) as caught:
            new_run(out, CONFIG)
        assert str(out) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p for p in tmp_path.rglob("*")) == before, "a refused --out left files"


def test_unwritable_out_as_root_by_a_denied_write(tmp_path, monkeypatch):
    """Root writes into read-only folders, so the denial is simulated where it happens."""
    denied = PermissionError(13, "Permission denied")

    def deny(*args, **kwargs):
        raise denied

    monkeypatch.setattr(runs.Path, "mkdir", deny)
    with pytest.raises(RunError, match=r"cannot create it \(Permission denied\)"):
        new_run(tmp_path / "a" / "run", CONFIG)
    monkeypatch.undo()
    monkeypatch.setattr(runs, "atomic_write_text", deny)
    with pytest.raises(RunError, match=r"cannot write there \(Permission denied\)"):
        new_run(tmp_path / "b" / "run", CONFIG)
    assert not any(tmp_path.iterdir()), "a refused --out left directories"


def test_unusable_out_through_a_file_even_as_root(tmp_path):
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "a-file" / "x" / "run", tmp_path / "a-file"):
        with pytest.raises(RunError, match="is a file, not a directory"):
            new_run(out, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_run_without_checkpoint_restarts_in_place(tmp_path):
    run = new_run(tmp_path / "r", CONFIG)
    (run.path / "metrics.csv").write_text("step,loss\n1,0.5\n")
    (run.path / "events").mkdir()
    with pytest.raises(RunError, match=r"never wrote a checkpoint.*--resume"):
        new_run(run.path, CONFIG)
    again = resume_run(run.path, CONFIG).restart()
    assert not again.resumed and sorted(p.name for p in run.path.iterdir()) == ["config.json"]
    assert read_config(run.path) == run.config
    again.save_checkpoint({"step": 1})
    with pytest.raises(RunError, match="resume it instead"):
        resume_run(run.path, CONFIG).restart()


def test_discard_removes_a_failed_new_run_only(tmp_path):
    run = new_run(tmp_path / "made" / "r", CONFIG)
    (run.path / "metrics.csv").write_text("step\n")
    assert run.discard() and not run.path.exists() and (tmp_path / "made").is_dir()
    given = tmp_path / "given"
    given.mkdir()
    run = new_run(given, CONFIG)
    assert run.discard() and given.is_dir() and not any(given.iterdir())
    run = new_run(tmp_path / "kept", CONFIG)
    run.save_checkpoint({"step": 1})
    assert not run.discard() and run.has_checkpoint()
    assert not resume_run(run.path).discard()


def test_make_dir_with_writes_its_file_or_leaves_nothing(tmp_path, monkeypatch):
    made = runs.make_dir_with(tmp_path / "a" / "b", "plan.json", "{}\n")
    assert made == [tmp_path / "a" / "b", tmp_path / "a"]
    assert (tmp_path / "a" / "b" / "plan.json").read_text() == "{}\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(runs.RunError, match="is a file, not a directory"):
        runs.make_dir_with(tmp_path / "file" / "c", "plan.json", "{}\n")

    def denied(path, text):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runs, "atomic_write_text", denied)
    with pytest.raises(runs.RunError, match="cannot write there \\(Permission denied\\)"):
        runs.make_dir_with(tmp_path / "x" / "y", "plan.json", "{}\n")
    assert not (tmp_path / "x").exists()
