"""The app takes algorithm names from era_control's registry; one target-entropy meaning per
name; the shared summary and figure of run directories."""

from __future__ import annotations

import json
import statistics

import pytest
from era_control_app import results
from era_control_app.config import quick, resolve
from era_control_app.presets import check_preset
from era_control_app.train import build_parser

from era_control import get_algorithm, list_algorithms


def test_algo_choices_come_from_the_registry():
    action = next(a for a in build_parser()._actions if a.dest == "algo")
    assert list(action.choices) == list_algorithms()


@pytest.mark.parametrize("flag", ["--target-entropy-per-dim", "--target-entropy"])
def test_both_target_entropy_flags_set_the_per_dim_field(flag):
    args = build_parser().parse_args(
        ["--algo", "sac-era", "--env", "dmc/cartpole-swingup", flag, "-1.25", "--steps", "100"]
    )
    agent = resolve(args)["agent"]
    assert agent == {"target_entropy_per_dim": -1.25}
    args = build_parser().parse_args(
        ["--algo", "sac", "--env", "dmc/cartpole-swingup", "--set", "entropy_per_dim=-2", flag, "1"]
    )
    assert resolve(args)["agent"] == {"target_entropy_per_dim": 1.0}  # the flag wins


def test_preset_with_an_unregistered_algorithm_is_refused():
    with pytest.raises(ValueError, match=r"unknown algorithm\(s\) \['dqn'\]"):
        check_preset({"algos": ["sac", "dqn"]}, "mine")
    with pytest.raises(ValueError, match=r"unknown algorithm\(s\) \['td3'\]"):
        check_preset({"algos": ["sac"], "agent": {"td3": {"hidden": [8]}}}, "mine")


def test_quick_writes_the_configs_quick_fields_as_json_values():
    for algo in list_algorithms():
        run = {"algo": algo, "env": "dmc/cartpole-swingup", "steps": 10**6, "seeds": 5, "seed": 0}
        run |= {"action_repeat": None, "log_interval": 5000, "eval_interval": 10000}
        run |= {"eval_episodes": 10, "checkpoint_interval": 50000, "agent": {}}
        small = quick(run)
        config = get_algorithm(algo).config
        assert small["steps"] == config.QUICK_STEPS and small["seeds"] == 2
        assert set(small["agent"]) == set(config.QUICK_FIELDS)
        assert json.loads(json.dumps(small)) == small  # lists, not tuples: stable on resume


def _write_run(path, algo, env, evals):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"algo": algo, "env": env}))
    rows = []
    for step, values in evals.items():
        for seed, value in enumerate(values):
            rows.append({"step": step, "seed": seed, "eval_return": value, "entropy": -1.0,
                         "target_entropy": -0.5, "episode_return": value / 2})  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_summarize_and_plot_run_directories(tmp_path):
    a = _write_run(tmp_path / "a", "sac", "dmc/walker-walk", {10: [1.0, 3.0], 20: [2.0, 6.0]})
    b = _write_run(tmp_path / "b", "sac-era", "dmc/walker-walk", {10: [5.0, 5.0]})
    s = results.summarize(a)
    assert s["final_step"] == 20 and s["final_eval_returns"] == [2.0, 6.0]
    # spreads over seeds are sample standard deviations (n - 1)
    assert s["final_eval_return_mean"] == 4.0
    assert s["final_eval_return_std"] == pytest.approx(statistics.stdev([2.0, 6.0]))
    assert s["tail"] == pytest.approx((3.0, statistics.stdev([1.5, 4.5])))
    assert s["target_entropy"] == -0.5
    assert results.baseline_pairs(["sac-era", "sac", "ppo"]) == [("sac", "sac-era")]
    for detail in (False, True):
        out = results.plot([a, b], tmp_path / f"fig{detail}.png", detail=detail)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
