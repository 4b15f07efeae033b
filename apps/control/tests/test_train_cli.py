"""era-control-train: outputs, exact resume, presets, bad flags."""

import csv
import json
import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)

import pytest
from era_control_app.train import (
    build_parser,
    load_preset,
    main,
    preset_agent,
    preset_names,
    quick,
    resolve,
)

from era_control.training import RunConfig, make_algo_config
from era_core.runlog import read_jsonl

TINY = [
    "--env",
    "dmc/cartpole-swingup",
    "--action-repeat",
    "25",
    "--seeds",
    "2",
    "--log-interval",
    "20",
    "--eval-interval",
    "60",
    "--checkpoint-interval",
    "40",
    "--set",
    "hidden=[32, 32]",
    "--set",
    "batch_size=32",
    "--set",
    "updates_per_step=1",
    "--set",
    "buffer_size=50",  # capacity min(50, steps) = 50 for every run: compiled once, reused
    "--no-progress",
    "--no-tensorboard",
]
TIMING = {"updates_per_s", "env_steps_per_s"}


def _rows(run_dir):
    return [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in read_jsonl(run_dir / "metrics.jsonl")
    ]


def test_run_writes_metrics_plot_and_done(tmp_path):
    out = tmp_path / "run"
    assert main(["--algo", "sac-era", "--steps", "120", "--out", str(out), *TINY]) == 0
    for name in (
        "config.json",
        "metrics.csv",
        "metrics.jsonl",
        "curves.png",
        "summary.json",
        "DONE",
    ):
        assert (out / name).exists(), name
    header = next(csv.reader((out / "metrics.csv").open()))
    for col in (
        "step",
        "seed",
        "episode_return",
        "eval_return",
        "entropy",
        "target_entropy",
        "delta",
        "critic_loss",
        "actor_loss",
        "updates_per_s",
    ):
        assert col in header, col
    rows = read_jsonl(out / "metrics.jsonl")
    assert {r["seed"] for r in rows} == {0, 1}
    assert max(r["step"] for r in rows) == 120
    assert json.loads((out / "config.json").read_text())["steps"] == 120
    # warm-up is at most a tenth of the run: updates (and the ERA entropy) show from step 20
    assert min(r["step"] for r in rows if "entropy" in r) == 20


def test_sac_logs_alpha(tmp_path):
    out = tmp_path / "sac"
    assert main(["--algo", "sac", "--steps", "60", "--out", str(out), *TINY]) == 0
    assert "alpha" in next(csv.reader((out / "metrics.csv").open()))


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--algo", "sac-era", "--steps", "160", *TINY]
    assert main([*args, "--out", str(full)]) == 0
    # "killed" at step 130: the last checkpoint is at 120, rows of 140 are not written yet
    assert main([*args, "--out", str(part), "--stop-at", "130"]) == 0
    assert not (part / "DONE").exists()
    assert max(r["step"] for r in read_jsonl(part / "metrics.jsonl")) == 120
    assert main(["--resume", str(part), "--no-progress", "--no-tensorboard"]) == 0
    assert (part / "DONE").exists()
    assert _rows(part) == _rows(full)


def test_resume_from_a_checkpoint_past_rows_written_later(tmp_path):
    # a kill between a log row and the next checkpoint: rows after the checkpoint are dropped
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--algo", "sac", "--steps", "100", *TINY]
    assert main([*args, "--out", str(full)]) == 0
    assert main([*args, "--out", str(part), "--stop-at", "61"]) == 0
    assert max(r["step"] for r in read_jsonl(part / "metrics.jsonl")) == 60
    assert main(["--resume", str(part), "--no-progress", "--no-tensorboard"]) == 0
    assert _rows(part) == _rows(full)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--algo", "dqn", "--env", "dmc/cartpole-swingup"], "invalid choice: 'dqn'"),
        (
            ["--algo", "sac-era", "--env", "dmc/cartpole-swingup", "--steps", "-5"],
            "--steps must be a positive",
        ),
        (
            [
                "--algo",
                "sac-era",
                "--env",
                "dmc/cartpole-swingup",
                "--steps",
                "100",
                "--target-entropy",
                "3",
            ],
            "infeasible for action_dim=1",
        ),
        (["--algo", "sac-era", "--env", "dmc/cartpole-fly", "--steps", "100"], "Valid prefixes"),
        (
            ["--algo", "sac-era", "--env", "dmc/cartpole-swingup", "--set", "hiddn=[3]"],
            "unknown sac-era hyper",
        ),
        (["--algo", "ppo", "--config", "dmc-dog-humanoid"], "not part of --config"),
        (["--algo", "sac", "--config", "nope"], "unknown --config 'nope'"),
    ],
)
def test_bad_flags_exit_nonzero_with_clear_message_and_no_run_dir(tmp_path, capsys, argv, needle):
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(out), "--no-progress"])
    assert err.value.code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--algo", "sac-era", "--steps", "100", *TINY]
    assert main([*args, "--out", str(out), "--stop-at", "40"]) == 0
    with pytest.raises(SystemExit) as err:
        main(["--resume", str(out), "--steps", "200", "--no-progress"])
    assert err.value.code == 2 and "different config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out)])  # an existing run dir is never overwritten
    assert not (out / "DONE").exists()


