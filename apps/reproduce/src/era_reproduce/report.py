"""The report: per domain, our numbers beside the paper's, with budgets, hardware and commands."""

from __future__ import annotations

import math
import os
import platform
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
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


def hardware() -> str:
    parts = [f"{platform.machine()} {platform.system()}", f"{os.cpu_count()} CPU cores"]
    try:  # only if torch happens to be installed (vision/llm); never required
        import torch

        if torch.cuda.is_available():
            parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
        else:
            parts.append("no GPU")
    except ImportError:
        pass
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


@dataclass
class Section:
    """What one domain contributes to the report."""

    domain: str
    title: str
    results: list[RunResult]
    budget: str = ""
    ours: str = ""  # markdown table(s) of our numbers
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


def render(sections: list[Section], out: Path, *, mode: str, total_wall_s: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# ERA reproduction report",
        "",
        f"Generated {now} by `era-reproduce` ({mode}) on {hardware()}; "
        f"total wall time {total_wall_s / 60:.1f} min.",
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
    for s in sections:
        lines += [f"## {s.title}", "", f'<a id="{s.domain}"></a>', ""]
        if s.budget:
            lines += [f"**Budget.** {s.budget}", ""]
        failed = [r for r in s.results if not r.ok]
        if failed or s.error:
            lines += ["**Failures.**", ""]
            for r in failed:
                log = os.path.relpath(r.log, out)
                lines.append(
                    f"* `{r.run.name}` failed: {r.error.splitlines()[0]} — log: [{log}]({log})"
                )
            if s.error:
                lines.append(f"* summary failed: {s.error}")
            lines.append("")
        if s.ours:
            lines += ["**Measured here.**", "", s.ours, ""]
        if s.verdict:
            lines += ["**Direction.**", ""] + [f"* {v}" for v in s.verdict] + [""]
        if s.paper:
            lines += ["**The paper.**", "", s.paper, ""]
        for fig in s.figures:
            rel = os.path.relpath(fig, out)
            lines += [f"![{fig.stem}]({rel})", ""]
        if s.csvs:
            lines += [
                "Raw data: "
                + ", ".join(
                    f"[{os.path.relpath(c, out)}]({os.path.relpath(c, out)})" for c in s.csvs
                ),
                "",
            ]
        lines += ["**Commands** (wall time each):", ""]
        lines += [f"* `{r.run.user_command()}` — {r.wall_s:.0f} s" for r in s.results]
        lines.append("")
    return "\n".join(lines)
