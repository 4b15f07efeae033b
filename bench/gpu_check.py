"""One GPU check: every accelerator path of the three domains, measured in one call of < 9 minutes.

Run on a GPU machine (see docs/gpu.md for the wheels to carry and the exact command)::

    python3 bench/gpu_check.py --out DIR [--only env,control,vision,llm]

or on any CPU, at toy sizes, to check the script itself (what CI does)::

    python3 bench/gpu_check.py --out DIR --dry-run [--only ...]

Sections (each a module ``bench/gpu_check_<section>.py``, run in its own process with its own
time budget, `gpu_check_common.BUDGET_S`; one that overruns is stopped, recorded as ``timeout``
with what it measured so far, and the next one starts):

1. ``env``: GPU name, driver, torch / JAX versions, and that both see the device;
2. ``control``: SAC and SAC-ERA updates/s (2x512, batch 256, synthetic replay on the device),
   ERA's overhead per update, 1 / 8 / 32 vmapped seeds, and FastTD3 / FastSAC-ERA at their
   large batch when era_control registers them;
3. ``vision``: ResNet-50 and ViT train steps, plain vs ERA (paper, exact), bf16 autocast +
   channels-last + ``torch.compile``: step time and peak memory ratios;
4. ``llm``: a GRPO(+ERA) step of era-llm-train's tiny model with the HF rollout, then
   `era_llm.ops.token_logprobs` / `token_logprobs_from_hidden` at 16 x 4096 x 152k bf16 vs the
   naive path and the fused kernels present (Liger, Cut Cross-Entropy): time and peak memory.

Our packages run from source: the script puts ``bench/``, ``packages/*/src`` and ``apps/*/src``
on ``sys.path`` itself (plus metadata stubs for the members that are not installed), on the
machine's own torch and JAX. Every section records the third-party modules our code imported
and fails the import check on any outside its list (`gpu_check_common.SECTION_IMPORTS`).

Output in DIR (at most 8 files): ``<section>.json`` for every section, ``<section>.md`` for
every section but ``env``, and ``gpu-check.md`` (the environment table, then the summary),
whose summary table is also printed last. Exit status: 0 when every selected section ran and
passed its import check, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_check_common as common

SCRIPT = Path(__file__).resolve()
LOG_TAIL_LINES = 40
PRINT_TAIL_LINES = 12


def parse_sections(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in common.SECTIONS]
    if not names or bad:
        raise ValueError(
            f"--only {value!r}: unknown section {', '.join(map(repr, bad)) or '(none)'}; "
            f"valid: {','.join(common.SECTIONS)}"
        )
    return [s for s in common.SECTIONS if s in names]


def parse_budget(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if name not in common.SECTIONS or not value > 0:
            raise ValueError(
                f"--budget {item!r}: expected SECTION=SECONDS with SECTION in "
                f"{','.join(common.SECTIONS)} and SECONDS > 0"
            )
        out[name] = value
    return out


def child_env(section: str, dry_run: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("PYTHONWARNINGS", "ignore")
    if section == "env":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # torch and JAX share the GPU there
    if dry_run:
        env.update(
            JAX_PLATFORMS="cpu",
            CUDA_VISIBLE_DEVICES="",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            # one thread, and XLA's CPU compiler at its cheapest: compilation is most of a
            # dry run's time, the speed of the compiled code does not matter there
            XLA_FLAGS="--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0 "
            "--xla_llvm_disable_expensive_passes=true",
        )
    return env


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the section's process group, then SIGKILL what is left after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_section(section: str, out: Path, dry_run: bool, timeout: float, logs: Path) -> None:
    """Run one section in its own process group, stop it after ``timeout`` s, and complete
    its JSON with status, times, exit code and the tail of its log."""
    (out / f"{section}.json").unlink(missing_ok=True)
    log_path = logs / f"{section}.log"
    cmd = [sys.executable, str(SCRIPT), "--section", section, "--out", str(out)]
    cmd += ["--dry-run"] if dry_run else []
    print(f"== {section}: budget {timeout:.0f} s", flush=True)
    start, cpu_start = time.perf_counter(), children_cpu_s()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(section, dry_run),
            cwd=common.ROOT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop(proc)
            timed_out = True
    wall, cpu = time.perf_counter() - start, children_cpu_s() - cpu_start
    tail = log_path.read_text(errors="replace").splitlines()
    report = common.Report.load(out, section, dry_run)
    if timed_out:
        report.status = "timeout"
        report.notes.append(f"stopped after its budget of {timeout:.0f} s; results so far above")
    elif proc.returncode != 0 and report.status == "running":  # died without a word
        report.status = "failed"
        report.extra.setdefault("error", "\n".join(tail[-PRINT_TAIL_LINES:]))
    elif proc.returncode != 0 and report.status == "ok":
        report.notes.append(f"the process exited with {proc.returncode} after saving")
    report.extra.update(
        wall_s=round(wall, 1),
        cpu_s=round(cpu, 1),
        timeout_s=round(timeout, 3),
        returncode=proc.returncode,
        log_tail=tail[-LOG_TAIL_LINES:],
    )
    report.save()
    for line in tail[-PRINT_TAIL_LINES:]:
        print(f"   {section}| {line}")
    print(f"== {section}: {report.status} in {wall:.1f} s ({cpu:.1f} s CPU)", flush=True)


def section_main(section: str, out: Path, dry_run: bool) -> int:
    """The section's own process: record imports, run ``gpu_check_<section>.run``, save."""
    recorder = common.ImportRecorder()
    recorder.install()
    common.use_source(common.metadata_stubs())
    report = common.Report(section, out, dry_run)
    start = time.perf_counter()
    try:
        module = __import__(f"gpu_check_{section}")
        module.run(report)
        report.status = "ok"
    except BaseException:  # a section's failure is a result; the driver goes on
        report.status = "failed"
        report.extra["error"] = traceback.format_exc(limit=8)
        traceback.print_exc()
    imports = recorder.summary(section)
    report.extra["imports"] = imports
    if imports["disallowed"]:
        report.notes.append(
            "import check failed: imported outside this section's list: "
            + ", ".join(imports["disallowed"])
        )
    report.extra["section_s"] = round(time.perf_counter() - start, 1)
    report.save()
    return 0 if report.status == "ok" else 1


