"""Run each experiment as its own process, with its log in a file and one overall progress bar.

A run that crashes, times out or is missing its app does not stop the others: its result says
what failed and where the log is.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Run:
    """One command of one domain: ``python -m <module> <args>`` writing into ``out``."""

    domain: str
    name: str
    module: str
    script: str  # the console script a user types (for the report), e.g. "era-control-train"
    args: tuple[str, ...]
    out: Path
    expected_s: float  # for the ETA only

    def user_command(self) -> str:
        return shlex.join(["uv", "run", self.script, *self.args])

    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]


@dataclass
class RunResult:
    run: Run
    returncode: int | None
    wall_s: float
    log: Path
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


def module_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def execute(runs: list[Run], logs: Path, *, timeout_s: float | None = None) -> list[RunResult]:
    """Run ``runs`` one after another; one tqdm bar over their expected seconds (ETA)."""
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    total = sum(run.expected_s for run in runs)
    with tqdm(total=round(total), unit="s", desc="era-reproduce", dynamic_ncols=True) as bar:
        for index, run in enumerate(runs, 1):
            bar.set_postfix_str(f"{run.domain} {index}/{len(runs)}: {run.name}")
            log = logs / f"{run.domain}-{run.name}.log"
            results.append(_execute_one(run, log, bar, timeout_s))
            if not results[-1].ok:
                tqdm.write(f"[{run.domain}] {run.name} FAILED: {results[-1].error} (log: {log})")
    return results


def _execute_one(run: Run, log: Path, bar: tqdm, timeout_s: float | None) -> RunResult:
    start = time.perf_counter()
    module = run.module.split(".")[0]
    if not module_available(module):
        return RunResult(run, None, 0.0, log, error=f"{module} is not installed")
    run.out.mkdir(parents=True, exist_ok=True)
    advanced = 0
    with log.open("w") as handle:
        handle.write(f"$ {shlex.join(run.argv())}\n")
        handle.flush()
        process = subprocess.Popen(
            run.argv(), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        error = None
        while True:
            try:
                returncode = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.perf_counter() - start
                # Advance the bar with elapsed time, but never past this run's share.
                target = min(int(elapsed), int(run.expected_s * 0.95))
                if target > advanced:
                    bar.update(target - advanced)
                    advanced = target
                if timeout_s is not None and elapsed > timeout_s:
                    process.kill()
                    process.wait()
                    returncode = None
                    error = f"timed out after {timeout_s:.0f} s"
                    break
    bar.update(max(round(run.expected_s) - advanced, 0))
    wall = time.perf_counter() - start
    if error is None and returncode != 0:
        error = f"exit code {returncode}; last lines of the log:\n{_tail(log)}"
    return RunResult(run, returncode, wall, log, error=error)
