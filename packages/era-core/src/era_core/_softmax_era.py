"""Softmax ERA (paper Eq. 15, docs/paper.md §2): logits whose softmax has entropy >= H_min.

Classifier logits ``z`` are mapped to ``z'`` with ``H(softmax(z')) >= min_entropy`` for every
input; ``z'`` then goes into the usual cross-entropy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from array_api_compat import is_torch_namespace

from ._backend import (
    Array,
    Namespace,
    clip_above,
    clip_below,
    compute_dtype,
    namespace,
    softmax,
    stop_gradient,
)
from ._validation import check_ndim, finite_float

__all__ = ["softmax_era", "softmax_era_bounds"]

_MODES = ("paper", "exact")
# Newton steps from the paper's approximation: relative error 1.6e-4 after one, 4.5e-10 after
# two, 8e-16 after three (worst case over h in [1e-38, ub], against SciPy's lambertw).
_NEWTON_STEPS = {"float64": 3, "float32": 2}
# Safety margin (relative, absolute in nats) of the exact mode's calibrated floor, by the dtype
# of the returned logits, on top of the rounding bound of `_rounding_slack`.
_EXACT_MARGIN = {
    "float64": (1e-9, 1e-12),
    "float32": (2e-6, 1e-6),
    "float16": (5e-4, 1e-4),
    "bfloat16": (2e-3, 5e-4),
}
_MANTISSA_BITS = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}


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


def _one_hot_entropy(
    num_classes: int, h_tau: float, tau: float, dtype_name: str = "float64"
) -> tuple[float, float]:
    """Entropy of softmax(z') for a one-hot input (exact inverse), less its rounding slack; and ``S``."""
    _, b = _affine(num_classes, h_tau, tau)
    z_top, z_rest = -math.log(tau), _log_inverse_entropy_term(b)
    s = math.exp(z_top) + (num_classes - 1) * math.exp(z_rest)
    entropy = h_tau / s + math.log(s)
    return entropy - _rounding_slack(num_classes, z_top, z_rest, entropy, dtype_name), s


def _rounding_slack(
    num_classes: int, z_top: float, z_rest: float, entropy: float, name: str
) -> float:
    """First-order bound on how much rounding the one-hot ``z'`` to ``name`` lowers its entropy.

    ``dH/dz_i = -p_i (log p_i + H)``; each ``z_i`` moves by at most half an ulp, so the entropy
    drops by at most ``sum_i |p_i (log p_i + H)| ulp(z_i) / 2`` (times 1.25 for the
    second-order terms). Negligible for float32/64; for bfloat16 the 999 equal tail logits of
    a 1000-class one-hot output move together and the bound reaches about 0.05 nats.
    """
    if name in ("float64", "float32"):
        return 0.0
    log_s = math.log(math.exp(z_top) + (num_classes - 1) * math.exp(z_rest))
    total = 0.0
    for z, count in ((z_top, 1), (z_rest, num_classes - 1)):
        log_p = z - log_s
        ulp = 2.0 ** (math.floor(math.log2(abs(z))) - _MANTISSA_BITS[name])
        total += count * abs(math.exp(log_p) * (log_p + entropy)) * ulp / 2.0
    return 1.25 * total


@functools.lru_cache(maxsize=256)
def _calibrated_h_tau(num_classes: int, min_entropy: float, tau: float, dtype_name: str) -> float:
    r"""The internal :math:`H_\tau` that makes the exact mode's floor tight.

    With the exact inverse, ``H(softmax(z')) = H_tau/S + log S >= 1 + log H_tau`` with
    ``S = sum_i q_i``. ``S`` is convex in ``p`` (each ``q_i`` is a convex increasing function
    of ``p_i``), so over the simplex it is largest at a one-hot input. Two cases:

    * the one-hot ``S`` reaches ``H_tau``: the bound ``1 + log H_tau`` is attained inside the
      simplex, so the floor is tight at ``H_tau = exp(target - 1)``;
    * otherwise ``S < H_tau`` everywhere, the entropy falls as ``S`` grows, and the one-hot
      input has the smallest entropy, above the bound. Bisection on :math:`\log H_\tau`
      lowers :math:`H_\tau` until the one-hot entropy equals the target (the check
      ``S <= H_tau`` holds at the solution).

    ``target`` is ``min_entropy`` plus a margin for rounding the returned logits to their dtype.
    """
    relative, absolute = _EXACT_MARGIN[dtype_name]
    target = min_entropy + max(relative * abs(min_entropy), absolute)
    ub = math.log(tau) / tau
    top = num_classes * ub  # slope >= 0
    upper = min(math.exp(target - 1.0), top)
    _, s = _one_hot_entropy(num_classes, upper, tau)
    if s >= upper:
        # Interior minimum 1 + log H_tau; rounding slack estimated at the one-hot point.
        exact, _ = _one_hot_entropy(num_classes, upper, tau)
        raw, _ = _one_hot_entropy(num_classes, upper, tau, "float64")
        return min(upper * math.exp(raw - exact), top)

    def entropy(h_tau: float) -> float:
        return _one_hot_entropy(num_classes, h_tau, tau, dtype_name)[0]

    if entropy(upper) <= target:
        # Rounding slack exceeds what the paper's H_tau leaves: raise H_tau instead of lowering it.
        lo, hi = math.log(upper), math.log(top)
        if entropy(top) < target:
            return top
    else:
        lo, hi = math.log(ub), math.log(upper)
        if entropy(math.exp(lo) * (1.0 + 1e-12)) >= target:
            return upper  # pragma: no cover - min_entropy so low that every H_tau satisfies it
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if entropy(math.exp(mid)) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    h_tau = math.exp(hi)
    _, s = _one_hot_entropy(num_classes, h_tau, tau)
    if s > h_tau:  # pragma: no cover - never seen; an interior point would be the worst case
        return upper
    return h_tau


def _log_inverse(xp: Namespace, log_h: Array, tau: float, steps: int) -> Array:
    """``x = log q`` with ``-q log q = h`` on ``q <= 1/tau``: Newton on ``x + log(-x) = log h``.

    The iterations start from the paper's approximation and run with the gradient stopped;
    one last Newton step is differentiated. Its derivative at the root,
    ``dx/dlog h = 1/(1 + 1/x)``, is the exact implicit derivative, so backward costs one
    step instead of all of them.
    """
    ceiling = -math.log(tau)  # the root lies in (-inf, -log tau]
    target = stop_gradient(xp, clip_above(xp, log_h, math.log(math.log(tau) / tau)))
    u = -1.0 - target
    x = -1.0 - xp.sqrt(2.0 * u) - 0.75 * u
    for _ in range(steps - 1):
        x = clip_above(xp, x - x * (x + xp.log(-x) - target) / (x + 1.0), ceiling)
    x = stop_gradient(xp, x)
    return clip_above(xp, x - x * (x + xp.log(-x) - log_h) / (x + 1.0), ceiling)


def _checked(logits: Array, min_entropy: float, tau: float, mode: str) -> tuple[int, float]:
    """``(C, min_entropy as a float)`` after :func:`softmax_era`'s argument checks."""
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
    return num_classes, min_entropy


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

    Non-finite logits: ``+-inf`` (e.g. a float16 classifier that overflowed) give the limit of
    growing logits, a finite output with the floor held: the ``+inf`` entries of a row share
    its probability (one ``+inf``: the one-hot worst case), ``-inf`` entries get none, a row of
    only ``-inf`` (or only ``+inf``) is uniform. A row holding a NaN is NaN in every entry
    (no error: checking would read device values and break tracing); other rows are unaffected.

    PyTorch tensors take a fused path (``era_core._softmax_era_torch``): one
    ``torch.autograd.Function`` with a closed-form backward, equal to the array-API path up to
    rounding; it is once differentiable (a second derivative through it raises).

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
    num_classes, min_entropy = _checked(logits, min_entropy, tau, mode)
    dtype = compute_dtype(xp, logits, "logits")
    if mode == "exact":
        h_tau = _calibrated_h_tau(num_classes, min_entropy, tau, _dtype_name(xp, logits.dtype))
    else:
        h_tau = math.exp(min_entropy - 1.0)
    slope, offset = _affine(num_classes, h_tau, tau)
    steps = _NEWTON_STEPS["float64" if dtype == xp.float64 else "float32"]
    if is_torch_namespace(xp):
        from ._softmax_era_torch import fused_softmax_era

        z = fused_softmax_era(logits.to(dtype), slope, offset, tau=tau, mode=mode, steps=steps)
        return z.to(logits.dtype)
    return _softmax_era_array(xp, logits, dtype, slope, offset, tau=tau, mode=mode, steps=steps)


def _softmax_era_array(
    xp: Namespace,
    logits: Array,
    dtype: Any,
    slope: float,
    offset: float,
    *,
    tau: float,
    mode: str,
    steps: int,
) -> Array:
    """Eq. 15 in array-API operations (every backend; the reference of the fused torch path)."""
    z = finite_logits(xp, xp.astype(logits, dtype, copy=False))
    p = softmax(xp, z)
    log_h = xp.log(slope * p + offset)
    if mode == "paper":
        u = clip_below(xp, -1.0 - log_h, 0.0)  # u >= log(1/(e*ub)) > 0 up to rounding
        x = -1.0 - xp.sqrt(2.0 * u) - 0.75 * u
    else:
        x = _log_inverse(xp, log_h, tau, steps)
    return xp.astype(x, logits.dtype, copy=False)


def finite_logits(xp: Namespace, z: Array) -> Array:
    """``z`` with ``+-inf`` replaced by ``+-`` the dtype's largest finite value (NaN stays NaN).

    The softmax of the result is the limit of the softmax as those logits grow without bound:
    the ``+inf`` entries of a row share its probability equally and the others get 0; a row of
    ``-inf`` only becomes uniform. Finite logits are unchanged.
    """
    big = float(xp.finfo(z.dtype).max)
    return clip_above(xp, clip_below(xp, z, -big), big)


def _dtype_name(xp: Namespace, dtype: Any) -> str:
    for name in ("float64", "float32", "float16"):
        if dtype == getattr(xp, name, None):
            return name
    return "bfloat16"
