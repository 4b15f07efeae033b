"""GPU check, section ``env``: the machine, the GPU and driver, and what torch and JAX see.

Each framework runs one small computation on its default device, so "sees the GPU" means a
kernel ran there. On a GPU run (no ``--dry-run``) the section fails unless both torch and JAX
put their default device on the GPU; the dry run records whatever the environment has.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from gpu_check_common import Report

VERSIONS = (
    "torch",
    "jax",
    "jaxlib",
    "jax-cuda13-plugin",
    "flax",
    "optax",
    "timm",
    "transformers",
    "triton",
    "numpy",
    "array-api-compat",
    "liger-kernel",
    "cut-cross-entropy",
)


def nvidia_smi() -> dict[str, str]:
    query = "name,driver_version,memory.total,clocks.max.sm"
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"nvidia-smi: {err}"}
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"error": f"nvidia-smi exit {proc.returncode}: {proc.stderr.strip()[:200]}"}
    first = proc.stdout.strip().splitlines()[0]
    keys = ("name", "driver", "memory", "max_sm_clock")
    return dict(zip(keys, (v.strip() for v in first.split(",")), strict=False))


def torch_info(dry_run: bool) -> dict:
    try:
        import torch
    except ImportError as err:
        return {"importable": False, "error": str(err)}
    info: dict = {"version": torch.__version__, "cuda": torch.version.cuda}
    info["cuda_available"] = torch.cuda.is_available()
    device = torch.device("cuda" if info["cuda_available"] else "cpu")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device=torch.cuda.get_device_name(device),
            capability=".".join(map(str, torch.cuda.get_device_capability(device))),
            multiprocessors=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    n = 64 if dry_run else 4096
    a = torch.randn(n, n, device=device)
    info["matmul_ok"] = bool(torch.isfinite((a @ a).sum()).item())
    info["ran_on"] = device.type
    return info


def jax_info() -> dict:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as err:
        return {"importable": False, "error": str(err)}
    device = jax.devices()[0]
    x = jax.device_put(jnp.arange(1024.0), device)
    value = float(jax.jit(lambda v: (v * v).sum())(x))
    return {
        "version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        "sum_ok": value == float(sum(i * i for i in range(1024))),
        "ran_on": device.platform,
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run(report: Report) -> None:
    gpu = nvidia_smi()
    host = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    report.results.update(gpu=gpu, host=host, versions=versions())
    report.save()
    report.results["torch"] = torch_info(report.dry_run)
    report.save()
    report.results["jax"] = jax_info()
    tinfo, jinfo = report.results["torch"], report.results["jax"]
    table = report.table("Environment", ["what", "value"])
    table.rows += [
        ["GPU (nvidia-smi)", gpu.get("name", gpu.get("error", "?"))],
        ["driver", gpu.get("driver", "n/a")],
        ["GPU memory", gpu.get("memory", "n/a")],
        ["host", f"Python {host['python']}, {host['cpus']} CPUs, {host['platform']}"],
        [
            "torch",
            f"{tinfo.get('version', 'not importable')} (CUDA {tinfo.get('cuda')}); "
            f"ran on {tinfo.get('ran_on', '—')} {tinfo.get('device', '')}".rstrip(),
        ],
        [
            "JAX",
            f"{jinfo.get('version', 'not importable')}; ran on {jinfo.get('ran_on', '—')} "
            f"({', '.join(jinfo.get('devices', []))})",
        ],
        [
            "versions",
            ", ".join(f"{k} {v}" for k, v in report.results["versions"].items() if v),
        ],
        [
            "absent",
            ", ".join(k for k, v in report.results["versions"].items() if not v) or "—",
        ],
    ]
    torch_gpu, jax_gpu = tinfo.get("ran_on") == "cuda", jinfo.get("ran_on") == "gpu"
    report.headline = (
        f"{tinfo.get('device') or gpu.get('name', 'no GPU')}, driver {gpu.get('driver', 'n/a')}; "
        f"torch {tinfo.get('version', '—')} on {tinfo.get('ran_on', '—')}, "
        f"JAX {jinfo.get('version', '—')} on {jinfo.get('ran_on', '—')}"
    )
    report.save()
    if not report.dry_run and not (torch_gpu and jax_gpu):
        raise RuntimeError(
            f"the GPU is not seen by both frameworks: torch on {tinfo.get('ran_on')}, "
            f"JAX on {jinfo.get('ran_on')}"
        )
