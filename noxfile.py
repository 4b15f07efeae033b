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
nox.options.sessions = [
    "lint",
    "workspace",
    "core",
    "control",
    "vision",
    "llm",
    "llm-verl",
    "reproduce",
    "packaging",
]

PACKAGES = {
    "core": "era-core",
    "control": "era-control",
    "vision": "era-vision",
    "llm": "era-llm",
}
# A domain's app (apps/<domain>, a workspace member depending on its package) is tested in the
# domain's session: its `test` extra pulls the package's own `test` extra.
APPS = {"control": "era-control-app", "vision": "era-vision-app", "llm": "era-llm-app"}


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


def package_tests(session: nox.Session, domain: str, *, extras: tuple[str, ...] = ()) -> None:
    package = PACKAGES[domain]
    app = APPS.get(domain)
    extra_args = [arg for extra in ("test", *extras) for arg in ("--extra", extra)]
    sync(session, "--package", app or package, *extra_args)
    before_tests(session, domain)
    session.run(
        "pytest",
        f"packages/{package}",
        *([f"apps/{domain}"] if app else []),
        "--doctest-modules",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )


SHARED_WHEELS = Path(__file__).resolve().parent.parent / "shared" / "wheels"


def before_tests(session: nox.Session, domain: str) -> None:
    """Domain-specific installs that uv.lock cannot hold (wheels that are not on PyPI).

    HumanoidBench is not on PyPI: when `../shared/wheels/` holds its wheel, the control session
    installs it (its dependencies are already in the lock) so the `hb/` adapter is tested for
    real; otherwise that test skips and says why.
    """
    if domain == "control":
        wheels = sorted(SHARED_WHEELS.glob("humanoid_bench-*.whl"))
        if wheels:
            session.run_install(
                "uv",
                "pip",
                "install",
                "--python",
                session.virtualenv.location,
                "--no-deps",
                str(wheels[-1]),
                external=True,
            )
        else:
            session.log(f"no HumanoidBench wheel under {SHARED_WHEELS}: its adapter test skips")


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


@nox.session(name="llm-verl")
def llm_verl(session: nox.Session) -> None:
    """era-llm's verl integration inside verl's V1 trainer: a real TransferQueue on local Ray.

    era-llm with its `verl-core` extra, from uv.lock like every session: verl's `verl-core`
    extra (TransferQueue, tensordict >= 0.10) and the test tools. That extra is locked in a fork
    of its own (declared in conflict with `test` in packages/era-llm/pyproject.toml), because it
    needs packaging < 26 and tensordict 0.10 while the rest of the workspace keeps its pins.
    """
    sync(session, "--package", "era-llm", "--extra", "verl-core")
    session.run(
        "pytest",
        "packages/era-llm/tests/test_verl.py",
        "packages/era-llm/tests/test_verl_trainer.py",
        "packages/era-llm/tests/test_verl_engine.py",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_USAGE_STATS_ENABLED": "0"},
    )


@nox.session
def reproduce(session: nox.Session) -> None:
    """era-reproduce end to end at a smoke budget (all three domain apps installed)."""
    sync(session, "--package", "era-reproduce", "--extra", "all", "--extra", "test")
    session.run(
        "pytest",
        "apps/reproduce",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )


@nox.session(venv_backend="none")
def packaging(session: nox.Session) -> None:
    """Every wheel built, each domain package installed with era-core into a fresh virtual
    environment by plain pip, imported, its README example run, the forbidden framework absent.

    Needs nothing installed but uv and Python (tools/check_packaging.py is stdlib only); the
    third-party dependencies come from PyPI at the versions in uv.lock.
    """
    session.run("python", "tools/check_packaging.py", *session.posargs)


@nox.session
def workspace(session: nox.Session) -> None:
    """Cross-package checks under tests/: dependency isolation read from uv.lock, repo contracts."""
    sync(session, "--only-group", "workspace-test")
    session.run("pytest", "tests", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository, the import contracts, basedpyright over packages/.

    ruff and the import checker (tools/check_imports.py, stdlib only) need nothing installed.
    The type checker needs the third-party types each package uses, so this environment holds
    the lint group and the four packages with their test extras (which bring the optional
    integrations: TRL, verl, tensorboardX); configuration in the root pyproject.toml.
    """
    packages = [arg for package in PACKAGES.values() for arg in ("--package", package)]
    sync(session, "--group", "lint", *packages, "--extra", "test")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    session.run("python", "tools/check_imports.py")
    python = Path(session.bin) / "python"
    session.run("basedpyright", "--pythonpath", str(python), *session.posargs)


BENCH_ENVIRONMENTS = {
    # domain -> (package to sync, extras, dependency groups of that package)
    "core": ("era-core", ("test",), ()),
    "control": ("era-control-app", ("test",), ("bench",)),  # test: era-control[mjx] too
    "vision": ("era-vision-app", (), ()),
    "llm": ("era-llm-app", (), ()),
}


@nox.session
@nox.parametrize("domain", list(BENCH_ENVIRONMENTS))
def bench(session: nox.Session, domain: str) -> None:
    """Benchmarks under bench/ (not part of `uv run nox`); each prints a Markdown table.

    `uv run nox -s bench` runs every domain's scripts (`bench/<domain>_*.py`), each domain in its
    own environment; `uv run nox -s "bench(domain='vision')"` runs one domain. Arguments after
    `--` go to every script, e.g. `uv run nox -s bench -- --write-docs docs/benchmarks.md`
    rewrites their sections there, `uv run nox -s bench -- --quick` gives a short run.
    """
    package, extras, groups = BENCH_ENVIRONMENTS[domain]
    args = ["--package", package]
    args += [arg for extra in extras for arg in ("--extra", extra)]
    args += [arg for group in groups for arg in ("--group", group)]
    sync(session, *args)
    scripts = sorted(Path("bench").glob(f"{domain}_*.py"))
    if not scripts:
        session.skip(f"no bench/{domain}_*.py yet")
    for script in scripts:
        session.run("python", str(script), *session.posargs)
