"""Run each experiment as its own process, with its log in a file and one overall progress bar.

A run that crashes, times out or is missing its app does not stop the others: its result says
what failed and where the log is. ``jobs`` runs start side by side (each quick run uses one
thread, so a 2-core machine runs two at once); their numbers do not depend on it.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def execute(
    runs: list[Run], logs: Path, *, timeout_s: float | None = None, jobs: int = 1
) -> list[RunResult]:
    """Run ``runs``, at most ``jobs`` at a time, in their order; one tqdm bar over their
    expected seconds (ETA). The results come back in the order of ``runs``."""
    logs.mkdir(parents=True, exist_ok=True)
    total = sum(run.expected_s for run in runs)
    lock = threading.Lock()
    with tqdm(total=round(total), unit="s", desc="era-reproduce", dynamic_ncols=True) as bar:

        def one(index: int, run: Run) -> RunResult:
            with lock:
                bar.set_postfix_str(f"{run.domain} {index}/{len(runs)}: {run.name}")
            log = logs / f"{run.domain}-{run.name}.log"
            result = _execute_one(run, log, bar, timeout_s, lock)
            if not result.ok:
                with lock:
                    tqdm.write(f"[{run.domain}] {run.name} FAILED: {result.error} (log: {log})")
            return result

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(one, i, run) for i, run in enumerate(runs, 1)]
            return [future.result() for future in futures]


def _execute_one(
    run: Run, log: Path, bar: tqdm, timeout_s: float | None, lock: threading.Lock
) -> RunResult:
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
                    with lock:
                        bar.update(target - advanced)
                    advanced = target
                if timeout_s is not None and elapsed > timeout_s:
                    process.kill()
                    process.wait()
                    returncode = None
                    error = f"timed out after {timeout_s:.0f} s"
                    break
    with lock:
        bar.update(max(round(run.expected_s) - advanced, 0))
    wall = time.perf_counter() - start
    if error is None and returncode != 0:
        error = f"exit code {returncode}; last lines of the log:\n{_tail(log)}"
    return RunResult(run, returncode, wall, log, error=error)
