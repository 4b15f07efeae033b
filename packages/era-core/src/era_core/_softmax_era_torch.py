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

Only ``p`` and ``e = r * dx/dL`` are kept for backward. The gradient is once differentiable
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
) -> tuple[torch.Tensor, ...]:
    """``(x, p, dx/dL, slope p, h)`` for ``z`` already in the compute dtype."""
    big = torch.finfo(z.dtype).max
    p = torch.softmax(torch.clamp(z, -big, big), dim=-1)  # +-inf: the one-hot limit
    t = p * slope
    h = t + offset
    log_h = torch.log(h)
    if not exact:
        u = torch.clamp_min(-1.0 - log_h, 0.0)  # u >= log(1/(e*ub)) > 0 up to rounding
        s = torch.sqrt(u * 2.0)
        x = torch.add(s, u, alpha=0.75).add_(1.0).neg_()
        deriv = s.reciprocal_().add_(0.75)
        return x, p, deriv, t, h
    # Exact: Newton on y = -x > 1, y <- y (log y - a) / (y - 1) with a = 1 + L, kept in
    # [log tau, inf); L is capped at log(ub), where the root is y = log tau (a one-hot p).
    floor = math.log(tau)
    a = torch.clamp_max(log_h, math.log(floor / tau)).add_(1.0)
    y = torch.mul(a, -2.0).sqrt_().sub_(a, alpha=0.75).add_(1.0)  # the paper's value, u = -a
    for _ in range(steps - 1):
        y = _newton(y, a, y - 1.0).clamp_min_(floor)
    den = y - 1.0
    deriv = y / den  # dx/dL = x/(x + 1) = y/(y - 1)
    return _newton(y, a, den).clamp_min_(floor).neg_(), p, deriv, t, h


def _newton(y: torch.Tensor, a: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """One Newton step on ``log y - y = a - 1`` (``x + log(-x) = L`` for ``y = -x``)."""
    return torch.log(y).sub_(a).mul_(y).div_(den)


class _SoftmaxERA(torch.autograd.Function):
    @staticmethod
    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        ctx: Any, z: torch.Tensor, slope: float, offset: float, tau: float, exact: bool, steps: int
    ) -> torch.Tensor:
        x, p, deriv, t, h = _forward(z, slope, offset, tau, exact, steps)
        ctx.save_for_backward(p, deriv.mul_(t.div_(h)))  # e = r dx/dL, r = slope p / h
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # pyright: ignore[reportIncompatibleMethodOverride]
        p, e = ctx.saved_tensors
        w = grad * e
        return torch.addcmul(w, p, w.sum(dim=-1, keepdim=True), value=-1.0), *(None,) * 5


def fused_softmax_era(
    z: torch.Tensor, slope: float, offset: float, *, tau: float, mode: str, steps: int
) -> torch.Tensor:
    """Eq. 15's ``z'`` for ``z`` in float32/float64, with the affine map ``(slope, offset)``."""
    exact = mode == "exact"
    if z.requires_grad and torch.is_grad_enabled():
        return _SoftmaxERA.apply(z, slope, offset, tau, exact, steps)  # pyright: ignore[reportReturnType]
    return _forward(z, slope, offset, tau, exact, steps)[0]
