"""Softmax ERA on PyTorch tensors: one ``torch.autograd.Function`` with a closed-form backward.

:func:`era_core.softmax_era` sends torch tensors here; this module is imported on first use,
so ``import era_core`` never imports torch. The math is that of the array-API path
(``_softmax_era._softmax_era_array``, its reference in the tests), written as a few mostly
in-place passes over one buffer, with a backward that autograd does not have to assemble from
ten elementwise nodes:

forward, with ``p = softmax(z)``, ``r = slope p / h`` and ``h = slope p + b``::

    L = log h
    paper:  u = max(-1 - L, 0),  x = -1 - sqrt(2u) - 0.75u,  dx/dL = 1/sqrt(2u) + 0.75
    exact:  Newton on x + log(-x) = L from the paper's value, in y = -x:
            y <- max(y (log y - 1 - L) / (y - 1), log tau);  x = -y;
            dx/dL = y/(y - 1) at the iterate before the last step

backward, for an upstream gradient ``g`` (``dL/dz = r/p * dp/dz`` and ``dp/dz`` is the
softmax Jacobian ``diag(p) - p p^T``)::

    w = g * r * dx/dL,   dz = w - p * sum(w)

Only ``p`` and ``e = r * dx/dL`` are kept for backward; the intermediates live in a few buffers
updated in place. The gradient is once differentiable
(a second derivative through it raises).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

__all__ = ["fused_softmax_era"]

# Up to this many torch threads, log and sqrt run as NumPy ufuncs on the same memory.
_NUMPY_MAX_THREADS = 3


def _forward(
    z: torch.Tensor, slope: float, offset: float, tau: float, exact: bool, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, p, e)`` for ``z`` already in the compute dtype, ``e = r dx/dL``.

    Every intermediate is written in place into a handful of buffers: on the CPU a fresh
    tensor of a classifier's size costs page faults that weigh more than the arithmetic.
    With ``c = offset / slope``: ``h = slope (p + c)``, so ``L = log(slope) + log(p + c)`` and
    ``r = p / (p + c)``.
    """
    big = torch.finfo(z.dtype).max
    work = torch.clamp(z, -big, big)  # +-inf: the one-hot limit
    p = torch.softmax(work, dim=-1)
    if slope > 0.0:
        q = torch.add(p, offset / slope, out=work)  # reuses the clamped logits' buffer
        log_q, log_slope = _log(q, out=torch.empty_like(q)), math.log(slope)  # L = their sum
        r = torch.div(p, q, out=q)  # slope p / h, without cancellation
    else:  # the feasible range's upper end (slope 0 up to rounding): h ~ offset
        h = torch.mul(p, slope, out=work).add_(offset)
        log_q, log_slope = _log(h, out=torch.empty_like(h)), 0.0
        r = h.reciprocal_().mul_(p).mul_(slope)
    if not exact:
        # 2u = max(-2 - 2L, 0) >= 2 log(1/(e*ub)) > 0 up to rounding
        u2 = log_q.mul_(-2.0).sub_(2.0 + 2.0 * log_slope).clamp_min_(0.0)
        s = _sqrt(u2, out=torch.empty_like(u2))  # sqrt(2u)
        x = torch.add(s, u2, alpha=0.375).add_(1.0).neg_()  # -1 - sqrt(2u) - 0.75u
        e = torch.mul(r, 0.75, out=u2).addcdiv_(r, s)  # r dx/dL, dx/dL = 1/sqrt(2u) + 0.75
        return x, p, e
    # Exact: Newton on y = -x > 1, y <- y (log y - a) / (y - 1) with a = 1 + L, kept in
    # [log tau, inf); L is capped at log(ub), where the root is y = log tau (a one-hot p).
    floor = math.log(tau)
    a = log_q.clamp_max_(math.log(floor / tau) - log_slope).add_(1.0 + log_slope)
    y = torch.mul(a, -2.0)
    y = _sqrt(y, out=y).sub_(a, alpha=0.75).add_(1.0)  # the paper's value, u = -a
    den, nxt = torch.empty_like(y), torch.empty_like(y)
    for _ in range(steps - 1):
        _newton(y, a, torch.sub(y, 1.0, out=den), out=nxt).clamp_min_(floor)
        y, nxt = nxt, y
    torch.sub(y, 1.0, out=den)
    e = r.mul_(y).div_(den)  # dx/dL = x/(x + 1) = y/(y - 1), at the iterate before the last step
    return _newton(y, a, den, out=nxt).clamp_min_(floor).neg_(), p, e


