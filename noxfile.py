"""Test sessions of the era monorepo: one per domain, plus lint, workspace checks and bench.

`uv run nox` runs every session but `bench`. Each session installs, from `uv.lock` and into
its own environment under `.nox/`, only its own package and that package's `test` extra
(`uv sync --locked --package ...`), so a session sees exactly what a user of that one
package would have, and the pinned versions CI uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "workspace", "core", "control", "vision", "llm"]

PACKAGES = {
    "core": "era-core",
    "control": "era-control",
    "vision": "era-vision",
    "llm": "era-llm",
}


def sync(session: nox.Session, *args: str) -> None:
    """`uv sync --locked` into the session's environment (exact: removes anything else)."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


def package_tests(session: nox.Session, domain: str) -> None:
    package = PACKAGES[domain]
    sync(session, "--package", package, "--extra", "test")
    session.run(
        "pytest",
        f"packages/{package}",
        "--doctest-modules",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )


@nox.session
def core(session: nox.Session) -> None:
    """era-core on NumPy, array-api-strict, PyTorch and JAX (frameworks come from its test extra)."""
    package_tests(session, "core")


@nox.session
def control(session: nox.Session) -> None:
    """era-control (JAX/Flax/Optax, dm-control, Gymnasium MuJoCo); never torch."""
    package_tests(session, "control")


@nox.session
def vision(session: nox.Session) -> None:
    """era-vision (PyTorch, timm); never JAX."""
    package_tests(session, "vision")


@nox.session
def llm(session: nox.Session) -> None:
    """era-llm (PyTorch, transformers); never JAX."""
    package_tests(session, "llm")


@nox.session
def workspace(session: nox.Session) -> None:
    """Cross-package checks under tests/: dependency isolation read from uv.lock, repo contracts."""
    sync(session, "--only-group", "workspace-test")
    session.run("pytest", "tests", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff format --check and ruff check over the whole repository."""
    sync(session, "--only-group", "lint")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks under bench/ (not part of `uv run nox`); each prints a Markdown table.

    Arguments after `--` go to every script, e.g.
    `uv run nox -s bench -- --write-docs docs/benchmarks.md` rewrites their sections there,
    `uv run nox -s bench -- --quick` gives a short run.
    """
    sync(session, "--package", "era-core", "--extra", "test")
    for script in sorted(Path("bench").glob("core_*.py")):
        session.run("python", str(script), *session.posargs)
