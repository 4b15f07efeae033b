"""era-control-train on the shared pieces: flags generated from dataclasses (era_core.cli), the
run directory on era_core.runs (refusals before anything is written, unreadable checkpoints)."""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
from era_control_app.config import RUN_FLAGS, RunFlags
from era_control_app.train import RunOptions, build_parser, main, resolve

from era_control.training import RunConfig

ARGS = ["--algo", "sac", "--env", "dmc/cartpole-swingup", "--steps", "100", "--no-progress"]


def test_run_flags_are_the_run_config_fields_plus_the_per_dim_target():
    flags = {f.name for f in dataclasses.fields(RunFlags)}
    run_fields = {f.name for f in dataclasses.fields(RunConfig)} - {"agent"}
    assert flags == run_fields | {"target_entropy_per_dim"}
    assert set(RUN_FLAGS) == run_fields and all(k == v for k, v in RUN_FLAGS.items())
    dests = {a.dest for a in build_parser()._actions}
    assert flags | {f.name for f in dataclasses.fields(RunOptions)} | {"set"} <= dests


def test_help_says_algo_is_required_and_hides_stop_at(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--help"])
    assert err.value.code == 0
    text = capsys.readouterr().out
    assert "usage: era-control-train --algo ALGO" in text
    assert "required unless --resume" in text.split("--algo {", 1)[1].split("--env", 1)[0]
    assert "--target-entropy-per-dim H, --target-entropy H" in text
    assert "--stop-at" not in text


def test_flags_not_given_stay_none_so_the_preset_holds():
    args = build_parser().parse_args(["--algo", "sac", "--config", "cpu-cartpole"])
    assert all(getattr(args, name) is None for name in RUN_FLAGS if name != "algo")
    run = resolve(args)
    assert run["seeds"] == 2 and run["env"] == "dmc/cartpole-swingup"  # the preset's


def _started_run(tmp_path):
    """A run directory as a run killed before its first checkpoint leaves it."""
    out = tmp_path / "run"
    out.mkdir()
    config = resolve(build_parser().parse_args(ARGS))
    (out / "config.json").write_text(json.dumps(RunConfig.from_dict(config).to_dict()))
    return out


def test_existing_out_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "other"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as err:
        main([*ARGS, "--out", str(out)])
    assert err.value.code == 2 and "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "is empty (0 bytes)"), (b"not a pickle", "cannot be read")],
)
def test_unreadable_checkpoint_is_one_clear_error(tmp_path, capsys, content, needle):
    out = _started_run(tmp_path)
    (out / "checkpoint.pkl").write_bytes(content)
    with pytest.raises(SystemExit) as err:
        main(["--resume", str(out), "--no-progress", "--no-tensorboard"])
    message = capsys.readouterr().err
    assert err.value.code == 2 and needle in message and "Traceback" not in message


def test_resume_names_the_changed_flags_and_refuses_a_finished_run(tmp_path, capsys):
    out = _started_run(tmp_path)
    with pytest.raises(SystemExit):
        main(["--resume", str(out), "--seeds", "3", "--set", "batch_size=8", "--no-progress"])
    message = capsys.readouterr().err
    assert "--seeds (stored 1, given 3)" in message
    assert "--set batch_size (stored '<missing>', given 8)" in message
    (out / "DONE").write_text("complete\n")
    with pytest.raises(SystemExit) as err:
        main(["--resume", str(out), "--no-progress"])
    assert err.value.code == 2 and "already complete" in capsys.readouterr().err
