"""Softmax ERA (paper Eq. 15, ERA-SPEC §2): logits whose softmax has entropy >= H_min.

Classifier logits ``z`` are mapped to ``z'`` with ``H(softmax(z')) >= min_entropy`` for every
input; ``z'`` then goes into the usual cross-entropy.
"""

from __future__ import annotations

import functools
import math

from ._backend import Array, compute_dtype, namespace
from ._validation import check_ndim, finite_float

__all__ = ["softmax_era", "softmax_era_bounds"]

_MODES = ("paper", "exact")
_NEWTON_STEPS = 3  # from the paper's approximation, 3 Newton steps reach float64 accuracy
# Safety margin of the exact mode's calibrated floor, relative to min_entropy, by the dtype of
# the returned logits: rounding z' to that dtype moves the entropy by about this much.
_EXACT_MARGIN = {"float64": 1e-9, "float32": 2e-6, "float16": 2.5e-3, "bfloat16": 8e-3}


def softmax_era_bounds(num_classes: int, tau: float = 4.0) -> tuple[float, float]:
    r"""The feasible ``min_entropy`` range ``(low, high]`` of :func:`softmax_era` for ``C`` classes.

    With :math:`u_b = \log(\tau)/\tau`: ``low = 1 + log(u_b)`` (exclusive; there the offset
    ``b`` of Eq. 15 reaches 0) and ``high = 1 + log(C u_b)`` (the slope reaches 0 and the
    output is uniform). For ``tau = 4``: ``(-0.0596, 2.2422]`` at C=10, ``(-0.0596, 6.8500]``
    at C=1000.
    """
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    tau = finite_float(tau, "tau")
    if not tau > math.e:
        raise ValueError(f"tau must be > e = {math.e:.6f} so that 1/tau < 1/e, got {tau}")
    ub = math.log(tau) / tau
    return 1.0 + math.log(ub), 1.0 + math.log(num_classes * ub)


def _affine(num_classes: int, h_tau: float, tau: float) -> tuple[float, float]:
    """Slope and offset of Eq. 15's map ``h_i = slope * p_i + b`` (``sum h = h_tau``, ``max h = ub``)."""
    ub = math.log(tau) / tau
    slope = (ub - h_tau / num_classes) / (1.0 - 1.0 / num_classes)
    return slope, (h_tau - slope) / num_classes


def _log_inverse_entropy_term(h: float) -> float:
    """Float64 ``log q`` with ``-q log q = h`` on the rising branch (``q < 1/e``); Newton in log form."""
    target = math.log(h)
    u = -1.0 - target
    x = -1.0 - math.sqrt(2.0 * max(u, 0.0)) - 0.75 * u
    for _ in range(60):
        step = (x + math.log(-x) - target) / (1.0 + 1.0 / x)
        x = min(x - step, -1.0 - 1e-12)
        if abs(step) < 1e-15 * abs(x):
            break
    return x


def _one_hot_entropy(num_classes: int, h_tau: float, tau: float) -> tuple[float, float]:
    """Entropy of softmax(z') for a one-hot input, with the exact inverse; and its ``S = sum q``."""
    _, b = _affine(num_classes, h_tau, tau)
    s = 1.0 / tau + (num_classes - 1) * math.exp(_log_inverse_entropy_term(b))
    return h_tau / s + math.log(s), s


@functools.lru_cache(maxsize=256)
def _calibrated_h_tau(num_classes: int, min_entropy: float, tau: float, dtype_name: str) -> float:
    r"""The internal :math:`H_\tau` that makes the exact mode's floor tight.

    With the exact inverse, ``H(softmax(z')) = H_tau/S + log S`` with ``S = sum_i q_i``. ``S``
    is convex in ``p`` (``q_i`` is a convex increasing function of ``p_i``), so over the
    simplex it is largest at a one-hot input; while ``S <= H_tau`` the entropy falls as ``S``
    grows, so the one-hot input has the smallest entropy. The paper's
    :math:`H_\tau = e^{H_{\min}-1}` leaves that smallest entropy well above ``min_entropy``;
    bisection on :math:`\log H_\tau` lowers :math:`H_\tau` until the one-hot entropy equals
    ``min_entropy`` (plus a dtype-sized margin), checking ``S <= H_tau`` at the solution.
    """
    target = min_entropy * (1.0 + _EXACT_MARGIN[dtype_name]) + 1e-12
    h_paper = math.exp(min_entropy - 1.0)
    ub = math.log(tau) / tau
    entropy, s = _one_hot_entropy(num_classes, h_paper, tau)
    if s >= h_paper or entropy <= target:
        # Either the bound 1 + log(H_tau) = min_entropy is attained inside the simplex (the
        # floor is already tight), or the dtype margin cannot be added: keep the paper's H_tau.
        return h_paper
    lo, hi = math.log(ub), math.log(h_paper)
    if _one_hot_entropy(num_classes, math.exp(lo) * (1.0 + 1e-12), tau)[0] >= target:
        return h_paper  # min_entropy is so low that any H_tau satisfies it: nothing to tighten
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _one_hot_entropy(num_classes, math.exp(mid), tau)[0] < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    h_tau = math.exp(hi)
    _, s = _one_hot_entropy(num_classes, h_tau, tau)
    if s > h_tau:  # pragma: no cover - never seen; would mean an interior point is the worst case
        return h_paper
    return h_tau


