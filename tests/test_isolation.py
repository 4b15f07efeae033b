"""Dependency closure of each package, read from the committed uv.lock.

The contract (docs/architecture.md): era-core pulls neither torch nor jax; era-control never
pulls torch; era-vision and era-llm never pull jax. The closure follows every dependency
edge in the lock (all platforms and Python versions, extras of dependencies included), so it
is what `pip install <package>` could bring in anywhere, not only on this machine.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "era-core": {"torch", "jax", "jaxlib", "tensorflow"},
    "era-control": {"torch"},
    "era-vision": {"jax", "jaxlib"},
    "era-llm": {"jax", "jaxlib"},
}
# What each package must pull, so the closure walk is known to reach the framework stacks.
REQUIRED = {
    "era-core": {"numpy", "array-api-compat"},
    "era-control": {"era-core", "jax", "flax", "optax", "dm-control", "mujoco", "gymnasium"},
    "era-vision": {"era-core", "torch", "timm"},
    "era-llm": {"era-core", "torch", "transformers"},
}
# era-core may pull nothing but these (and what they pull, which is nothing).
CORE_ALLOWED = {"era-core", "numpy", "array-api-compat"}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _load_lock():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    deps: dict[str, set[tuple[str, tuple[str, ...]]]] = defaultdict(set)
    extras: dict[tuple[str, str], set[tuple[str, tuple[str, ...]]]] = defaultdict(set)
    for package in lock["package"]:
        name = _normalise(package["name"])
        for dep in package.get("dependencies", []):
            deps[name].add((_normalise(dep["name"]), tuple(dep.get("extra", ()))))
        for extra, items in package.get("optional-dependencies", {}).items():
            for dep in items:
                extras[(name, extra)].add((_normalise(dep["name"]), tuple(dep.get("extra", ()))))
    return deps, extras


DEPS, EXTRAS = _load_lock()


def closure(package: str, with_extras: tuple[str, ...] = ()) -> set[str]:
    """Every package name reachable from ``package`` (with ``with_extras``) in the lock."""
    seen: set[str] = set()
    todo = [(package, with_extras)]
    visited_edges: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, requested = todo.pop()
        if (name, requested) in visited_edges:
            continue
        visited_edges.add((name, requested))
        seen.add(name)
        edges = set(DEPS.get(name, ()))
        for extra in requested:
            edges |= EXTRAS.get((name, extra), set())
        todo.extend(edges)
    return seen


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_closure_excludes_forbidden_frameworks(package):
    pulled = closure(package)
    assert REQUIRED[package] <= pulled, f"{package} should pull {REQUIRED[package] - pulled}"
    assert not pulled & FORBIDDEN[package], f"{package} pulls {sorted(pulled & FORBIDDEN[package])}"


def test_era_core_pulls_only_numpy_and_array_api_compat():
    assert closure("era-core") == CORE_ALLOWED


@pytest.mark.parametrize("package", ["era-control", "era-vision", "era-llm"])
def test_optional_extras_keep_the_framework_rule(package):
    """Optional extras other than the test extra keep the rule too (e.g. era-llm[trl])."""
    for (name, extra), _ in EXTRAS.items():
        if name != package or extra == "test":
            continue
        pulled = closure(package, (extra,))
        assert not pulled & FORBIDDEN[package], (
            f"{package}[{extra}] pulls {pulled & FORBIDDEN[package]}"
        )


def test_era_core_test_extra_brings_the_backends_on_purpose():
    """The frameworks are era-core *test* extras, so `nox -s core` can test all backends."""
    pulled = closure("era-core", ("test",))
    assert {"torch", "jax", "array-api-strict", "hypothesis", "pytest"} <= pulled


def test_closure_walk_detects_a_forbidden_edge():
    """The checker itself can fail: timm pulls torch, so anything pulling timm pulls torch."""
    assert "torch" in closure("timm")
    assert "jax" in closure("flax")
