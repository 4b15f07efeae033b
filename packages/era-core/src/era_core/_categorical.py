"""Entropy of a categorical distribution given by logits."""

from __future__ import annotations

from ._backend import Array, compute_dtype, namespace

__all__ = ["categorical_entropy"]


def categorical_entropy(logits: Array, axis: int = -1) -> Array:
    r"""Entropy :math:`H=-\sum_i p_i\log p_i` of :math:`p=\mathrm{softmax}(z)` along ``axis``.

    Computed from the log-softmax with the row maximum subtracted, so it is exact for any
    finite logits (``+-1e4`` included); ``-inf`` entries are classes of probability 0 and
    contribute 0. Half-precision inputs are computed in float32 and cast back.

    Example:
      >>> import numpy as np
      >>> round(float(categorical_entropy(np.zeros(4))), 6)  # uniform over 4: log 4
      1.386294
    """
    xp = namespace(logits)
    dtype = compute_dtype(xp, logits, "logits")
    z = xp.astype(logits, dtype, copy=False)
    top = xp.max(z, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    shifted = z - top
    log_norm = xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    log_p = shifted - log_norm
    p = xp.exp(log_p)
    finite = xp.isfinite(log_p)
    terms = xp.where(finite, p * xp.where(finite, log_p, xp.zeros_like(log_p)), xp.zeros_like(p))
    return xp.astype(-xp.sum(terms, axis=axis), logits.dtype, copy=False)