def test_every_preset_resolves_for_its_algos_and_quick_shrinks_it():
    assert {
        "dmc-dog-humanoid",
        "humanoidbench",
        "mujoco-ppo",
        "entropy-sweep",
        "cpu-cheetah-walker",
    } <= set(preset_names())
    parser = build_parser()
    for name in preset_names():
        preset = load_preset(name)
        assert preset["kind"] in ("paper", "cpu") and preset["description"]
        for algo in preset["algos"]:
            args = parser.parse_args(["--algo", algo, "--config", name])
            run = resolve(args)
            RunConfig.from_dict(run).validate()
            make_algo_config(algo, preset_agent(preset, algo))
            small = quick(run)
            assert small["steps"] <= 20480 and small["seeds"] <= 2
            RunConfig.from_dict(small).validate()
        short = resolve(
            parser.parse_args(["--algo", preset["algos"][0], "--config", name, "--steps", "3000"])
        )
        RunConfig.from_dict(short).validate()  # intervals shrink consistently with --steps
        assert short["eval_interval"] <= 3000
        for steps in ("800", "3000", "12345"):  # evaluations happen on logging steps only
            for q in ([], ["--quick"]):
                run = resolve(
                    parser.parse_args(
                        ["--algo", preset["algos"][0], "--config", name, "--steps", steps, *q]
                    )
                )
                assert run["eval_interval"] % run["log_interval"] == 0, (name, steps, run)
                assert run["checkpoint_interval"] % run["log_interval"] == 0
    paper = load_preset("dmc-dog-humanoid")
    assert paper["run"]["seeds"] == 10 and paper["run"]["steps"] == 1_000_000
    cpu = load_preset("cpu-cheetah-walker")
    assert cpu["run"]["seeds"] == 3 and cpu["agent"]["hidden"] == [256, 256]
    assert cpu["agent"]["updates_per_step"] == 1 and "CPU" in cpu["description"]


@pytest.mark.parametrize("algo", ["ppo", "ppo-era"])
def test_ppo_runs_resumes_and_logs_entropy(tmp_path, algo):
    args = [
        "--algo", algo, "--env", "dmc/cartpole-swingup", "--action-repeat", "25", "--steps", "384",
        "--seeds", "2", "--log-interval", "128", "--eval-interval", "384",
        "--checkpoint-interval", "128", "--set", "rollout_steps=128", "--set", "epochs=2",
        "--no-progress", "--no-tensorboard",
    ]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*args, "--out", str(full)]) == 0
    rows = read_jsonl(full / "metrics.jsonl")
    assert {"entropy", "policy_loss", "value_loss", "eval_return"} <= set(rows[-1])
    if algo == "ppo-era":  # no entropy bonus; the Gaussian's entropy is exactly the target
        assert all(r["ent_coef"] == 0.0 for r in rows)
        assert all(r["entropy"] == pytest.approx(r["target_entropy"], abs=1e-4) for r in rows)
    else:
        assert (
            all(r["ent_coef"] == pytest.approx(0.01) for r in rows)
            and "target_entropy" not in rows[-1]
        )
    assert main([*args, "--out", str(part), "--stop-at", "200"]) == 0
    assert main(["--resume", str(part), "--no-progress", "--no-tensorboard"]) == 0
    assert _rows(part) == _rows(full)


def test_docs_flags_and_presets_match_the_code():
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "control.md"
    if not doc.exists():
        pytest.skip("docs/control.md is not part of this checkout")
    text = doc.read_text()
    options = {o for a in build_parser()._actions for o in a.option_strings}
    documented = set(re.findall(r"`(--[a-z][a-z-]*)", text))
    assert documented and documented <= options, documented - options
    for name in preset_names():
        assert f"`{name}`" in text, name
