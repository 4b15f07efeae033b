"""The report's statistics and checks on hand-made inputs: floors checked per seed, stuck
seeds and idle baselines flagged, provenance, the generated docs block, the console table."""

from __future__ import annotations

import json
import math
import statistics
import textwrap

import pytest
from era_reproduce import cli, docs, plans
from era_reproduce.report import SPREAD, Provenance, Section, git_state, mean_std, pm_seeds
from era_reproduce.runner import Run, RunResult


def test_spread_is_the_sample_std_and_every_seed_is_shown():
    values = [0.668, 1.0, 0.9]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.fmean(values))
    assert std == pytest.approx(statistics.stdev(values))
    assert "n − 1" in SPREAD
    assert pm_seeds(values, 3) == f"{mean:.3f} ± {std:.3f} (seeds: 0.668, 1.000, 0.900)"


def _llm_row(method, seed, lowest, coef=0.0, accuracy=0.5):
    return {
        "method": method, "seed": seed, "final_eval_accuracy": accuracy,
        "min_top_entropy_mean": lowest, "run_frac_below": 0.1, "run_frac_inside": 0.8,
        "run_frac_above": 0.1, "run_frac_scaled": 0.2 if method == "era" else 0.0,
        "max_entropy_coef": coef,
    }  # fmt: skip


def test_a_floor_is_checked_per_seed_even_when_the_mean_is_above():
    rows = [_llm_row("era", 0, 0.668), _llm_row("era", 1, 1.0)]
    assert statistics.fmean(r["min_top_entropy_mean"] for r in rows) > 0.8  # the mean is above
    (check,) = plans._llm_checks(rows, low=0.8)
    assert "seed 0: 0.668 (BELOW)" in check and "seed 1: 1.000 (above)" in check
    assert "seeds [0] fell below" in check
    assert "rescaled 20.0, 20.0 %" in check
    (above,) = plans._llm_checks([_llm_row("grpo", 0, 0.9), _llm_row("grpo", 1, 0.81)], 0.8)
    assert "every seed stayed above" in above and "BELOW" not in above


def test_an_entropy_bonus_that_never_acted_is_flagged():
    rows = [
        _llm_row("grpo", 0, 0.9, accuracy=0.6), _llm_row("entropy-bonus", 0, 0.9, accuracy=0.6),
        _llm_row("grpo", 1, 0.7), _llm_row("entropy-bonus", 1, 0.75, coef=0.02),
    ]  # fmt: skip
    flags = plans._llm_flags(rows)
    assert len(flags) == 1 and "seed 0 never acted" in flags[0] and "equal GRPO" in flags[0]


def test_vision_check_per_seed_names_the_broken_seed_and_the_paper_floor():
    arms = {"b": {"era": False, "min_entropy": 0.6}, "e": {"era": True, "min_entropy": 0.6}}
    runs = {
        "b/seed0": {"lowest_entropy_min": 0.1, "floor": None},
        "e/seed0": {"lowest_entropy_min": 0.59, "floor": 0.982, "era_mode": "paper"},
        "e/seed1": {"lowest_entropy_min": 0.99, "floor": 0.982, "era_mode": "paper"},
    }
    base, era = plans._vision_checks(arms, runs)
    assert "0.100" in base
    assert "0.590, 0.990" in era and "BROKEN on e/seed0" in era  # mean 0.79 is above 0.6
    assert "0.982" in era and "--era-mode" in era


def test_the_vision_verdict_compares_the_baseline_with_the_exact_era_arm():
    arms = {
        "digits-baseline": {"arm": "digits-baseline", "era": False, "min_entropy": 0.6},
        "digits-era-exact": {"arm": "digits-era-exact", "era": True, "min_entropy": 0.3},
    }
    base, era = plans._compared_arms(arms)
    assert base["arm"] == "digits-baseline" and era["arm"] == "digits-era-exact"
    assert plans._compared_arms({"digits-ls0.2": {"era": False}}) == (None, None)
    runs = {
        "digits-era-exact/seed0": {"lowest_entropy_min": 0.31, "floor": 0.3, "era_mode": "exact"},
        "digits-era-exact/seed1": {"lowest_entropy_min": 0.42, "floor": 0.3, "era_mode": "exact"},
    }
    _, check = plans._vision_checks(arms, runs)
    assert "0.310, 0.420 nats against H_min 0.3: the floor held on every seed" in check
    assert "(exact mode) is 0.300 nats" in check and "Eq. 15" not in check


