"""bench/gpu_check.py without a framework: its lists, its arguments, its time limits.

The dry runs of the sections themselves are tested in each domain's session
(apps/<domain>/tests/test_gpu_check_dry_run.py), where torch or JAX is installed.
"""

from __future__ import annotations

import builtins
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))

import gpu_check_common as common  # noqa: E402
import make_device_bundle  # noqa: E402

SCRIPT = ROOT / "bench" / "gpu_check.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_every_allowed_import_is_on_the_device_or_carried():
    assert set(common.SECTION_IMPORTS) == set(common.SECTIONS) == set(common.BUDGET_S)
    for section in common.SECTIONS:
        for name in common.allowed_imports(section):
            assert name in common.DEVICE_HAS or name in common.CARRIED, (section, name)
    assert not set(common.DEVICE_HAS) & set(common.CARRIED)


def test_budgets_fit_one_device_command():
    assert sum(common.BUDGET_S.values()) <= common.TOTAL_BUDGET_S <= 9 * 60
    assert all(b > 0 for b in common.BUDGET_S.values())


def test_bundle_carries_every_required_wheel_at_a_pinned_version():
    carried = {dist: (version, required) for dist, version, required in
               make_device_bundle.wanted(True)}  # fmt: skip
    lock = {}
    for block in (ROOT / "uv.lock").read_text().split("[[package]]")[1:]:
        lines = dict(line.split(" = ", 1) for line in block.strip().splitlines()[:2])
        lock[lines["name"].strip('"')] = lines["version"].strip('"')
    assert carried["array-api-compat"] == (lock["array-api-compat"], True)
    assert {d for d, (_, req) in carried.items() if not req} == {
        "threadpoolctl",
        "liger-kernel",
        "cut-cross-entropy",
    }
    assert {d for d, _, _ in make_device_bundle.wanted(False)} == {"array-api-compat"}
    command = make_device_bundle.device_command(common.BUNDLE_DIR)
    assert command.endswith("python3 bench/gpu_check.py --out $OUT")
    assert f"--target {make_device_bundle.SITE} {common.BUNDLE_DIR}/wheels/*.whl" in command
    assert common.BUNDLE_DIR + "/" in (ROOT / ".gitignore").read_text().splitlines()


def test_import_recorder_records_only_first_party_imports(tmp_path, monkeypatch):
    (tmp_path / "era_probe_mod.py").write_text("import json\nimport pytest\nimport era_probe_two\n")
    (tmp_path / "era_probe_two.py").write_text("def f():\n    import _pytest.fixtures\n")
    (tmp_path / "someone_else.py").write_text("import pluggy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recorder = common.ImportRecorder()
    original_import, original_import_module = builtins.__import__, importlib.import_module
    try:
        recorder.install()
        importlib.import_module("era_probe_mod")
        importlib.import_module("someone_else")
        sys.modules["era_probe_two"].f()
    finally:
        builtins.__import__, importlib.import_module = original_import, original_import_module
    assert recorder.imported == {"pytest", "_pytest"}
    summary = recorder.summary("vision")
    assert summary["disallowed"] == ["_pytest", "pytest"]


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    for args in (["--only", "env,gpu"], ["--only", ","], ["--budget", "env=-1"],
                 ["--budget", "nope=3"]):  # fmt: skip
        out = tmp_path / "out"
        proc = run_script("--out", str(out), *args)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert args[0] in proc.stderr and not out.exists()


def test_env_section_without_frameworks(tmp_path):
    proc = run_script("--out", str(tmp_path), "--only", "env", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert common.output_problems(tmp_path, ["env"]) == []
    data = json.loads((tmp_path / "env.json").read_text())
    assert data["dry_run"] and set(data["results"]) >= {"gpu", "host", "torch", "jax"}
    assert "| env | ok |" in proc.stdout  # the summary table is printed last


def test_a_section_over_its_budget_is_stopped_and_recorded(tmp_path):
    proc = run_script("--out", str(tmp_path), "--only", "env", "--dry-run", "--budget", "env=0.01")
    assert proc.returncode == 1
    data = json.loads((tmp_path / "env.json").read_text())
    assert data["status"] == "timeout" and data["timeout_s"] == 0.01
    assert "| env | timeout |" in (tmp_path / "gpu-check.md").read_text()
    problems = common.output_problems(tmp_path, ["env"])
    assert any("status timeout" in p for p in problems)


@pytest.mark.parametrize("bad", ["bad name.json", "x" * 3])
def test_output_check_flags_extra_and_badly_named_files(tmp_path, bad):
    for i in range(common.MAX_OUT_FILES):
        (tmp_path / f"f{i}.md").write_text("")
    (tmp_path / bad).write_text("")
    problems = common.output_problems(tmp_path, [])
    assert any("at most 8" in p for p in problems)
    assert any("would not come back" in p for p in problems) == (" " in bad)


def test_metadata_stubs_give_versions_of_source_only_members(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        import gpu_check_common as c
        from importlib import metadata
        stubs = c.metadata_stubs()
        c.use_source(stubs)
        print(metadata.version("era-core"))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "bench")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    version = common._project(ROOT / "packages" / "era-core" / "pyproject.toml")[1]
    assert proc.stdout.strip() == version
