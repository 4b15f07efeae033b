"""era-control-compare: the table's numbers against numpy, the figure, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from era_control_app.compare import load_run, main, summary


def write_run(path, algo, env, evals, entropy=-4.0):
    """A run directory as era-control-train leaves it (config.json + metrics.jsonl)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"algo": algo, "env": env, "seeds": 3}))
    rows = []
    for step, per_seed in evals.items():
        for seed, value in enumerate(per_seed):
            row = {"step": step, "seed": seed, "entropy": entropy + seed, "target_entropy": -3.0}
            if value is not None:
                row["eval_return"] = value
            rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


EVALS = {1000: [1.0, 2.0, 3.0], 1500: [None, None, None], 2000: [10.0, 20.0, 60.0]}
EVALS |= {3000: [5.0, 7.0, 9.0]}


def test_summary_matches_numpy(tmp_path):
    run = load_run(write_run(tmp_path / "a", "sac-era", "dmc/cheetah-run", EVALS))
    s = summary(run, last=2)
    assert s["final_step"] == 3000
    assert s["final"] == pytest.approx((np.mean([5, 7, 9]), np.std([5, 7, 9], ddof=1)))
    tail = np.mean([[10, 20, 60], [5, 7, 9]], axis=0)  # per seed over the last two evaluations
    assert s["tail"] == pytest.approx((tail.mean(), tail.std(ddof=1)))
    assert s["tail_steps"] == [2000, 3000]
    assert s["entropy"][0] == pytest.approx(-3.0) and s["target_entropy"] == -3.0


def test_cli_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    a = write_run(tmp_path / "sac", "sac", "dmc/walker-walk", EVALS)
    b = write_run(tmp_path / "era", "sac-era", "dmc/walker-walk", {1000: [4.0, 4.0, 4.0]})
    c = write_run(tmp_path / "new", "sac", "dmc/cheetah-run", {500: [None, None, None]})
    out = tmp_path / "fig" / "cmp.png"
    assert main([str(a), str(b), str(c), "--out", str(out), "--last", "1"]) == 0
    text = capsys.readouterr().out
    assert "| dmc/walker-walk | sac | 3 | 3,000 | 7.0 ± 2.0 | 7.0 ± 2.0 | -3.00 (-3.00) |" in text
    assert "| dmc/walker-walk | sac-era | 3 | 1,000 | 4.0 ± 0.0 |" in text
    assert "| dmc/cheetah-run | sac | 3 | – | no evaluation yet |" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_not_a_run_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path)])
    assert err.value.code == 2
    assert "not an era-control-train run directory" in capsys.readouterr().err
