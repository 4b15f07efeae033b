"""Adaptive ERA for LLM RL (paper Eqs. 16-17, docs/paper.md §3): per-response logit scales."""

from __future__ import annotations

import math

import array_api_compat

from ._backend import Array, clip_below, compute_dtype, namespace
from ._validation import check_interval, finite_float

__all__ = ["logit_scale", "response_entropy", "scale_advantages"]


def response_entropy(token_entropy: Array, mask: Array, frac: float = 0.2) -> Array:
    r"""Per response, the mean of its top-``frac`` masked token entropies (docs/paper.md §3).

    For row ``i`` with :math:`n_i` tokens where ``mask`` is set,
    :math:`k_i=\max(1,\lfloor \text{frac}\cdot n_i\rfloor)` and the result is the mean of the
    :math:`k_i` largest entropies among them. Vectorised: one descending sort per row, then
    a masked mean of the first :math:`k_i` positions; no Python loop over responses. Rows
    with no token (:math:`n_i=0`) give 0.

    Args:
      token_entropy: ``(B, T)`` entropies of the unmodified policy at each token.
      mask: ``(B, T)`` response mask (bool or 0/1); padding and prompt tokens are 0.
      frac: share of the top entropies to average, in ``(0, 1]`` (the paper: 0.2).

    Returns:
      ``(B,)`` response entropies, in ``token_entropy``'s dtype.

    Example:
      >>> import numpy as np
      >>> ent = np.array([[0.1, 2.0, 0.3, 0.4, 1.0, 0.0]])
      >>> response_entropy(ent, np.array([[1, 1, 1, 1, 1, 0]]), frac=0.4)  # k = floor(0.4 * 5) = 2
      array([1.5])
    """
    frac = finite_float(frac, "frac")
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    xp = namespace(token_entropy, mask)
    if token_entropy.ndim != 2 or tuple(mask.shape) != tuple(token_entropy.shape):
        raise ValueError(
            "token_entropy and mask must both have shape (batch, tokens), got "
            f"{tuple(token_entropy.shape)} and {tuple(mask.shape)}"
        )
    dtype = compute_dtype(xp, token_entropy, "token_entropy")
    valid = mask if xp.isdtype(mask.dtype, "bool") else mask != 0
    ent = xp.astype(token_entropy, dtype, copy=False)
    ranked = xp.sort(xp.where(valid, ent, -math.inf), axis=-1, descending=True)
    count = xp.sum(xp.astype(valid, dtype, copy=False), axis=-1)
    k = clip_below(xp, xp.floor(frac * count), 1.0)
    positions = xp.arange(ent.shape[-1], dtype=dtype, device=array_api_compat.device(ent))
    take = (positions[None, :] < k[:, None]) & (positions[None, :] < count[:, None])
    total = xp.sum(xp.where(take, ranked, xp.zeros_like(ranked)), axis=-1)
    out = xp.where(count > 0, total / k, xp.zeros_like(total))
    return xp.astype(out, token_entropy.dtype, copy=False)


def logit_scale(
    response_entropy: Array,
    advantages: Array,
    *,
    low: float = 0.45,
    high: float = 3.0,
    k: float = 2.0,
) -> Array:
    r"""The per-response logit factor :math:`c_i` of paper Eq. 16.

    .. math::
        c_i = \begin{cases} k & H_i < \omega_{\text{low}},\ A_i > 0 \quad\text{(sharpen)}\\
                            1/k & H_i > \omega_{\text{high}},\ A_i > 0 \quad\text{(flatten)}\\
                            1 & \text{otherwise} \end{cases}

    The update then uses :math:`z' = c_i z` for every token of response ``i`` (equivalently a
    sampling temperature :math:`1/c_i`).

    Args:
      response_entropy: ``(B,)`` from :func:`response_entropy`.
      advantages: ``(B,)`` response advantages :math:`A_i`.
      low, high: the band :math:`[\omega_{\text{low}}, \omega_{\text{high}}]`, ``low < high``.
      k: the factor, ``k > 1``.

    Returns:
      ``(B,)`` factors in ``response_entropy``'s dtype.
    """
    low, high = check_interval(low, high, "low", "high")
    k = finite_float(k, "k")
    if not k > 1.0:
        raise ValueError(f"k must be > 1, got {k}")
    xp = namespace(response_entropy, advantages)
    compute_dtype(xp, response_entropy, "response_entropy")
    if tuple(response_entropy.shape) != tuple(advantages.shape):
        raise ValueError(
            "response_entropy and advantages must have the same shape, got "
            f"{tuple(response_entropy.shape)} and {tuple(advantages.shape)}"
        )
    positive = advantages > 0
    ones = xp.ones_like(response_entropy)
    sharpen = positive & (response_entropy < low)
    flatten = positive & (response_entropy > high)
    return xp.where(sharpen, k * ones, xp.where(flatten, ones / k, ones))


def scale_advantages(advantages: Array, scale: Array) -> Array:
    r"""Advantage scaling of paper Eq. 17: :math:`A'_i = A_i / c_i` (optional in the paper)."""
    xp = namespace(advantages, scale)
    if tuple(advantages.shape) != tuple(scale.shape):
        raise ValueError(
            f"advantages and scale must have the same shape, got {tuple(advantages.shape)} and {tuple(scale.shape)}"
        )
    return advantages / xp.astype(scale, advantages.dtype, copy=False)
