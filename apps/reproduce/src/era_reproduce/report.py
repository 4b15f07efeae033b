"""The report: per domain, our numbers beside the paper's, with budgets, hardware and commands."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path

from .runner import RunResult


def paper_numbers() -> dict:
    """The paper's tables and claims, from the package's ``paper.toml``."""
    return tomllib.loads(resources.files("era_reproduce").joinpath("paper.toml").read_text())


def markdown_table(columns: list[str], rows: list[list]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "n/a" if not math.isfinite(value) else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def pm(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


SPREAD = "mean ± sample std (n − 1) over seeds"
"""The report's one spread convention (the apps' summaries and figures use the same one)."""

# Distributions whose versions the provenance lists (absent ones are said to be absent).
VERSIONED = (
    "era-core", "era-control", "era-vision", "era-llm", "era-control-app", "era-vision-app",
    "era-llm-app", "era-reproduce", "jax", "jaxlib", "flax", "optax", "torch", "timm",
    "transformers", "numpy", "mujoco",
)  # fmt: skip
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS", "MUJOCO_GL",
)  # fmt: skip


def seed_values(values: list[float], digits: int = 2) -> str:
    """Every seed's value, in seed order: ``"a, b, c"``."""
    return ", ".join("n/a" if not math.isfinite(v) else f"{v:.{digits}f}" for v in values)


def pm_seeds(values: list[float], digits: int = 2) -> str:
    """``mean ± std (seeds: a, b)``: the aggregate and every seed beside it."""
    return f"{pm(values, digits)} (seeds: {seed_values(values, digits)})"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    """One line: machine, CPU model and cores, Python (no framework imported)."""
    return (
        f"{platform.machine()} {platform.system()}, {cpu_model()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}"
    )


