"""Contracts of the repository layout that users, docs and CI rely on."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "era-core": "era_core",
    "era-control": "era_control",
    "era-vision": "era_vision",
    "era-llm": "era_llm",
}


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README.md must mark its test command with <!-- test-command -->"
    return match.group(1).strip()


def test_ci_script_runs_the_readme_test_command():
    command = _readme_test_command()
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert command in lines, f".ci/run must run {command!r}"
    assert lines[-1] == command, ".ci/run must end with the README test command"


def test_every_package_has_the_expected_layout():
    for package, module in PACKAGES.items():
        base = ROOT / "packages" / package
        meta = tomllib.loads((base / "pyproject.toml").read_text())["project"]
        assert meta["name"] == package
        assert (base / "src" / module / "__init__.py").is_file()
        assert (base / "README.md").is_file()
        assert any((base / "tests").glob("test_*.py")), f"{package} has no tests"


def test_domain_packages_depend_on_era_core_and_never_on_each_other():
    for package in PACKAGES:
        if package == "era-core":
            continue
        deps = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())[
            "project"
        ]["dependencies"]
        names = {re.split(r"[ <>=!~\[;]", d, maxsplit=1)[0] for d in deps}
        assert "era-core" in names
        assert not names & (set(PACKAGES) - {"era-core", package})


def test_nox_sessions_exist():
    text = (ROOT / "noxfile.py").read_text()
    for session in ("core", "control", "vision", "llm", "lint", "bench"):
        assert re.search(rf"^def {session}\(session", text, re.M), (
            f"nox session {session!r} missing"
        )
