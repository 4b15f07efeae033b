"""Collect what `bench/gpu_check.py` needs on the GPU machine into ``.device-bundle/``.

The GPU machine has torch, JAX, timm, transformers and the rest of its image, no package
registry and no network. This gathers the few wheels our code needs there beyond that image
(`bench/gpu_check_common.CARRIED`: ``array-api-compat``, which era_core imports, at uv.lock's
version; and, unless ``--no-fused``, the optional ``threadpoolctl`` and the fused-kernel libraries ``liger-kernel`` and
``cut-cross-entropy`` that the llm section measures when present), all pure-Python wheels
downloaded with ``pip download --no-deps`` for CPython 3.12 on x86-64 Linux; writes the
commit being checked to ``.device-bundle/commit.txt``; checks that the working tree that
travels (tracked and untracked-not-ignored files, plus the bundle) is within the device's
64 MiB; and prints the ``carry`` list and the command line to give the device tool.

    python3 tools/make_device_bundle.py                # download, check, print
    python3 tools/make_device_bundle.py --print-only   # check and print what is there

``.device-bundle/`` is ignored by git (.gitignore) and travels only when named in ``carry``.
Exit status: 0 when the bundle is complete and within the limit, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check_common as common  # noqa: E402

LIMIT_BYTES = 64 * 2**20
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
SITE = "/tmp/site"  # where the wheels are installed on the device machine


def wanted(with_fused: bool) -> list[tuple[str, str, bool]]:
    return [r for r in common.carried_requirements() if r[2] or with_fused]


def wheel_name(dist: str) -> str:
    return dist.replace("-", "_")


def present(wheels: Path, dist: str, version: str) -> Path | None:
    found = sorted(wheels.glob(f"{wheel_name(dist)}-{version}-*.whl"))
    return found[0] if found else None


def download(wheels: Path, requirements: list[tuple[str, str, bool]]) -> None:
    todo = [f"{d}=={v}" for d, v, _ in requirements if present(wheels, d, v) is None]
    if not todo:
        return
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(wheels)]
    cmd += [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([*cmd, *todo], check=True)


def travelling_bytes(bundle: Path) -> int:
    """Bytes of the tracked and untracked-not-ignored files, plus the bundle folder."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = {ROOT / name.decode() for name in listed if name}
    files |= {p for p in bundle.rglob("*") if p.is_file()}
    return sum(p.stat().st_size for p in files if p.is_file())


def write_commit(bundle: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
        capture_output=True,
        text=True,
        check=False,
    )
    stamp = proc.stdout.strip() or "unknown"
    (bundle / "commit.txt").write_text(stamp + "\n")
    return stamp


def device_command(bundle_name: str) -> str:
    install = (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
        f"--target {SITE} {bundle_name}/wheels/*.whl && export PYTHONPATH={SITE} || exit;"
    )
    return f"{install} PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-only", action="store_true", help="no download")
    parser.add_argument("--no-fused", action="store_true", help="only the required wheels")
    args = parser.parse_args(argv)
    bundle = ROOT / common.BUNDLE_DIR
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    requirements = wanted(not args.no_fused)
    if not args.print_only:
        try:
            download(wheels, requirements)
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"make_device_bundle: pip download failed: {err}", file=sys.stderr)
            return 1
    keep = {present(wheels, d, v) for d, v, _ in requirements} - {None}
    for stale in set(wheels.glob("*.whl")) - keep:  # one version of each: pip refuses two
        stale.unlink()
    missing = [f"{d}=={v}" for d, v, req in requirements if req and present(wheels, d, v) is None]
    stamp = write_commit(bundle)
    size = travelling_bytes(bundle)
    print(f"bundle {bundle.relative_to(ROOT)}/ (commit {stamp}):")
    for dist, version, required in requirements:
        path = present(wheels, dist, version)
        what = f"{path.stat().st_size / 1024:.0f} KiB" if path else "MISSING"
        print(f"  {dist}=={version} ({'required' if required else 'optional'}): {what}")
    print(f"working tree that travels: {size / 2**20:.1f} MiB of {LIMIT_BYTES / 2**20:.0f} MiB")
    print(f"\ncarry: {json.dumps([common.BUNDLE_DIR])}")
    print("timeout_s: 600")
    print(f"command: {device_command(common.BUNDLE_DIR)}")
    if missing:
        print(f"make_device_bundle: missing required wheels: {', '.join(missing)}", file=sys.stderr)
        return 1
    if size > LIMIT_BYTES:
        print("make_device_bundle: over the 64 MiB the device takes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