def git_state(start: Path | None = None) -> str:
    """``<commit> (clean)`` / ``<commit> (dirty: N paths changed)`` of the repository holding
    ``start`` (default: this package, else the working directory), or why there is none."""
    if shutil.which("git") is None:
        return "unknown (git is not installed)"
    for where in [start] if start else [Path(__file__).resolve().parent, Path.cwd()]:
        try:
            commit = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()  # fmt: skip
            status = subprocess.run(
                ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.splitlines()  # fmt: skip
        except (subprocess.SubprocessError, OSError):
            continue
        return f"{commit} ({f'dirty: {len(status)} tracked paths changed' if status else 'clean'})"
    return "unknown (not run from a git checkout)"


def versions() -> dict[str, str]:
    """The installed version of every distribution in :data:`VERSIONED`."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _thread_settings(value: object, prefix: str = "", inside: bool = False) -> dict[str, object]:
    """The entries of a run's config whose key (or an enclosing key) names a thread setting."""
    found: dict[str, object] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            name, named = f"{prefix}{key}", inside or "thread" in str(key).lower()
            if isinstance(item, dict):
                found.update(_thread_settings(item, f"{name}.", named))
            elif named:
                found[name] = item
    return found


def run_threads(run_dirs: list[Path]) -> dict[str, dict[str, object]]:
    """Per run directory (every ``config.json`` under it), the thread settings it recorded."""
    out: dict[str, dict[str, object]] = {}
    for run_dir in run_dirs:
        for config in sorted(Path(run_dir).rglob("config.json")):
            try:
                found = _thread_settings(json.loads(config.read_text()))
            except (OSError, ValueError):
                continue
            if found:
                out[str(config.parent)] = found
    return out


@dataclass
class Provenance:
    """Where and with what a report's numbers were made (recorded before the first run)."""

    git: str
    versions: dict[str, str]
    hardware: str
    device: str
    threads: dict[str, str]
    jobs: int = 1  # runs side by side (era-reproduce --jobs)

    @classmethod
    def collect(cls, device: str | None, jobs: int = 1) -> Provenance:
        threads = {name: os.environ.get(name, "unset") for name in THREAD_VARIABLES}
        if hasattr(os, "sched_getaffinity"):
            threads["usable CPU cores"] = str(len(os.sched_getaffinity(0)))
        return cls(
            git=git_state(),
            versions=versions(),
            hardware=hardware(),
            device=device or "CPU only (no CUDA GPU found by nvidia-smi)",
            threads=threads,
            jobs=jobs,
        )

    def markdown(self, run_threads: dict[str, dict[str, object]], out: Path) -> list[str]:
        lines = [
            "## Provenance",
            "",
            f"* git commit: {self.git}",
            f"* machine: {self.hardware}",
            f"* device: {self.device}",
            "* thread settings of this process: "
            + ", ".join(f"{k}={v}" for k, v in self.threads.items()),
            f"* runs side by side: {self.jobs} (`--jobs`)",
        ]
        groups: dict[tuple[str, str], list[str]] = {}  # (domain, settings) -> run dirs
        for run_dir, found in run_threads.items():
            rel = os.path.relpath(run_dir, out)
            settings = ", ".join(f"{k}={v}" for k, v in found.items())
            groups.setdefault((Path(rel).parts[0], settings), []).append(rel)
        for (domain, settings), dirs in groups.items():
            where = f"`{dirs[0]}`" if len(dirs) == 1 else f"the {len(dirs)} {domain} runs"
            lines.append(f"* threads recorded by {where}: {settings}")
        lines.append("* versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        return [*lines, ""]


@dataclass
class Section:
    """What one domain contributes to the report."""

    domain: str
    title: str
    results: list[RunResult]
    budget: str = ""
    ours: str = ""  # markdown table(s) of our numbers
    per_seed: str = ""  # markdown table: every seed's value of the headline numbers
    checks: list[str] = field(default_factory=list)  # the mechanism, checked per seed
    flags: list[str] = field(default_factory=list)  # seeds or arms a reader must know about
    paper: str = ""  # markdown table(s) / claims of the paper
    verdict: list[str] = field(default_factory=list)  # honest one-liners on the direction
    figures: list[Path] = field(default_factory=list)
    csvs: list[Path] = field(default_factory=list)
    error: str | None = None  # summarising failed

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.results)

    @property
    def wall_s(self) -> float:
        return sum(r.wall_s for r in self.results)


def time_phrase(sections: list[Section], total_wall_s: float, jobs: int) -> str:
    """The whole run's wall time and each domain's (``7.1 min (control 7.4, vision 2.6, llm 2.2
    min)``); with runs side by side a domain's time is the sum of its runs' wall times."""
    per_domain = ", ".join(f"{s.domain} {s.wall_s / 60:.1f}" for s in sections)
    side = f"; the sums of each domain's runs, {jobs} runs at a time" if jobs > 1 else ""
    return f"{total_wall_s / 60:.1f} min ({per_domain} min{side})"


def render(
    sections: list[Section],
    out: Path,
    *,
    mode: str,
    total_wall_s: float,
    provenance: Provenance | None = None,
) -> str:
    """The report's Markdown (figures and CSVs linked relative to ``out``)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    jobs = provenance.jobs if provenance else 1
    lines = [
        "# ERA reproduction report",
        "",
        f"Generated {now} by `era-reproduce` ({mode}) on {hardware()}; "
        f"total wall time {time_phrase(sections, total_wall_s, jobs)}.",
        "",
        f"**Statistics.** Every aggregate is the {SPREAD}, with each seed's value beside it; "
        "a floor or a band is checked on each seed, never on the mean. Accuracies are in %, "
        "entropies in nats.",
        "",
    ]
    if mode != "full":
        lines += [
            f"**Read this first.** These are the *{mode}* budgets: tiny models, a few thousand "
            "steps, a few seeds, on a CPU. They are far below the paper's budgets (1M env "
            "steps and 10 seeds for control, 200 ImageNet/CIFAR-10 epochs for vision, "
            "Qwen2.5-Math-7B for the LLM), so they show whether the mechanism works and which "
            "way each comparison went at this scale, not the paper's effect sizes. The budgets "
            "were fixed in `era_reproduce/plans.py` before looking at any outcome.",
            "",
        ]
    lines += ["| domain | status | wall time | runs |", "|---|---|---|---|"]
    for s in sections:
        status = "ok" if s.ok else "FAILED"
        lines.append(
            f"| [{s.domain}](#{s.domain}) | {status} | {s.wall_s / 60:.1f} min | {len(s.results)} |"
        )
    lines.append("")
    if provenance is not None:
        lines += provenance.markdown(
            run_threads([r.run.out for s in sections for r in s.results]), out
        )
    for s in sections:
        lines += section_markdown(s, out)
    return "\n".join(lines)


def section_markdown(
    s: Section, out: Path, *, commands: bool = True, raw_data: bool = True
) -> list[str]:
    """One domain's part of the report (links relative to ``out``)."""
    lines = [f"## {s.title}", "", f'<a id="{s.domain}"></a>', ""]
    if s.budget:
        lines += [f"**Budget.** {s.budget}", ""]
    failed = [r for r in s.results if not r.ok]
    if failed or s.error:
        lines += ["**Failures.**", ""]
        for r in failed:
            log = os.path.relpath(r.log, out)
            first = (r.error or "").splitlines()[0] if r.error else "failed"
            lines.append(f"* `{r.run.name}` failed: {first} — log: [{log}]({log})")
        if s.error:
            lines.append(f"* summary failed: {s.error}")
        lines.append("")
    if s.ours:
        lines += ["**Measured here.**", "", s.ours, ""]
    if s.per_seed:
        lines += ["**Every seed.**", "", s.per_seed, ""]
    if s.checks:
        lines += ["**Mechanism check (per seed).**", ""] + [f"* {c}" for c in s.checks] + [""]
    if s.flags:
        lines += ["**Flagged.**", ""] + [f"* {f}" for f in s.flags] + [""]
    if s.verdict:
        lines += ["**Direction.**", ""] + [f"* {v}" for v in s.verdict] + [""]
    if s.paper:
        lines += ["**The paper.**", "", s.paper, ""]
    for fig in s.figures:
        rel = os.path.relpath(fig, out)
        lines += [f"![{fig.stem}]({rel})", ""]
    if s.csvs and raw_data:
        links = [f"[{os.path.relpath(c, out)}]({os.path.relpath(c, out)})" for c in s.csvs]
        lines += ["Raw data: " + ", ".join(links), ""]
    if commands:
        lines += ["**Commands** (wall time each):", ""]
        lines += [f"* `{r.run.user_command()}` — {r.wall_s:.0f} s" for r in s.results]
        lines.append("")
    return lines
