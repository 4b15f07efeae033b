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

import torch
from torch.autograd.function import once_differentiable

__all__ = ["fused_softmax_era"]


def _forward(
    z: torch.Tensor, slope: float, offset: float, tau: float, exact: bool, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, p, e)`` for ``z`` already in the compute dtype, ``e = r dx/dL``.

    Every intermediate is written in place into a handful of buffers: on the CPU a fresh
    tensor of a classifier's size costs page faults that weigh more than the arithmetic.
    """
    big = torch.finfo(z.dtype).max
    work = torch.clamp(z, -big, big)  # +-inf: the one-hot limit
    p = torch.softmax(work, dim=-1)
    h = torch.mul(p, slope, out=work).add_(offset)  # reuses the clamped logits' buffer
    log_h = torch.log(h)
    r = h.reciprocal_().mul_(p).mul_(slope)  # slope p / h, without cancellation
    if not exact:
        u = log_h.neg_().sub_(1.0).clamp_min_(0.0)  # u >= log(1/(e*ub)) > 0 up to rounding
        s = torch.mul(u, 2.0).sqrt_()
        x = u.mul_(0.75).add_(s).add_(1.0).neg_()
        return x, p, r.mul_(s.reciprocal_().add_(0.75))  # dx/dL = 1/sqrt(2u) + 0.75
    # Exact: Newton on y = -x > 1, y <- y (log y - a) / (y - 1) with a = 1 + L, kept in
    # [log tau, inf); L is capped at log(ub), where the root is y = log tau (a one-hot p).
    floor = math.log(tau)
    a = log_h.clamp_max_(math.log(floor / tau)).add_(1.0)
    y = torch.mul(a, -2.0).sqrt_().sub_(a, alpha=0.75).add_(1.0)  # the paper's value, u = -a
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
    return torch.log(y, out=out).sub_(a).mul_(y).div_(den)


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