def commit() -> str:
    stamp = common.ROOT / common.BUNDLE_DIR / "commit.txt"
    if stamp.exists():
        return stamp.read_text().strip()
    try:
        proc = subprocess.run(
            ["git", "-C", str(common.ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def summary_rows(out: Path, sections: list[str], dry_run: bool) -> list[list[str]]:
    rows = []
    for section in sections:
        report = common.Report.load(out, section, dry_run)
        imports = report.extra.get("imports")
        check = "n/a" if imports is None else ("ok" if not imports["disallowed"] else "FAILED")
        rows.append(
            [
                section,
                report.status,
                common.fmt(report.extra.get("wall_s")),
                common.fmt(report.extra.get("timeout_s"), ".0f"),
                check,
                report.headline.replace("|", "/") or "—",
            ]
        )
    return rows


def write_summary(out: Path, sections: list[str], dry_run: bool, wall: float) -> tuple[str, bool]:
    header = ["section", "status", "wall s", "budget s", "imports", "headline"]
    table = common.Table("", header, summary_rows(out, sections, dry_run))
    ok = all(r[1] == "ok" and r[4] in ("ok", "n/a") for r in table.rows)
    lines = [
        "# GPU check" + (" (dry run: toy sizes on the CPU, no GPU figure)" if dry_run else ""),
        "",
        f"{common.now()}; commit {commit()}; total wall {wall:.1f} s of "
        f"{common.TOTAL_BUDGET_S:.0f} s; `python3 bench/gpu_check.py "
        + " ".join(sys.argv[1:]).replace(str(out), "OUT")
        + "`.",
        "",
    ]
    if "env" in sections:
        env = common.Report.load(out, "env", dry_run)
        lines += [*env.markdown().splitlines(), ""]
    lines += ["## Summary", "", *table.markdown(), ""]
    others = [s for s in sections if s != "env"]
    if others:
        lines.append("Details: " + ", ".join(f"`{s}.md` / `{s}.json`" for s in others) + ".")
    text = "\n".join(lines).rstrip() + "\n"
    (out / "gpu-check.md").write_text(text)
    return "\n".join(table.markdown()), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (<= 8 files)")
    parser.add_argument(
        "--only", default=",".join(common.SECTIONS), help="comma-separated sections (%(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU (CI)")
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="SECTION=SECONDS",
        help="override a section's time budget",
    )
    parser.add_argument("--section", choices=common.SECTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.section:
        return section_main(args.section, args.out, args.dry_run)
    try:
        sections = parse_sections(args.only)
        defaults = (
            dict.fromkeys(common.SECTIONS, common.DRY_RUN_BUDGET_S)
            if args.dry_run
            else common.BUDGET_S
        )
        budgets = {**defaults, **parse_budget(args.budget)}
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {str(args.out)!r}: not a directory")
    except ValueError as err:
        print(f"gpu_check.py: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    logs = Path(tempfile.mkdtemp(prefix="gpu-check-logs-"))
    try:
        for section in sections:
            left = common.TOTAL_BUDGET_S - (time.perf_counter() - start)
            timeout = budgets[section] if args.dry_run else min(budgets[section], left)
            if not args.dry_run and left < 1:
                report = common.Report(section, args.out, args.dry_run, status="skipped")
                report.notes.append("not run: the script's total budget was spent")
                report.save()
                continue
            run_section(section, args.out, args.dry_run, timeout, logs)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    table, ok = write_summary(args.out, sections, args.dry_run, time.perf_counter() - start)
    print(f"\nGPU check{' (dry run)' if args.dry_run else ''}: {args.out}/gpu-check.md\n")
    print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