def _log_softmax(xp, z):
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax_era(
    logits: Array, min_entropy: float, *, tau: float = 4.0, mode: str = "paper"
) -> Array:
    r"""ERA's softmax activation (paper Eq. 15): logits ``z'`` with ``H(softmax(z')) >= min_entropy``.

    With :math:`p=\mathrm{softmax}(z)`, :math:`C` classes, :math:`H_\tau=e^{H_{\min}-1}`,
    :math:`u_b=\log(\tau)/\tau` and :math:`h(q)=-q\log q`:

    .. math::
        \text{slope} = \frac{u_b - H_\tau/C}{1-1/C},\quad b=\frac{H_\tau-\text{slope}}{C},\quad
        h_i = \text{slope}\,p_i + b,\quad z'_i = \log h^{-1}(h_i)

    where :math:`h^{-1}` inverts ``h`` on :math:`(0, 1/\tau]`. Since :math:`\sum_i h_i=H_\tau`,
    :math:`H(\mathrm{softmax}(z')) = H_\tau/S + \log S \ge 1+\log H_\tau = H_{\min}` with
    :math:`S=\sum_i q_i`.

    * ``mode="paper"``: the paper's closed-form inverse, :math:`\log q \approx -1-\sqrt{2u}-0.75u`,
      :math:`u=-1-\log h`. Loose: the smallest entropy is well above ``min_entropy`` (about
      0.98 for C=10, H_min=0.6).
    * ``mode="exact"``: :math:`\log q = W_{-1}(-h)` by Newton steps on
      :math:`x+\log(-x)=\log h`, and :math:`H_\tau` calibrated (once per
      ``(C, min_entropy, tau, dtype)``, on the host) so that the smallest entropy over all
      inputs, reached at a one-hot input, equals ``min_entropy`` up to a tiny dtype margin.

    Computed in float32 for float16/bfloat16 inputs, returned in the input dtype. Adding a
    per-row constant to ``z'`` changes nothing downstream (softmax, cross-entropy).

    Args:
      logits: ``(..., C)`` classifier logits, ``C >= 2``.
      min_entropy: the floor :math:`H_{\min}` in nats, within :func:`softmax_era_bounds`.
      tau: the scale :math:`\tau > e` (the paper uses 4).
      mode: ``"paper"`` or ``"exact"``.

    Returns:
      ``(..., C)`` logits ``z'`` in the input's type, device and dtype.

    Raises:
      ValueError: infeasible ``min_entropy`` (the message gives the range), ``tau <= e``,
        unknown ``mode``, fewer than 2 classes.

    Example:
      >>> import numpy as np
      >>> z = softmax_era(np.array([[30.0, 0.0, 0.0, 0.0]]), min_entropy=0.6, mode="exact")
      >>> p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
      >>> 0.6 <= float(-(p * np.log(p)).sum()) <= 0.606
      True
    """
    xp = namespace(logits)
    check_ndim(logits, "logits", 1)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    num_classes = logits.shape[-1]
    if num_classes is None or num_classes < 2:
        raise ValueError(
            f"logits must have at least 2 classes on the last axis, got shape {tuple(logits.shape)}"
        )
    low, high = softmax_era_bounds(num_classes, tau)
    min_entropy = finite_float(min_entropy, "min_entropy")
    if not low < min_entropy <= high:
        raise ValueError(
            f"min_entropy must be in ({low:.6g}, {high:.6g}] for {num_classes} classes and "
            f"tau={tau} (upper end 1 + log(C*log(tau)/tau)), got {min_entropy}"
        )
    dtype = compute_dtype(xp, logits, "logits")
    ub = math.log(tau) / tau
    if mode == "exact":
        h_tau = _calibrated_h_tau(num_classes, min_entropy, tau, _dtype_name(xp, logits.dtype))
    else:
        h_tau = math.exp(min_entropy - 1.0)
    slope, offset = _affine(num_classes, h_tau, tau)

    p = xp.exp(_log_softmax(xp, xp.astype(logits, dtype)))
    h = slope * p + offset
    log_h = xp.log(h)
    u = xp.maximum(-1.0 - log_h, 0.0)
    x = -1.0 - xp.sqrt(2.0 * u) - 0.75 * u  # the paper's approximation of log h^{-1}(h)
    if mode == "exact":
        log_h = xp.minimum(log_h, math.log(ub))  # h <= ub up to rounding
        ceiling = -math.log(tau)  # the root lies in (-inf, -log tau]
        for _ in range(_NEWTON_STEPS):
            x = xp.minimum(x - (x + xp.log(-x) - log_h) / (1.0 + 1.0 / x), ceiling)
    return xp.astype(x, logits.dtype)


def _dtype_name(xp, dtype) -> str:
    for name in ("float64", "float32", "float16"):
        if dtype == getattr(xp, name, None):
            return name
    return "bfloat16"
