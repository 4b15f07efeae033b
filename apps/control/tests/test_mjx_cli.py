"""era-control-train on an ``mjx/`` environment: the usual run directory and exact ``--resume``
from the command line, and bad input as one error line with exit status 2 and no run dir."""

import json
import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)

import pytest

pytest.importorskip("mujoco_playground", reason="the mjx extra (era-control[mjx]) is not installed")

from era_control_app.train import main

from era_core.runlog import read_jsonl

# the run of packages/era-control/tests/test_mjx.py (same config: its compiled program is reused)
RUN = [
    "--algo",
    "fastsac-era",
    "--env",
    "mjx/pendulum-swingup",
    "--num-envs",
    "4",
    "--steps",
    "96",
    "--seeds",
    "2",
    "--action-repeat",
    "50",
    "--log-interval",
    "32",
    "--eval-interval",
    "96",
    "--checkpoint-interval",
    "32",
    "--eval-episodes",
    "2",
    "--set",
    "actor_hidden=[32, 16]",
    "--set",
    "critic_hidden=[32, 16]",
    "--set",
    "batch_size=32",
    "--set",
    "num_atoms=11",
    "--set",
    "v_min=-20.0",
    "--set",
    "v_max=20.0",
    "--set",
    "learning_starts=2",
    "--set",
    "updates_per_step=1",
    "--no-progress",
    "--no-tensorboard",
]
TIMING = {"updates_per_s", "env_steps_per_s"}


def _rows(run_dir):
    return [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in read_jsonl(run_dir / "metrics.jsonl")
    ]


def test_mjx_run_writes_the_usual_files_and_resumes_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*RUN, "--out", str(full)]) == 0
    for name in ("config.json", "metrics.csv", "metrics.jsonl", "curves.png", "DONE"):
        assert (full / name).exists(), name
    assert json.loads((full / "config.json").read_text())["num_envs"] == 4
    assert main([*RUN, "--out", str(part), "--stop-at", "48"]) == 0
    assert not (part / "DONE").exists()
    assert main(["--resume", str(part), "--no-progress", "--no-tensorboard"]) == 0
    assert _rows(part) == _rows(full)
    assert {r["step"] for r in _rows(full)} == {32, 64, 96}


@pytest.mark.parametrize(
    ("env", "extra", "needle"),
    [
        ("mjx/cartpole-fly", [], "not a DM Control Suite task"),
        ("mjx/Go1JoystickFlatTerrain", [], "not available offline"),
        ("mjx/pendulum-swingup", ["--num-envs", "0"], "--num-envs 0 is out of range"),
    ],
)
def test_bad_mjx_input_exits_2_with_one_error_line(tmp_path, capsys, env, extra, needle):
    out = tmp_path / "bad"
    argv = ["--algo", "fastsac-era", "--env", env, "--num-envs", "4", *extra]
    with pytest.raises(SystemExit) as err:
        main([*argv, "--steps", "64", "--out", str(out), "--no-progress"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert needle in lines[-1] and "Traceback" not in "\n".join(lines)
    assert not out.exists()


def test_a_host_algorithm_refuses_an_mjx_env(tmp_path, capsys):
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as err:
        main(["--algo", "sac", "--env", "mjx/cheetah-run", "--steps", "64", "--out", str(out)])
    assert err.value.code == 2 and "step on the device" in capsys.readouterr().err
    assert not out.exists()


def test_cpu_sizes_fill_only_the_unset_fields_of_an_mjx_fast_run():
    from era_control_app.config import cpu_sized

    run = {"algo": "fastsac-era", "env": "mjx/cheetah-run", "steps": 20000}
    fresh = dict(run, agent={})
    assert cpu_sized(fresh) == [
        "actor_hidden=[128, 128, 128]",
        "critic_hidden=[256, 256, 256]",
        "batch_size=1024",
    ]
    assert fresh["agent"] == {
        "actor_hidden": [128, 128, 128],
        "critic_hidden": [256, 256, 256],
        "batch_size": 1024,
    }
    given = dict(run, agent={"batch_size": 32768})
    assert cpu_sized(given) == ["actor_hidden=[128, 128, 128]", "critic_hidden=[256, 256, 256]"]
    assert given["agent"]["batch_size"] == 32768
    for other in (dict(run, env="dmc/cheetah-run"), dict(run, algo="sac")):
        other["agent"] = {}
        assert cpu_sized(other) == [] and other["agent"] == {}


def test_cpu_sizes_fill_only_the_unset_fields_of_a_tdmpc2_run():
    from era_control_app.config import cpu_sized

    run = {"algo": "tdmpc2-era", "env": "dmc/cartpole-swingup", "steps": 5000}
    given = dict(run, agent={"num_samples": 512, "mlp_dim": 256})
    assert cpu_sized(given) == [
        "enc_dim=64",
        "latent_dim=64",
        "iterations=4",
        "num_elites=16",
        "num_pi_trajs=8",
        "batch_size=128",
        "warmup_steps=500",
    ]
    assert given["agent"]["num_samples"] == 512 and given["agent"]["mlp_dim"] == 256
    assert given["agent"]["iterations"] == 4 and given["agent"]["warmup_steps"] == 500
    fresh = dict(run, algo="tdmpc2", agent={})
    assert "num_samples=128" in cpu_sized(fresh) and fresh["agent"]["enc_dim"] == 64
    done = dict(run, agent=dict(fresh["agent"]))
    assert cpu_sized(done) == [] and done["agent"] == fresh["agent"]


def test_a_cpu_sized_tdmpc2_run_with_the_default_eval_interval_evaluates_five_times():
    from era_control_app.config import cpu_sized, default_intervals

    run = {"algo": "tdmpc2-era", "env": "dmc/cartpole-swingup", "steps": 5000}
    defaults = default_intervals(5000)  # log 166, eval 498: 11 evaluations with step 0's
    fresh = dict(run, **defaults, agent={})
    assert "eval_interval=996" in cpu_sized(fresh)
    assert fresh["eval_interval"] == 996 and fresh["eval_interval"] % fresh["log_interval"] == 0
    assert fresh["checkpoint_interval"] == defaults["checkpoint_interval"]
    for given in (True, False):  # --eval-interval 498 given, or another interval from a preset
        other = dict(run, **defaults, agent={})
        if not given:
            other["eval_interval"] = 332
        changed = cpu_sized(other, eval_interval_given=given)
        assert other["eval_interval"] in (498, 332) and not any("eval" in c for c in changed)
    sac = dict(run, algo="sac-era", **defaults, agent={})
    assert cpu_sized(sac) == [] and sac["eval_interval"] == 498