def _newton(
    y: torch.Tensor, a: torch.Tensor, den: torch.Tensor, *, out: torch.Tensor
) -> torch.Tensor:
    """One Newton step on ``log y - y = a - 1`` (``x + log(-x) = L`` for ``y = -x``), into ``out``."""
    return _log(y, out=out).sub_(a).mul_(y).div_(den)


def _numpy_ufunc(t: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether NumPy's ufunc may run on ``t`` (and ``out``) in place of the torch kernel.

    On a CPU with one to three torch threads NumPy's SIMD ``log`` and ``sqrt`` are several
    times faster than torch's (docs/benchmarks.md); with more threads torch's kernels split the
    work and win. Never while tracing (torch.compile, functorch transforms, fake tensors): the
    ufunc needs real memory, so anything but a plain CPU tensor takes the torch kernel.
    """
    return (
        not torch.compiler.is_compiling()
        and t.device.type == "cpu"
        and type(t) is torch.Tensor
        and type(out) is torch.Tensor
        and torch.get_num_threads() <= _NUMPY_MAX_THREADS
    )


def _ufunc(name: str, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``name`` (``"log"`` or ``"sqrt"``) of ``t`` written into ``out`` and returned: NumPy's
    ufunc where :func:`_numpy_ufunc` allows it, else torch's kernel."""
    if _numpy_ufunc(t, out):
        try:
            getattr(np, name)(t.numpy(), out=out.numpy())
            return out
        except (RuntimeError, TypeError):  # a wrapped tensor without storage
            pass
    return getattr(torch, name)(t, out=out)


def _log(t: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling() and t.device.type == "cpu":
        return out.copy_(torch.ops.era_core.cpu_log(t))
    return _ufunc("log", t, out)


def _sqrt(t: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    return _ufunc("sqrt", t, out)


@torch.library.custom_op("era_core::cpu_log", mutates_args=())
def _cpu_log(t: torch.Tensor) -> torch.Tensor:
    """``log(t)`` for a CPU tensor as one opaque op, so that a compiled graph runs NumPy's log.

    Inductor's own CPU log costs about as much as torch's eager kernel; this op keeps the
    graph whole (no graph break) and runs the faster ufunc at run time where
    :func:`_numpy_ufunc`'s rule allows it.
    """
    return _ufunc("log", t.detach(), torch.empty_like(t))


@_cpu_log.register_fake
def _(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t)


class _SoftmaxERA(torch.autograd.Function):
    @staticmethod
    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        ctx: Any, z: torch.Tensor, slope: float, offset: float, tau: float, exact: bool, steps: int
    ) -> torch.Tensor:
        x, p, e = _forward(z, slope, offset, tau, exact, steps)
        ctx.save_for_backward(p, e)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # pyright: ignore[reportIncompatibleMethodOverride]
        p, e = ctx.saved_tensors
        w = grad * e
        return w.addcmul_(p, w.sum(dim=-1, keepdim=True), value=-1.0), *(None,) * 5


def fused_softmax_era(
    z: torch.Tensor, slope: float, offset: float, *, tau: float, mode: str, steps: int
) -> torch.Tensor:
    """Eq. 15's ``z'`` for ``z`` in float32/float64, with the affine map ``(slope, offset)``."""
    exact = mode == "exact"
    if z.requires_grad and torch.is_grad_enabled():
        return _SoftmaxERA.apply(z, slope, offset, tau, exact, steps)  # pyright: ignore[reportReturnType]
    return _forward(z, slope, offset, tau, exact, steps)[0]
