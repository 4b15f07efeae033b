"""CPU thread counts of a run: chosen on purpose, applied to every pool, recorded.

Pure Python at import (torch and JAX are imported only inside the functions that set their
threads). A run's CPU work runs in several thread pools: the framework's intra-op pool
(``torch.set_num_threads``, XLA's Eigen pool), torch's inter-op pool, and the OpenMP / BLAS
pools of NumPy and the worker processes (``OMP_NUM_THREADS`` and the like). Left alone, each
pool takes every core: two pools of two threads on a two-core machine that other programs
also use wait for each other, and a reduction split over another number of threads rounds
differently, so the numbers of a run depend on the machine it ran on.

:func:`choose_threads` picks one count, in this order: the ``--threads`` flag (``N >= 1``),
the count a resumed run recorded, and otherwise the app's default (at most
:func:`usable_cores`); ``OMP_NUM_THREADS`` and the like do not change it, so a run computes
the same way whatever the shell exports. The result, a :class:`ThreadPlan`, goes into the
run's ``config.json`` (``plan.to_dict()``, under the key :data:`CONFIG_KEY`).
:func:`apply_torch` and :func:`apply_xla` set the framework's pools, :func:`apply_blas` the
environment of child processes (where the user has not set it) and NumPy's pools in this
process (through ``threadpoolctl``, when it is installed).

>>> plan = choose_threads(2, default=1)
>>> plan.threads, plan.rule
(2, '--threads 2')
>>> choose_threads(0, default=4, stored={"threads": 1}).threads
1
>>> choose_threads(None, default=10**6).threads == usable_cores()
True
>>> ThreadPlan.from_dict(plan.to_dict()) == plan
True
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "BLAS_ENV",
    "CONFIG_KEY",
    "ThreadPlan",
    "apply_blas",
    "apply_torch",
    "apply_xla",
    "choose_threads",
    "usable_cores",
    "xla_thread_flags",
]

CONFIG_KEY = "cpu_threads"  # the key of a run's config.json that holds its ThreadPlan
# The variables that size the OpenMP / BLAS pools of a process when it starts.
BLAS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_XLA_THREAD_FLAGS = ("xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one (a
    container's or ``taskset``'s limit), else ``os.cpu_count()``; at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # no affinity call on this OS
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class ThreadPlan:
    """The thread counts of one run.

    Attributes:
        threads: intra-op threads (torch's pool, XLA's Eigen pool, OpenMP / BLAS pools).
        interop: torch's inter-op threads (eager code runs one op at a time, so 1 unless asked).
        cores: the usable cores when the count was chosen (for the record).
        rule: where the count comes from, e.g. ``"--threads 2"`` or ``"default: ..."``.
    """

    threads: int
    interop: int
    cores: int
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """The plan as stored in ``config.json`` (under :data:`CONFIG_KEY`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ThreadPlan | None:
        """The plan a ``config.json`` recorded; ``None`` when it holds none or a broken one."""
        if not isinstance(data, Mapping):
            return None
        threads, interop = _count(data.get("threads")), _count(data.get("interop", 1))
        if threads is None or interop is None:
            return None
        cores = _count(data.get("cores")) or usable_cores()
        return cls(threads, interop, cores, str(data.get("rule", "")))


def _count(value: Any) -> int | None:
    """``value`` if it is a count (an integer >= 1, not a bool), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def choose_threads(
    requested: int | None,
    *,
    default: int,
    reason: str = "",
    stored: Any = None,
    flag: str = "--threads",
) -> ThreadPlan:
    """The run's :class:`ThreadPlan`.

    Args:
        requested: the ``--threads`` value; ``0`` or ``None``: the app chooses.
        default: the app's count when nothing else sets one; capped at :func:`usable_cores`.
        reason: why ``default`` (shown in the plan's ``rule``), e.g. ``"the tiny model"``.
        stored: a resumed run's recorded plan (``config.json[CONFIG_KEY]``), reused so that the
            resumed run computes as it did.
        flag: the flag named in errors.

    Raises:
        ValueError: ``requested`` is negative or not an integer, or ``default`` < 1.
    """
    if requested is not None and (
        not isinstance(requested, int) or isinstance(requested, bool) or requested < 0
    ):
        raise ValueError(f"{flag} {requested!r} must be an integer >= 0 (0: the app's choice)")
    if _count(default) is None:
        raise ValueError(f"default must be an integer >= 1, got {default!r}")
    cores = usable_cores()
    if requested:
        return ThreadPlan(requested, 1, cores, f"{flag} {requested}")
    previous = ThreadPlan.from_dict(stored)
    if previous is not None:
        return ThreadPlan(previous.threads, previous.interop, cores, "the resumed run's count")
    count = min(default, cores)
    why = f" ({reason})" if reason else ""
    return ThreadPlan(count, 1, cores, f"default: min({default}, {cores} usable cores){why}")


def apply_blas(plan: ThreadPlan, environ: MutableMapping[str, str] | None = None) -> None:
    """Size the OpenMP / BLAS pools: the variables of :data:`BLAS_ENV` that the user has not
    set (read by the child processes this one starts: data-loader and environment workers),
    and this process's own pools through ``threadpoolctl`` when it is installed (they were
    sized when NumPy was imported)."""
    env = os.environ if environ is None else environ
    for name in BLAS_ENV:
        env.setdefault(name, str(plan.threads))
    if environ is not None:
        return
    try:  # optional (not a dependency): without it only the child processes follow the plan
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        return
    with warnings.catch_warnings():  # its notes on mixed OpenMP runtimes are not the user's
        warnings.simplefilter("ignore")
        threadpoolctl.threadpool_limits(plan.threads)


def apply_torch(plan: ThreadPlan) -> ThreadPlan:
    """Set torch's intra-op and inter-op pools; returns the plan as it took effect (torch fixes
    the inter-op pool at a process's first parallel op, after which that count stays)."""
    import torch

    torch.set_num_threads(plan.threads)
    if torch.get_num_interop_threads() != plan.interop:
        try:
            torch.set_num_interop_threads(plan.interop)
        except RuntimeError:  # already started in this process: the count stays as it is
            pass
    return replace(plan, threads=torch.get_num_threads(), interop=torch.get_num_interop_threads())


def xla_thread_flags(threads: int) -> str:
    """The ``XLA_FLAGS`` that size XLA's CPU pools: one thread per op for ``threads == 1``
    (``--xla_cpu_multi_thread_eigen=false``), else XLA's own pool, which spans the usable
    cores."""
    if threads == 1:
        return "--xla_cpu_multi_thread_eigen=false"
    return "--xla_cpu_multi_thread_eigen=true"


def apply_xla(plan: ThreadPlan, environ: MutableMapping[str, str] | None = None) -> str:
    """Add :func:`xla_thread_flags` to ``XLA_FLAGS`` unless the user's ``XLA_FLAGS`` already
    sizes the pools (theirs wins); returns ``XLA_FLAGS`` as it is now. XLA reads it when JAX
    starts its CPU backend (at the first array op), so call this before any."""
    env = os.environ if environ is None else environ
    current = env.get("XLA_FLAGS", "")
    if any(re.search(rf"\b{flag}\b", current) for flag in _XLA_THREAD_FLAGS):
        return current
    env["XLA_FLAGS"] = f"{current} {xla_thread_flags(plan.threads)}".strip()
    return env["XLA_FLAGS"]
