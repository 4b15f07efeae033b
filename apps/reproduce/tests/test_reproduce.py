"""era-reproduce end to end at the smoke budget, plus its failure handling and --full checks."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest
from era_reproduce import cli, docs, plans
from era_reproduce.report import SPREAD, Section, render
from era_reproduce.runner import Run, execute

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


REPO_DOCS = Path(__file__).resolve().parents[3] / "docs" / "reproduce.md"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of all three domains, writing a copy of docs/reproduce.md's block and a
    README figure as `--write-docs` / `--figure` do."""
    root = tmp_path_factory.mktemp("reproduce")
    out, page, figure = root / "run", root / "docs" / "reproduce.md", root / "readme.png"
    page.parent.mkdir()
    shutil.copyfile(REPO_DOCS, page)
    argv = ["--quick", "--smoke", "--out", str(out), "--write-docs", str(page)]
    code = cli.main([*argv, "--figure", str(figure)])
    return code, out, page, figure


@pytest.fixture(scope="module")
def smoke_report(smoke_run):
    code, out, _, _ = smoke_run
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
    assert "pass@8 (8 sampled responses per held-out prompt): ERA" in report
    # the learned-compensation arm: its own rows, per-seed checks and verdict line
    assert "sac-era (learned δ)" in report and "again with `--set compensation=learned`" in report
    assert "sac-era (learned δ)'s final eval return" in report
    assert "follows the learned compensation" in report
    assert "pass@8 (%, sampled)" in report  # the llm app's own table, with pass@k columns


def test_report_carries_provenance_spread_convention_and_wall_time_per_domain(smoke_report):
    _, out = smoke_report
    report = (out / "report.md").read_text()
    assert "## Provenance" in report and "* git commit: " in report
    for name in ("jax", "torch", "timm", "transformers", "era-core", "era-vision", "era-llm"):
        assert re.search(rf"[ ,]{name} (\d|not installed)", report), name
    assert "* machine: " in report and "* device: " in report and "OMP_NUM_THREADS=" in report
    assert re.search(
        r"total wall time [\d.]+ min \(control [\d.]+, vision [\d.]+, llm [\d.]+ min"
        r"(; the sums of each domain's runs, \d+ runs at a time)?\)",
        report,
    )
    assert re.search(r"\* runs side by side: \d+ \(`--jobs`\)", report)
    assert SPREAD in report
    assert report.count("**Mechanism check (per seed).**") == 3


def _cell(values: list[float], digits: int, scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_every_seed_is_shown_and_the_spread_is_the_apps_own(smoke_report):
    _, out = smoke_report
    report = (out / "report.md").read_text()
    vision = json.loads((out / "vision" / "summary.json").read_text())["runs"]
    vision_md = (out / "vision" / "summary.md").read_text()
    for arm in ("digits-baseline", "digits-era"):
        seeds = [r for name, r in vision.items() if name.startswith(f"{arm}/")]
        assert len(seeds) == 2
        for r in seeds:  # each seed's value is in the report
            assert f"{r['val_top1']:.2f} |" in report
            assert f"{r['lowest_entropy_min']:.3f}" in report
        cell = _cell([r["val_top1"] for r in seeds], 2)  # sample std, as the app writes it
        assert cell in vision_md and cell in report
    llm = json.loads((out / "llm" / "summary.json").read_text())["runs"]
    llm_md = (out / "llm" / "summary.md").read_text()
    for method in ("grpo", "era", "entropy-bonus"):
        seeds = [r for r in llm if r["method"] == method]
        cell = _cell([r["final_eval_accuracy"] for r in seeds], 2, 100)  # accuracy in %
        assert cell in llm_md and cell in report
        for r in seeds:
            assert f"seed {r['seed']}: {r['min_top_entropy_mean']:.3f}" in report
    assert "**Every seed.**" in report  # control's per-seed table
    assert "Gaussian's entropy" in report and "H_min" in report and "band" in report


def test_write_docs_replaces_the_block_with_this_run_and_writes_the_figure(smoke_run):
    code, _, page, figure = smoke_run
    assert code == 0
    text, original = page.read_text(), REPO_DOCS.read_text()
    head, rest = original.split(docs.START, 1)
    tail = rest.split(docs.END, 1)[1]
    assert text.startswith(head) and text.endswith(tail)
    block = text.split(docs.START, 1)[1].split(docs.END, 1)[0]
    assert "Generated by `uv run era-reproduce --quick --smoke" in block
    assert "### Continuous control" in block and "### LLM RL" in block
    assert SPREAD in block and "**Mechanism check (per seed).**" in block
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", block)
    assert len(links) >= 3
    for rel in links:
        assert (page.parent / rel).read_bytes()[:8] == PNG_MAGIC
    assert figure.read_bytes()[:8] == PNG_MAGIC


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


def test_every_quick_run_parses_in_its_app(tmp_path):
    """The quick budgets' flags (the pilots' regimes among them) are flags of their apps."""
    from era_control_app.train import build_parser as control_parser
    from era_llm_app.config import build_parser as llm_parser
    from era_vision_app.cli import build_parser as vision_parser

    parsers = {"control": control_parser, "vision": vision_parser, "llm": llm_parser}
    args = cli.build_parser().parse_args(["--quick"])
    for domain, parser in parsers.items():
        runs = plans.runs_for(domain, tmp_path / domain, budget="quick", args=args)
        assert runs
        for run in runs:
            parser().parse_args(list(run.args))
    vision = plans.runs_for("vision", tmp_path / "v", budget="quick", args=args)[0].args
    assert {"--label-noise", "--limit-train-batches", "--min-lr"} <= set(vision)


RENDEZVOUS = """
import sys, time
from pathlib import Path

here, other = Path(sys.argv[1]), Path(sys.argv[2])
here.touch()
deadline = time.monotonic() + 60
while not other.exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.05)
"""


def test_jobs_run_side_by_side_and_keep_the_order_of_the_results(tmp_path, monkeypatch):
    """Two runs that each wait for the other's file finish only when they run at once."""
    (tmp_path / "era_rendezvous_probe.py").write_text(RENDEZVOUS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    a, b = tmp_path / "a.flag", tmp_path / "b.flag"
    runs = [
        Run("x", "one", "era_rendezvous_probe", "probe", (str(a), str(b)), tmp_path / "o1", 1),
        Run("y", "two", "era_rendezvous_probe", "probe", (str(b), str(a)), tmp_path / "o2", 1),
    ]
    results = execute(runs, tmp_path / "logs", timeout_s=90, jobs=2)
    assert [r.run.name for r in results] == ["one", "two"]
    assert all(r.ok for r in results), [r.error for r in results]


def test_jobs_below_one_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--quick", "--jobs", "0", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
