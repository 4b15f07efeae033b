"""tools/check_imports.py: the import contracts hold here, and the checker can fail."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_imports", ROOT / "tools" / "check_imports.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


check_imports = _load_checker()


def _member(root: Path, folder: str, name: str, deps: list[str], files: dict[str, str]) -> None:
    base = root / folder
    base.mkdir(parents=True)
    (base / "pyproject.toml").write_text(f'[project]\nname = "{name}"\ndependencies = {deps!r}\n')
    for relative, text in files.items():
        path = base / "src" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tiny workspace: era_core imports a domain package (a layer violation), era_vision
    imports era_control (two domain packages), era_control.a <-> era_control.b (a cycle)."""
    _member(
        tmp_path,
        "packages/era-core",
        "era-core",
        ["numpy"],
        {"era_core/__init__.py": "def helper():\n    import era_control.a\n"},
    )
    _member(
        tmp_path,
        "packages/era-control",
        "era-control",
        ["era-core"],
        {
            "era_control/__init__.py": "",
            "era_control/a.py": "import numpy\nfrom era_control import b\n",
            "era_control/b.py": "from . import a\nx = 1\n",
        },
    )
    _member(
        tmp_path,
        "packages/era-vision",
        "era-vision",
        ["era-core"],
        {"era_vision/__init__.py": "from era_control.b import x\n"},
    )
    _member(
        tmp_path,
        "apps/vision",
        "era-vision-app",
        ["era-vision"],
        {"era_vision_app/__init__.py": "from era_core import helper\nimport era_vision\n"},
    )
    return tmp_path


def test_the_repository_keeps_its_import_contracts():
    assert check_imports.check(ROOT) == []


def test_checker_reports_a_layer_violation_with_its_edge(tree):
    problems = check_imports.check(tree, known_cycles=())
    layer = [p for p in problems if "[layers" in p]
    assert len(layer) == 1
    assert layer[0].startswith("era_core -> era_control.a  [layers:")
    assert "packages/era-core/src/era_core/__init__.py:2" in layer[0]


def test_checker_reports_domain_packages_importing_each_other(tree):
    problems = check_imports.check(tree, known_cycles=())
    assert any(p.startswith("era_vision -> era_control.b  [independence") for p in problems)
    assert any(p.startswith("era_vision -> era_control.b  [declared") for p in problems)


def test_checker_reports_a_cycle_with_its_path(tree):
    problems = check_imports.check(tree, known_cycles=())
    cycles = [p for p in problems if "[cycles]" in p]
    assert len(cycles) == 1
    assert cycles[0].startswith("era_control.a -> era_control.b -> era_control.a  [cycles]")


def test_checker_accepts_transitive_declared_dependencies(tree):
    """era-vision-app imports era_core, which it brings in through era-vision."""
    problems = check_imports.check(tree, known_cycles=())
    assert not [p for p in problems if p.startswith("era_vision_app")]


def test_known_cycles_are_allowed_and_a_stale_entry_fails(tree):
    cycle = frozenset({"era_control.a", "era_control.b"})
    problems = check_imports.check(tree, known_cycles=(cycle,))
    assert not [p for p in problems if "[cycles]" in p]
    stale = frozenset({"era_control.a", "era_core"})
    problems = check_imports.check(tree, known_cycles=(cycle, stale))
    assert [p for p in problems if "[cycles]" in p] == [
        "era_control.a <-> era_core  [cycles] KNOWN_CYCLES lists a cycle that is gone: "
        "remove its entry from tools/check_imports.py"
    ]


def test_a_package_outside_the_layers_is_reported(tree):
    _member(tree, "apps/extra", "era-extra", [], {"era_extra/__init__.py": ""})
    problems = check_imports.check(tree, known_cycles=())
    assert any(p.startswith("era_extra  [layers: era_extra is in no layer") for p in problems)
