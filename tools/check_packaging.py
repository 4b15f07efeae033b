"""Install each domain package from its wheel into a fresh virtual environment with plain pip.

`python tools/check_packaging.py [--domains core,control,vision,llm] [--work DIR]` (run by
`nox -s packaging`) does what the README's install lines tell a user to do, once per domain:

1. `uv build --all-packages --out-dir DIR/dist` builds every wheel of the workspace;
2. `python -m venv DIR/venv-<domain>` makes an empty environment, and its own `pip` installs
   the domain package as the README says, `pip install --find-links DIR/dist era-<domain>`
   (era-core comes from the built wheels as its dependency; third-party dependencies come
   from PyPI, held to the versions in `uv.lock` by a constraints file from `uv export`; the
   machine's own pip configuration, local wheel folders and caps are ignored);
3. the environment imports the package, runs the README's example for it, and checks that
   the framework the package must never pull is absent: no `jax` next to era-vision or
   era-llm, no `torch` next to era-control, neither next to era-core.

Each check prints one line; the exit status is 1 when any fails. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# domain -> (distribution, import name, frameworks that must be absent, README heading)
DOMAINS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "core": ("era-core", "era_core", ("jax", "torch"), "## era-core"),
    "control": ("era-control", "era_control", ("torch",), "## Continuous control"),
    "vision": ("era-vision", "era_vision", ("jax",), "## Image classification"),
    "llm": ("era-llm", "era_llm", ("jax",), "## LLM RL"),
}

FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def readme_example(heading: str) -> str:
    """The first Python block of the README section whose heading starts with `heading`."""
    sections = re.split(r"^(?=## )", (ROOT / "README.md").read_text(), flags=re.M)
    section = next((s for s in sections if s.startswith(heading)), "")
    block = FENCE.search(section)
    if block is None:
        raise SystemExit(f"README.md: no Python example under a heading {heading!r}")
    return block.group(1)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    shown = " ".join(arg if "\n" not in arg else "<script>" for arg in cmd)
    print("+", shown, flush=True)
    return subprocess.run(cmd, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def build_wheels(dist: Path) -> None:
    run(["uv", "build", "--all-packages", "--wheel", "--quiet", "--out-dir", str(dist)])


def constraints(distribution: str, path: Path) -> Path:
    """The locked versions of `distribution`'s third-party dependencies, as pip constraints."""
    exported = run(
        [
            "uv",
            "export",
            "--locked",
            "--package",
            distribution,
            "--no-emit-workspace",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--no-dev",
            "--format",
            "requirements-txt",
        ],
        cwd=ROOT,
        capture_output=True,
    ).stdout
    path.write_text(exported)
    return path


PROBE = """
import importlib.util, sys
module, forbidden = sys.argv[1], sys.argv[2:]
__import__(module)
present = [name for name in forbidden if importlib.util.find_spec(name) is not None]
if present:
    sys.exit(f"{module}: installed next to {', '.join(present)}, which it must not pull")
print(f"{module} imports; absent as required: {', '.join(forbidden)}")
"""


# pip settings of the machine that would make this install differ from a user's: local wheel
# folders and indexes (e.g. a CPU-only torch next to a torchvision built for PyPI's CUDA torch),
# and caps. Dropped for pip, so that it resolves from PyPI and our constraints alone.
MACHINE_PIP_SETTINGS = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX")


def pip_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MACHINE_PIP_SETTINGS}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def check_domain(domain: str, dist: Path, work: Path) -> list[str]:
    """Install, import, run the example, check the forbidden frameworks; failures as lines."""
    distribution, module, forbidden, heading = DOMAINS[domain]
    env = work / f"venv-{domain}"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = str(env / "bin" / "python")
    pins = constraints(distribution, work / f"constraints-{domain}.txt")
    failures = []
    try:
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run(
            [*pip, "--no-compile", "--find-links", str(dist), "-c", str(pins), distribution],
            env=pip_environment(),
        )
        run([python, "-c", PROBE, module, *forbidden])
        run([python, "-c", readme_example(heading)], cwd=work)
    except subprocess.CalledProcessError as error:
        failures.append(
            f"{domain}: `{' '.join(map(str, error.cmd))[:120]}` exited {error.returncode}"
        )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated subset")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args(argv)
    domains = [d for d in args.domains.split(",") if d]
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        print(f"--domains: unknown {unknown}; valid: {', '.join(DOMAINS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="era-packaging-") as scratch:
        work = (args.work or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        dist = work / "dist"
        build_wheels(dist)
        failures = [line for domain in domains for line in check_domain(domain, dist, work)]
    for line in failures:
        print("FAILED", line)
    print(f"packaging: {len(domains) - len({f.split(':')[0] for f in failures})}/{len(domains)} ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
