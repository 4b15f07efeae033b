"""Entropies of Gaussians squeezed into a bounded action box (paper Eqs. 4-5, docs/paper.md §1).

A bounded policy has less entropy than the Gaussian ERA shapes; the compensation ``delta``
makes up for it, and these functions measure the deficit.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from ._backend import (
    Array,
    Namespace,
    clip_above,
    clip_below,
    compute_dtype,
    erf,
    log_ndtr,
    mills_excess,
    namespace,
)
from ._gaussian import GAUSSIAN_ENTROPY_PER_DIM, gaussian_entropy
from ._validation import check_interval, check_ndim

__all__ = [
    "tanh_gaussian_entropy",
    "tanh_gaussian_entropy_from_noise",
    "tanh_log_det_jacobian",
    "truncated_gaussian_entropy",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_MILLS_SWITCH = 5.0  # below: phi/Phi from log_ndtr; above: Laplace's continued fraction


def _mills(xp: Namespace, t: Array) -> tuple[Array, Array]:
    """``(m(t), eps(t))`` with ``m(t) = phi(t)/Phi(-t)`` and ``eps = m - t``, for ``t >= 0``.

    Exact-in-float for any ``t``: ``log_ndtr`` below the switch, the continued fraction above
    (where ``phi(t)`` and ``Phi(-t)`` underflow but their ratio does not).
    """
    small = clip_above(xp, t, _MILLS_SWITCH)
    m_small = xp.exp(-0.5 * small * small - _LOG_SQRT_2PI - log_ndtr(xp, -small))
    large = clip_below(xp, t, _MILLS_SWITCH)
    eps_large = mills_excess(xp, large)
    use_small = t < _MILLS_SWITCH
    eps = xp.where(use_small, m_small - small, eps_large)
    m = xp.where(use_small, m_small, large + eps_large)
    return m, eps


def truncated_gaussian_entropy(
    mean: Array, log_std: Array, low: float = -1.0, high: float = 1.0
) -> Array:
    r"""Entropy of a diagonal Gaussian truncated to ``[low, high]`` per dim, summed over the last axis.

    Paper Eq. 5 (docs/paper.md §1), with :math:`\alpha=(a-\mu)/\sigma`, :math:`\beta=(b-\mu)/\sigma`,
    :math:`Z=\Phi(\beta)-\Phi(\alpha)`:

    .. math:: H_i = \log\big(\sqrt{2\pi e}\,\sigma Z\big) + \frac{\alpha\phi(\alpha)-\beta\phi(\beta)}{2Z}.

    Evaluated without cancellation. By symmetry the interval is flipped so that the mean is
    not right of its midpoint. If the mean is inside, the formula is used as written (``Z``
    from ``erf``). If it lies left of the box (``alpha >= 0``), ``Z`` and ``phi`` underflow
    while the entropy stays moderate, so the equivalent form

    .. math:: H_i = \log\sigma + \tfrac12 - \log m(\alpha) + \log(1-r) + \tfrac12\alpha\,\varepsilon(\alpha)
              + \frac{r\,(\alpha m(\alpha) - \beta m(\beta))}{2(1-r)}

    is used, with the inverse Mills ratio :math:`m(t)=\phi(t)/\Phi(-t)=t+\varepsilon(t)` and
    :math:`r=\Phi(-\beta)/\Phi(-\alpha)=\exp(-\tfrac12(\beta-\alpha)(\beta+\alpha))\,m(\alpha)/m(\beta)`.
    Accurate for :math:`\sigma` from :math:`e^{-8}` to :math:`e^{2}` and means far outside the box.

    Args:
      mean: ``(..., D)`` location :math:`\mu` of the underlying Gaussian.
      log_std: ``(..., D)`` its log-std.
      low, high: the box ``[a, b]`` (same for every dim).

    Returns:
      ``(...)`` entropies in nats.

    Example:
      >>> import numpy as np
      >>> h = truncated_gaussian_entropy(np.zeros((1, 2)), np.full((1, 2), 5.0))
      >>> round(float(h[0]), 6)  # a very wide Gaussian truncated to [-1, 1]^2 is ~uniform: 2 log 2
      1.386294
    """
    xp = namespace(mean, log_std)
    check_ndim(mean, "mean", 1)
    if tuple(mean.shape) != tuple(log_std.shape):
        raise ValueError(
            f"mean and log_std must have the same shape, got {tuple(mean.shape)} and {tuple(log_std.shape)}"
        )
    low, high = check_interval(low, high, "low", "high")
    dtype = compute_dtype(xp, log_std, "log_std")
    mu = xp.astype(mean, dtype, copy=False)
    ls = xp.astype(log_std, dtype, copy=False)
    inv_sigma = xp.exp(-ls)
    a = (low - mu) * inv_sigma
    b = (high - mu) * inv_sigma
    flip = (a + b) < 0
    alpha = xp.where(flip, -b, a)  # now alpha + beta >= 0 and beta > 0
    beta = xp.where(flip, -a, b)

    # Mean inside the (flipped) box: alpha < 0 < beta, the textbook formula is well conditioned.
    a_in = clip_above(xp, alpha, 0.0)
    z_in = 0.5 * (erf(xp, beta * math.sqrt(0.5)) - erf(xp, a_in * math.sqrt(0.5)))
    phi_a = xp.exp(-0.5 * a_in * a_in - _LOG_SQRT_2PI)
    phi_b = xp.exp(-0.5 * beta * beta - _LOG_SQRT_2PI)
    h_in = (
        ls + GAUSSIAN_ENTROPY_PER_DIM + xp.log(z_in) + (a_in * phi_a - beta * phi_b) / (2.0 * z_in)
    )

    # Mean left of the box: alpha >= 0, tail form.
    a_out = clip_below(xp, alpha, 0.0)
    b_out = xp.maximum(beta, a_out)
    m_a, eps_a = _mills(xp, a_out)
    m_b, _ = _mills(xp, b_out)
    log_r = -0.5 * (b_out - a_out) * (b_out + a_out) + xp.log(m_a) - xp.log(m_b)
    one_minus_r = -xp.expm1(log_r)
    r = xp.exp(log_r)
    h_out = (
        ls
        + 0.5
        - xp.log(m_a)
        + xp.log(one_minus_r)
        + 0.5 * a_out * eps_a
        + r * (a_out * m_a - b_out * m_b) / (2.0 * one_minus_r)
    )
    h = xp.where(alpha < 0, h_in, h_out)
    return xp.astype(xp.sum(h, axis=-1), log_std.dtype, copy=False)


def tanh_log_det_jacobian(u: Array) -> Array:
    r""":math:`\sum_i \log(1-\tanh(u_i)^2)`, the log-det of ``tanh``'s Jacobian, over the last axis.

    Computed as :math:`2(\log 2 - u - \mathrm{softplus}(-2u))`, which is exact for any ``u``
    where the naive form hits ``log(0)`` once ``tanh(u)`` rounds to 1 (docs/paper.md §1).
    """
    xp = namespace(u)
    check_ndim(u, "u", 1)
    compute_dtype(xp, u, "u")
    softplus = xp.logaddexp(xp.zeros_like(u), -2.0 * u)
    return xp.sum(2.0 * (math.log(2.0) - u - softplus), axis=-1)


def tanh_gaussian_entropy_from_noise(mean: Array, log_std: Array, noise: Array) -> Array:
    r"""Entropy of ``tanh(u)``, ``u ~ N(mean, exp(log_std)^2)``, estimated with given noise (Eq. 4).

    .. math:: H = H_{\text{gauss}} + \mathbb E_u\Big[\sum_i\log(1-\tanh(u_i)^2)\Big],\qquad
              u = \mu + \sigma\,\epsilon

    Args:
      mean, log_std: ``(..., D)``.
      noise: ``(S, ..., D)`` standard-normal draws :math:`\epsilon`; the estimate averages
        over the leading ``S`` axis. Passing the noise makes the estimate deterministic.

    Returns:
      ``(...)`` entropy estimates in nats.
    """
    xp = namespace(mean, log_std, noise)
    if tuple(mean.shape) != tuple(log_std.shape) or tuple(noise.shape[1:]) != tuple(mean.shape):
        raise ValueError(
            "mean and log_std must share a shape (..., D) and noise must be (S, ..., D); got "
            f"mean {tuple(mean.shape)}, log_std {tuple(log_std.shape)}, noise {tuple(noise.shape)}"
        )
    u = mean + xp.exp(log_std) * noise
    return gaussian_entropy(log_std) + xp.mean(tanh_log_det_jacobian(u), axis=0)


def tanh_gaussian_entropy(
    mean: Array, log_std: Array, num_samples: int, key_or_generator: Any = None
) -> Array:
    r"""Monte-Carlo entropy of a tanh-squashed diagonal Gaussian (paper Eq. 4).

    Draws ``num_samples`` standard-normal vectors with the array library's own random
    generator and calls :func:`tanh_gaussian_entropy_from_noise`.

    Args:
      mean, log_std: ``(..., D)``.
      num_samples: number of samples ``S >= 1``.
      key_or_generator: a ``jax.random`` key for JAX arrays (required); a
        ``torch.Generator`` or ``None`` for PyTorch; a ``numpy.random.Generator``, an int
        seed or ``None`` for NumPy.

    Returns:
      ``(...)`` entropy estimates (standard error shrinks as ``1/sqrt(S)``).
    """
    xp = namespace(mean, log_std)
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    shape = (int(num_samples), *tuple(mean.shape))
    dtype = compute_dtype(xp, log_std, "log_std")
    if array_api_compat.is_jax_array(mean):
        import jax

        if key_or_generator is None:
            raise ValueError("key_or_generator must be a jax.random key for JAX arrays, got None")
        noise = jax.random.normal(key_or_generator, shape, dtype=dtype)
    elif array_api_compat.is_torch_array(mean):
        import torch

        noise = torch.randn(shape, generator=key_or_generator, dtype=dtype, device=mean.device)
    else:
        import numpy as np

        rng = (
            key_or_generator
            if isinstance(key_or_generator, np.random.Generator)
            else np.random.default_rng(key_or_generator)
        )
        noise = xp.asarray(
            rng.standard_normal(shape), dtype=dtype, device=array_api_compat.device(mean)
        )
    mu = xp.astype(mean, dtype, copy=False)
    ls = xp.astype(log_std, dtype, copy=False)
    out = tanh_gaussian_entropy_from_noise(mu, ls, noise)
    return xp.astype(out, log_std.dtype, copy=False)
