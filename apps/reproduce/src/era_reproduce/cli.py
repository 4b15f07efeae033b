"""`era-reproduce`: one command for the paper's three domains, and a report next to its numbers.

    uv run era-reproduce --quick                 # CPU, no downloads, 7.1 min idle 2-core, all domains
    uv run era-reproduce --quick --domain vision # one domain
    uv run era-reproduce --full --domain vision --preset table1-cifar10-aug --vision-data PATH
    uv run era-reproduce --quick --write-docs docs/reproduce.md --figure docs/figures/reproduce-control.png

Each experiment runs as its own process (`python -m <app>`), logging to `OUT/logs/`; a domain
that fails does not stop the others, its report section says what failed, and the exit code is
non-zero. The report is `OUT/report.md`, with PNG figures under `OUT/figures/` and the raw CSVs
under each run's directory. `--write-docs FILE` replaces FILE's generated block (between its
``reproduce:measured`` markers) with the report's sections, `--figure PNG` writes the first
figure there too (the README's), both only when every domain succeeded.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from era_core.runlog import atomic_write_text
from era_core.threads import usable_cores

from . import docs, plans
from .report import SPREAD, Provenance, render
from .runner import execute, module_available

DOMAINS = ("control", "vision", "llm")


def gpu_present() -> str | None:
    """The first GPU's name from nvidia-smi, or None (framework-free on purpose)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return out.splitlines()[0] if out else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="era-reproduce",
        description="Reproduce the ERA paper's three domains and write a report beside its numbers.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small real runs on CPU (default)")
    mode.add_argument(
        "--full",
        action="store_true",
        help="the paper-scale recipes (GPU, real data; default: --quick)",
    )
    parser.add_argument(
        "--domain",
        choices=DOMAINS,
        action="append",
        help="run only this domain (repeatable); default: all three",
    )
    parser.add_argument(
        "--preset",
        help="with --full: the domain's paper preset to run (default: each domain's paper preset)",
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default runs/reproduce-<timestamp>)"
    )
    parser.add_argument(
        "--vision-data", type=Path, help="with --full: CIFAR-10 / ImageNet folder (default: none)"
    )
    parser.add_argument(
        "--llm-model", type=Path, help="with --full: local model checkpoint (default: none)"
    )
    parser.add_argument(
        "--llm-data", type=Path, help="with --full: training data (jsonl/parquet; default: none)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="per-run time limit in seconds (default: none)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs side by side (default: the usable CPU cores with --quick, whose runs use one "
        "thread each, so the numbers do not depend on N; 1 with --full)",
    )
    parser.add_argument(
        "--write-docs",
        type=Path,
        metavar="FILE",
        help="replace FILE's block between its reproduce:measured markers with this run's "
        "sections (e.g. docs/reproduce.md; default: none)",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        metavar="PNG",
        help="also write the first section's first figure to PNG (the README's; default: none)",
    )
    # Test-only: an even smaller budget than --quick (also ERA_REPRODUCE_BUDGET=smoke).
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    domains = list(dict.fromkeys(args.domain or DOMAINS))
    full = bool(args.full)
    if args.preset and not full:
        parser.error("--preset needs --full (the quick runs have fixed budgets)")
    budget = "full" if full else plans.quick_budget_name(args.smoke)
    out = args.out or Path("runs") / f"reproduce-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"argument --jobs: {args.jobs} is not a number of runs; give 1 or more")
    jobs = args.jobs or (1 if full else usable_cores())
    if (out / "report.md").exists():
        parser.error(f"--out {out} already holds a report; choose a new directory")
    for problem in (
        docs.check_docs(args.write_docs) if args.write_docs else None,
        docs.check_figure(args.figure) if args.figure else None,
    ):
        if problem:
            parser.error(problem)

    if full:
        missing = plans.full_prerequisites(domains, args, gpu=gpu_present())
        if missing:
            print("era-reproduce --full cannot start; missing:", file=sys.stderr)
            for line in missing:
                print(f"  - {line}", file=sys.stderr)
            return 2

    runs_by_domain = {}
    for domain in domains:
        runs_by_domain[domain] = plans.runs_for(domain, out / domain, budget=budget, args=args)
    for domain in domains:
        app = plans.APP_MODULES[domain]
        if not module_available(app):
            print(
                f"[{domain}] {app} is not installed (install it with `{plans.INSTALL[domain]}`); "
                "its section will say so",
                file=sys.stderr,
            )
    out.mkdir(parents=True, exist_ok=True)
    provenance = Provenance.collect(gpu_present(), jobs=jobs)  # before any run writes a file
    start = time.perf_counter()
    all_runs = [run for domain in domains for run in runs_by_domain[domain]]
    results = execute(all_runs, out / "logs", timeout_s=args.timeout, jobs=jobs)
    sections = []
    for domain in domains:
        mine = [r for r in results if r.run.domain == domain]
        sections.append(plans.summarize(domain, mine, out, budget=budget))
    total = time.perf_counter() - start
    text = render(sections, out, mode=budget, total_wall_s=total, provenance=provenance)
    atomic_write_text(out / "report.md", text)
    ok = all(s.ok for s in sections)
    print()
    print(plans.summary_table(sections))
    print(f"\n({SPREAD}; total wall time {total / 60:.1f} min)")
    print(f"report: {out / 'report.md'}")
    if args.write_docs or args.figure:
        if not ok:
            print("docs not updated: a domain failed (see the report)", file=sys.stderr)
        else:
            command = shlex.join(
                ["uv", "run", "era-reproduce", *(sys.argv[1:] if argv is None else argv)]
            )
            target = args.write_docs
            if target is None:  # --figure alone: the figure only
                written = [args.figure] if _copy_first_figure(sections, args.figure) else []
            else:
                written = docs.write(
                    target, sections, command=command, mode=budget, total_wall_s=total,
                    provenance=provenance, figure=args.figure,
                )  # fmt: skip
            for path in written:
                print(f"wrote {path}")
    return 0 if ok else 1


def _copy_first_figure(sections: list, figure: Path) -> bool:
    for section in sections:
        if section.figures:
            shutil.copyfile(section.figures[0], figure)
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
