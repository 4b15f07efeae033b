"""era-reproduce end to end at the smoke budget, plus its failure handling and --full checks."""

from __future__ import annotations

import math
import re
import sys

import pytest
from era_reproduce import cli, plans
from era_reproduce.report import Section, render
from era_reproduce.runner import Run, execute

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "run"
    code = cli.main(["--quick", "--smoke", "--out", str(out)])
    return code, out


def _numbers(table: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])-?\d+\.\d+", table)]


def test_quick_smoke_writes_a_report_with_three_domains_tables_and_figures(smoke_report):
    code, out = smoke_report
    report = (out / "report.md").read_text()
    assert code == 0, report
    for title in ("Continuous control", "Image classification", "LLM RL"):
        assert f"## {title}" in report
    assert report.count("**Measured here.**") == 3
    assert report.count("**The paper.**") == 3
    assert "74.75" in report and "50.2" in report  # paper numbers beside ours
    assert "far below the paper" in report
    lowered = report.lower()
    assert "nan" not in re.sub(r"[a-z]nan|nan[a-z]", "", lowered)  # no NaN cells
    assert "n/a" not in lowered and "todo" not in lowered and "failed" not in lowered
    measured = report.split("**Measured here.**")[1:]
    for block in measured:
        table = block.split("\n\n")[1]
        values = _numbers(table)
        assert values and all(math.isfinite(v) for v in values)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(figures) >= 3
    for rel in figures:
        data = (out / rel).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert "uv run era-control-train" in report and "uv run era-vision-train" in report
    assert "uv run era-llm-train" in report


def test_a_failing_run_is_reported_and_does_not_stop_the_next(tmp_path):
    runs = [
        Run("x", "broken", "era_reproduce._absent_module", "none", (), tmp_path / "a", 1),
        Run("y", "ok", "era_reproduce.cli", "era-reproduce", ("--help",), tmp_path / "b", 1),
    ]
    results = execute(runs, tmp_path / "logs")
    assert [r.ok for r in results] == [False, True]
    assert "exit code 1" in results[0].error
    assert "_absent_module" in results[0].log.read_text()
    section = Section("x", "X", results[:1])
    text = render([section, Section("y", "Y", results[1:])], tmp_path, mode="quick", total_wall_s=1)
    assert "FAILED" in text and "logs/x-broken.log" in text


def test_summary_of_a_domain_without_output_says_what_failed(tmp_path):
    run = Run(
        "vision", "digits-compare", "era_vision_app.train", "era-vision-train", (), tmp_path, 1
    )
    results = execute([run], tmp_path / "logs", timeout_s=None)
    section = plans.summarize("vision", results, tmp_path, budget="smoke")
    assert not section.ok and "summary.csv" in section.error


def test_full_without_data_lists_what_is_missing(tmp_path, capsys):
    code = cli.main(
        ["--full", "--domain", "vision", "--domain", "llm", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--vision-data" in err and "--llm-model" in err
    assert ("CUDA GPU" in err) == (cli.gpu_present() is None)
    assert not (tmp_path / "o").exists()


def test_bad_flags_exit_non_zero(tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.main(["--quick", "--preset", "x"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["--domain", "chemistry"])


def test_budgets_are_data_with_two_seeds_per_comparison():
    quick = plans.BUDGETS["quick"]
    assert quick["control"]["seeds"] >= 2
    assert len(quick["vision"]["seeds"]) >= 2 and len(quick["llm"]["seeds"]) >= 2
    assert sum(d["expected_s"] for d in quick.values()) <= 15 * 60
    assert sys.executable
