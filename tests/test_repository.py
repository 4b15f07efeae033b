"""Contracts of the repository layout that users, docs and CI rely on."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

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


def _noxfile_default_sessions() -> list[str]:
    """`nox.options.sessions` as written in noxfile.py (read with ast, nox is not imported)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and ast.unparse(node.targets[0]) == "nox.options.sessions"
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py must set nox.options.sessions (what `uv run nox` runs)")


def _workflow_matrix_sessions() -> list[str]:
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    match = re.search(r"^\s*session:\s*\[([^\]]*)\]", workflow, re.M)
    assert match, "ci.yml must list its nox sessions as `session: [a, b, ...]` in the matrix"
    return [name.strip().strip("\"'") for name in match.group(1).split(",") if name.strip()]


def test_ci_workflow_runs_every_session_uv_run_nox_runs():
    assert _workflow_matrix_sessions() == _noxfile_default_sessions()
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: uv run nox -s ${{ matrix.session }}" in workflow


def test_default_nox_sessions_are_defined():
    text = (ROOT / "noxfile.py").read_text()
    defined = set(re.findall(r"@nox\.session\(name=\"([\w-]+)\"\)", text))
    defined |= set(re.findall(r"@nox\.session\n(?:@.*\n)*def (\w+)\(", text))
    defined |= set(re.findall(r"@nox\.session\((?![^)]*name=)[^)]*\)\n(?:@.*\n)*def (\w+)\(", text))
    assert set(_noxfile_default_sessions()) <= defined


def _version_assignment(init: Path) -> ast.expr:
    tree = ast.parse(init.read_text())
    values = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__version__"
    ]
    assert len(values) == 1, f"{init} must set __version__ once"
    return values[0]


@pytest.mark.parametrize(
    "member",
    sorted(
        p.parent for p in ROOT.glob("*/*/pyproject.toml") if p.parts[-3] in {"packages", "apps"}
    ),
)
def test_version_is_written_once_in_pyproject(member):
    """Each member's `__version__` is read from its installed metadata, not written again."""
    name = tomllib.loads((member / "pyproject.toml").read_text())["project"]["name"]
    for init in sorted(member.glob("src/*/__init__.py")):
        value = _version_assignment(init)
        assert isinstance(value, ast.Call), f"{init}: __version__ must be read, not written"
        assert ast.unparse(value.func).endswith("metadata.version"), ast.unparse(value)
        assert ast.literal_eval(value.args[0]) == name


def test_every_package_ships_py_typed():
    for package, module in PACKAGES.items():
        typed = ROOT / "packages" / package / "src" / module / "py.typed"
        assert typed.is_file(), f"{package} must ship {typed.relative_to(ROOT)} (PEP 561)"


def test_readme_lists_every_test_session_and_console_script():
    """A reader of the README meets every session `uv run nox` runs and every command."""
    readme = (ROOT / "README.md").read_text()
    for session in _noxfile_default_sessions():
        assert f"`{session}`" in readme, f"README.md does not name the nox session {session!r}"
    for pyproject in sorted(ROOT.glob("apps/*/pyproject.toml")):
        scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
        for script in scripts:
            assert f"`{script}`" in readme, f"README.md does not name the command {script!r}"


# `pip install era-core` and the like: no such distribution is published, so an install line
# for a workspace member must point pip at the built wheels (`--find-links DIR`).
UNPUBLISHED_INSTALL = re.compile(r"pip install (?![^`\n]*--find-links)[^`\n]*\bera-[a-z]+")


def test_install_lines_for_our_packages_point_at_built_wheels():
    texts = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/*/README.md")]
    texts += [*ROOT.glob("packages/*/src/**/*.py"), *ROOT.glob("apps/*/src/**/*.py")]
    texts += [*ROOT.glob("*/*/pyproject.toml")]
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in texts
        for match in UNPUBLISHED_INSTALL.finditer(path.read_text())
    ]
    assert not found, "install lines for unpublished distributions:\n" + "\n".join(found)