def _control_run(path, rows, algo="sac-era", agent=None):
    path.mkdir(parents=True)
    config = {"algo": algo, "env": "dmc/cartpole-swingup", "action_repeat": 4, "agent": agent or {}}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_seed_stuck_at_an_action_bound_is_flagged(tmp_path):
    """Seed 0's truncated entropy sits at the Gaussian's less ln 2 (a half-normal at the bound)
    with a low return; seed 1's mean is inside, its entropy close to the Gaussian's."""
    rows = []
    for step in range(200, 2001, 200):
        for seed, bounded, ret in ((0, -0.5 - math.log(2), 74.0), (1, -0.6, 300.0)):
            rows.append({"step": step, "seed": seed, "entropy": bounded,
                         "gaussian_entropy": -0.5, "target_entropy": -0.5})  # fmt: skip
            if step % 1000 == 0:
                rows.append({"step": step, "seed": seed, "eval_return": ret})
    out = tmp_path / "out"
    run_dir = _control_run(out / "control" / "sac-era", rows)
    run = Run("control", "sac-era", "x", "era-control-train", (), run_dir, 1)
    section = plans.summarize(
        "control", [RunResult(run, 0, 1.0, tmp_path / "log")], out, budget="smoke"
    )
    assert section.error is None, section.error
    assert len(section.flags) == 1 and "seed 0 is stuck at an action bound" in section.flags[0]
    assert "from step 200 to the end" in section.flags[0] and "74.0" in section.flags[0]
    assert "300.0" in section.flags[0]  # the other seed's return beside it
    (check,) = section.checks
    assert "equals the target -0.50 on every seed" in check
    assert "0.69, 0.10" in check  # the deficit per dimension, per seed
    assert "| 0 | 74.0 |" in section.per_seed and "| yes |" in section.per_seed


def test_provenance_lists_commit_versions_cpu_threads_and_device(tmp_path):
    prov = Provenance.collect(None)
    text = "\n".join(prov.markdown({}, tmp_path))
    assert "git commit:" in text and ("clean" in text or "dirty" in text or "unknown" in text)
    for name in ("jax", "torch", "timm", "transformers", "era-core", "era-reproduce"):
        assert f" {name} " in text
    assert "OMP_NUM_THREADS=" in text and "CPU only" in text
    assert "not run from a git checkout" in git_state(tmp_path)


def test_the_console_table_wraps_at_words():
    verdict = "lowest top-20 % response entropy per seed: ERA 0.668, 1.000 vs grpo " * 3
    section = Section("llm", "LLM RL", [], verdict=[verdict], flags=["x"])
    table = plans.summary_table([section], width=80)
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines) and len(lines) > 2
    words = " ".join(line[30:].strip() for line in lines[1:]).split()
    assert words == (verdict + " [1 flagged: see the report]").split()


def test_write_docs_needs_the_markers_and_fails_before_running(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("# no markers\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["--quick", "--out", str(tmp_path / "o"), "--write-docs", str(page)])
    assert info.value.code == 2 and "reproduce:measured" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--quick", "--out", str(tmp_path / "o"), "--figure", str(tmp_path / "x.txt")])
    assert not (tmp_path / "o").exists()
    assert docs.check_docs(tmp_path / "absent.md") is not None


def test_docs_block_replaces_only_between_the_markers(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (page.parent / "figures").mkdir()
    stale = page.parent / "figures" / "reproduce-old.png"
    stale.write_bytes(b"old")
    page.write_text(
        textwrap.dedent(f"""\
        # Title
        before
        {docs.START}
        ![old](figures/reproduce-old.png)
        {docs.END}
        after
        """)
    )
    figure = tmp_path / "run" / "figures" / "vision_curves.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG new")
    section = Section("vision", "Image classification", [], ours="| a |\n|---|\n| 1.0 |")
    section.figures.append(figure)
    section.checks.append("held on every seed")
    readme_fig = tmp_path / "readme.png"
    written = docs.write(
        page, [section], command="uv run era-reproduce --quick", mode="quick",
        total_wall_s=60.0, provenance=Provenance.collect(None), figure=readme_fig,
    )  # fmt: skip
    text = page.read_text()
    assert text.startswith("# Title\nbefore\n") and text.endswith(f"{docs.END}\nafter\n")
    assert "uv run era-reproduce --quick" in text and "### Image classification" in text
    assert "(figures/reproduce-vision-curves.png)" in text and "held on every seed" in text
    assert (page.parent / "figures" / "reproduce-vision-curves.png").read_bytes() == b"\x89PNG new"
    assert readme_fig.read_bytes() == b"\x89PNG new" and readme_fig in written
    assert not stale.exists()  # the old block's copy is gone with it


def test_thread_settings_recorded_by_runs_are_listed(tmp_path):
    from era_reproduce.report import run_threads

    run = tmp_path / "vision" / "arm" / "seed0"
    run.mkdir(parents=True)
    config = {"threads": {"intra_op": 1, "inter_op": 1}, "model": {"torch_threads": 2}, "lr": 1}
    (run / "config.json").write_text(json.dumps(config))
    found = run_threads([tmp_path / "vision"])
    assert found == {
        str(run): {"threads.intra_op": 1, "threads.inter_op": 1, "model.torch_threads": 2}
    }


def test_control_verdict_says_equal_for_equal_returns_and_no_nan_percentage():
    from era_reproduce.plans import _control_verdict

    env = "dmc/cartpole-swingup_sparse"
    finals = {(env, "sac"): [0.0, 0.0], (env, "sac-era"): [0.0, 0.0]}
    text = _control_verdict(env, "sac", "sac-era", finals, "quick")
    assert "is equal to SAC's" in text and "nan" not in text
    finals = {(env, "sac"): [100.0, 300.0], (env, "sac-era"): [300.0, 500.0]}
    text = _control_verdict(env, "sac", "sac-era", finals, "quick")
    assert "is higher than SAC's (400.0 vs 200.0, +100 %" in text
