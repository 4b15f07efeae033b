"""Argument checks shared by the public functions.

Each raises ``ValueError`` naming the argument, the value it got and the valid range, so a
user sees what to change. Checks on array *values* run only when the values are concrete
(never inside ``jax.jit`` or ``torch.compile`` tracing).
"""

from __future__ import annotations

import math
from typing import Any

from ._backend import Namespace, is_concrete, is_scalar


def finite_float(value: Any, name: str) -> float:
    """``value`` as a finite Python float, or ValueError."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def check_finite_array(xp: Namespace, x: Any, name: str) -> None:
    """ValueError when a concrete array holds NaN or infinity."""
    if is_scalar(x):
        finite_float(x, name)
        return
    if is_concrete(x) and not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} must be finite everywhere, got non-finite values")


def check_ndim(x: Any, name: str, min_ndim: int) -> None:
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}"
        )


def check_interval(low: float, high: float, low_name: str, high_name: str) -> tuple[float, float]:
    low = finite_float(low, low_name)
    high = finite_float(high, high_name)
    if not low < high:
        raise ValueError(
            f"{low_name} must be < {high_name}, got {low_name}={low}, {high_name}={high}"
        )
    return low, high
