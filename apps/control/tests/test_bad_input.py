"""era-control-train on bad input, one test per class of fault: exit 2, one error line naming
the argument, no traceback, and no run directory left looking started."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)

import pytest
from era_control_app.train import main

from era_core.testing import assert_nothing_made, copy_run, error_line, unusable_outs

# The smallest run that writes a checkpoint (at step 40 of 60): what --resume cases start from.
# Its shapes are those of test_train_cli.py's runs, so the compiled programs are shared.
TINY = ["--algo", "sac-era", "--env", "dmc/cartpole-swingup", "--action-repeat", "25"]
TINY += ["--steps", "60", "--seeds", "2", "--log-interval", "20", "--eval-interval", "60"]
TINY += ["--checkpoint-interval", "40", "--set", "hidden=[32, 32]", "--set", "batch_size=32"]
TINY += ["--set", "updates_per_step=1", "--set", "buffer_size=50", "--no-progress"]
TINY += ["--no-tensorboard"]


def _fails(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    return error_line(caught.value.code, err, "era-control-train", message, one_line=False)


def _files(run: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_size) for p in run.iterdir())


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped at step 45: its checkpoint is from step 40, it is not finished."""
    out = tmp_path_factory.mktemp("runs") / "stopped"
    assert main([*TINY, "--out", str(out), "--stop-at", "45"]) == 0
    assert (out / "checkpoint.pkl").is_file() and not (out / "DONE").exists()
    return out


def test_unusable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out, message in unusable_outs(tmp_path):
        line = _fails([*TINY, "--out", str(out)], message, capsys)
        assert str(out) in line
    assert_nothing_made(tmp_path)


def test_values_that_slip_past_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    for flags, message in [
        (["--seed", "-1"], "--seed -1 is out of range: it must be an integer >= 0"),
        (["--log-interval", "0"], "--log-interval 0 is out of range"),
        (["--checkpoint-interval", "0"], "--checkpoint-interval 0 is out of range"),
        (["--eval-episodes", "0"], "--eval-episodes 0 is out of range"),
        (["--set", "hidden=abc"], "--set hidden='abc' is not valid: hidden must be a list of"),
        (["--set", "batch_size=1.5"], "--set batch_size=1.5 is not valid: batch_size must be"),
        (["--quick", "--set", "hidden=abc"], "--set hidden='abc' is not valid"),
        (["--threads", "-1"], "--threads -1 must be an integer >= 0"),
    ]:
        _fails([*TINY, "--out", str(out), *flags], message, capsys)
        assert not out.exists()


def test_presets_that_do_not_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {
        "broken.toml": (b'description = "x"\nalgos = [sac\n', "not valid TOML"),
        "latin.toml": ('description = "caf\u00e9"\n'.encode("latin-1"), "cannot be read"),
        "types.toml": (b"algos = 3\n", "algos = 3 must be a list"),
        "run.toml": (
            b'algos = ["sac-era"]\n[run]\nstepz = 3\n',
            "unknown [run] setting(s) ['stepz']",
        ),
        "steps.toml": (b'algos = ["sac-era"]\n[run]\nsteps = "many"\n', "[run] steps='many'"),
    }
    out = tmp_path / "run"
    for name, (content, message) in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        line = _fails([*TINY, "--out", str(out), "--config", str(path)], message, capsys)
        assert str(path) in line
        assert not out.exists()
    _fails([*TINY, "--out", str(out), "--config", "absent.toml"], "no such file", capsys)


def test_broken_checkpoints_and_configs_on_resume(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((stopped_run / "config.json").read_text())

    def edited(**changes: object) -> bytes:
        return json.dumps({**config, **changes}).encode()

    faults = {
        "empty checkpoint": ("checkpoint.pkl", b"", "is empty"),
        "truncated checkpoint": ("checkpoint.pkl", None, "cannot be read"),
        "garbage checkpoint": ("checkpoint.pkl", b"\x80\x05garbage", "cannot be read"),
        "config not JSON": ("config.json", b"{", "is not valid JSON"),
        "edited interval": (
            "config.json",
            edited(log_interval=10),
            "config.json differs from the config its checkpoint.pkl was written with "
            "(log_interval: checkpoint 20, config.json 10)",
        ),
        "edited hyper-parameter": (
            "config.json",
            edited(agent={**config["agent"], "hidden": "abc"}),
            "hyper-parameter hidden='abc' is not valid",
        ),
        "edited steps": ("config.json", edited(steps="many"), "config.json steps='many'"),
    }
    for i, (name, content, message) in enumerate(faults.values()):
        run = copy_run(stopped_run, tmp_path / f"r{i}")
        if content is None:
            content = (run / name).read_bytes()[:64]
        (run / name).write_bytes(content)
        before = _files(run)
        _fails(["--resume", str(run), "--no-progress"], message, capsys)
        assert _files(run) == before


def test_flags_that_resume_would_ignore(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(stopped_run, tmp_path / "run")
    before = _files(run)
    _fails(
        ["--resume", str(run), "--config", "cpu-cartpole"],
        "--config cpu-cartpole cannot be combined with --resume",
        capsys,
    )
    _fails(["--resume", str(tmp_path / "absent")], "no config.json there", capsys)
    assert _files(run) == before and not (tmp_path / "absent").exists()
