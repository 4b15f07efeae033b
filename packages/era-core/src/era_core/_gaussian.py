"""Gaussian ERA: the log-std activation of paper Eq. 11 and its batch-level variant.

docs/paper.md §1. A policy network outputs a mean ``mu`` and a raw "pre-std" ``s`` (both D
dims). The activation maps ``s`` to a log-std whose Gaussian entropy is the target.
"""

from __future__ import annotations

import math
from typing import Any

from ._backend import (
    Array,
    Namespace,
    as_float_array,
    clip_below,
    compute_dtype,
    is_concrete,
    is_scalar,
    namespace,
    softmax,
)
from ._validation import check_finite_array, check_interval, check_ndim, finite_float

__all__ = [
    "GAUSSIAN_ENTROPY_PER_DIM",
    "batch_gaussian_log_std",
    "gaussian_entropy",
    "gaussian_log_std",
    "max_gaussian_entropy",
    "update_running_log_partition",
]

#: Entropy of a unit-variance normal, ``log(sqrt(2*pi*e))`` nats per dimension.
GAUSSIAN_ENTROPY_PER_DIM = 0.5 * math.log(2.0 * math.pi * math.e)


def max_gaussian_entropy(action_dim: int, log_std_max: float = 0.0) -> float:
    """Largest entropy ERA can reach for ``action_dim`` dims: ``D * (log sqrt(2 pi e) + log_std_max)``.

    A target (plus compensation) above this is infeasible (``K > 0`` in Eq. 11).
    """
    if isinstance(action_dim, bool) or int(action_dim) != action_dim or action_dim < 1:
        raise ValueError(f"action_dim must be a positive integer, got {action_dim!r}")
    return int(action_dim) * (GAUSSIAN_ENTROPY_PER_DIM + finite_float(log_std_max, "log_std_max"))


def gaussian_entropy(log_std: Array) -> Array:
    r"""Differential entropy of a diagonal Gaussian, summed over the last axis.

    .. math:: H = \sum_i \log\sigma_i + D \log\sqrt{2\pi e}

    Args:
      log_std: ``(..., D)`` log standard deviations.

    Returns:
      ``(...)`` entropies in nats, in ``log_std``'s dtype.

    Example:
      >>> import numpy as np
      >>> round(float(gaussian_entropy(np.zeros(3))), 6)  # 3 unit normals: 3 log sqrt(2 pi e)
      4.256816
    """
    xp = namespace(log_std)
    check_ndim(log_std, "log_std", 1)
    compute_dtype(xp, log_std, "log_std")
    return xp.sum(log_std, axis=-1) + log_std.shape[-1] * GAUSSIAN_ENTROPY_PER_DIM


def _budget(
    xp: Namespace,
    pre_std: Array,
    target_entropy: float | Array,
    compensation: float | Array,
    log_std_max: float,
    dtype: Any,
) -> Array:
    """``K = H0 + delta - D log sqrt(2 pi e) - D log_std_max`` (Eq. 11), checked for ``K <= 0``.

    Python-float targets are checked eagerly and give a Python float; array targets (e.g. a
    learned delta) give an array and are checked only when their values are concrete.
    """
    dim = pre_std.shape[-1]
    ceiling = max_gaussian_entropy(dim, log_std_max)
    scalar = is_scalar(target_entropy) and is_scalar(compensation)
    if scalar:
        target = finite_float(target_entropy, "target_entropy")
        comp = finite_float(compensation, "compensation")
        if target + comp > ceiling:
            raise ValueError(
                f"target_entropy + compensation = {target + comp:.6g} is infeasible for "
                f"{dim} action dims with log_std_max={log_std_max}: the largest feasible "
                f"target is {ceiling - comp:.6g} (= {dim} * (log sqrt(2*pi*e) + log_std_max)"
                f"{' - compensation' if comp else ''})"
            )
        return target + comp - ceiling
    like = xp.astype(pre_std[..., 0], dtype, copy=False)
    target = as_float_array(xp, target_entropy, like, "target_entropy")
    comp = as_float_array(xp, compensation, like, "compensation")
    check_finite_array(xp, target_entropy, "target_entropy")
    check_finite_array(xp, compensation, "compensation")
    budget = target + comp - ceiling
    if is_concrete(budget) and bool(xp.any(budget > 0)):
        worst = float(xp.max(target + comp))
        raise ValueError(
            f"target_entropy + compensation reaches {worst:.6g}, infeasible for {dim} action "
            f"dims with log_std_max={log_std_max}: the largest feasible target is {ceiling:.6g} "
            "(minus the compensation)"
        )
    return budget


def gaussian_log_std(
    pre_std: Array,
    target_entropy: float | Array,
    *,
    log_std_min: float = -8.0,
    log_std_max: float = 0.0,
    compensation: float | Array = 0.0,
) -> Array:
    r"""ERA's Gaussian activation (paper Eq. 11): a log-std with a fixed total entropy.

    .. math::
        H_0' = H_0 + \delta,\qquad
        K = H_0' - D\log\sqrt{2\pi e} - D\,\log\sigma_{\max},\\
        \log\sigma_i = \max\big(\log\sigma_{\max} + K\,\mathrm{softmax}(s)_i,\ \log\sigma_{\min}\big).

    The softmax weights sum to one, so the Gaussian entropy
    :math:`\sum_i\log\sigma_i + D\log\sqrt{2\pi e}` equals :math:`H_0'` exactly wherever the
    lower clamp does not fire, and exceeds it where it does: the network only chooses how to
    *allocate* the entropy budget across dimensions (docs/paper.md §1).

    Args:
      pre_std: ``(..., D)`` raw network outputs ``s``.
      target_entropy: :math:`H_0`, the total (not per-dimension) target entropy in nats; a
        Python float or an array broadcastable to ``pre_std.shape[:-1]``.
      log_std_min: lower clamp :math:`\log\sigma_{\min}`.
      log_std_max: upper bound :math:`\log\sigma_{\max}`; every output is ``<=`` it.
      compensation: :math:`\delta \ge 0` added to the target (a float or an array, e.g. a
        learned ``exp(log_delta)``), compensating the entropy a bounded action space loses.

    Returns:
      ``(..., D)`` log standard deviations, in ``pre_std``'s type, device and dtype.

    Raises:
      ValueError: if ``K > 0`` (the message names the largest feasible target), if
        ``log_std_min >= log_std_max``, or if a target is not finite.

    Example:
      >>> import numpy as np
      >>> log_std = gaussian_log_std(np.array([[0.3, -1.0, 2.0]]), target_entropy=-3.0)
      >>> round(float(gaussian_entropy(log_std)[0]), 10)
      -3.0
    """
    xp = namespace(pre_std)
    check_ndim(pre_std, "pre_std", 1)
    log_std_min, log_std_max = check_interval(
        log_std_min, log_std_max, "log_std_min", "log_std_max"
    )
    dtype = compute_dtype(xp, pre_std, "pre_std")
    budget = _budget(xp, pre_std, target_entropy, compensation, log_std_max, dtype)
    s = xp.astype(pre_std, dtype, copy=False)
    if not isinstance(budget, float):
        budget = budget[..., None]
    log_std = clip_below(xp, log_std_max + budget * softmax(xp, s), log_std_min)
    return xp.astype(log_std, pre_std.dtype, copy=False)


def _log_mean_partition(xp: Namespace, s: Array) -> Array:
    """``log mean_batch sum_j exp(s_j)`` over all leading axes, computed stably."""
    row_max = xp.max(s, axis=-1, keepdims=True)
    log_z = xp.log(xp.sum(xp.exp(s - row_max), axis=-1)) + row_max[..., 0]
    flat = xp.reshape(log_z, (-1,))
    top = xp.max(flat)
    return xp.log(xp.mean(xp.exp(flat - top))) + top


def batch_gaussian_log_std(
    pre_std: Array,
    target_entropy: float | Array,
    *,
    log_std_min: float = -8.0,
    log_std_max: float = 0.0,
    compensation: float | Array = 0.0,
    log_partition: Array | None = None,
) -> tuple[Array, Array]:
    r"""Batch-level Gaussian ERA (paper App. C.1.2): the *batch-average* entropy is the target.

    Our derivation of the batch-level form (the paper's Eq. 36), given in ``docs/core.md``.
    Replace the per-state softmax of Eq. 11 by weights normalised over the whole batch:

    .. math::
        w_i(s) = \frac{e^{s_i}}{\bar Z},\qquad
        \bar Z = \frac1B\sum_{b=1}^{B}\sum_{j=1}^{D} e^{s^{(b)}_j},\qquad
        \log\sigma_i(s) = \max\big(\log\sigma_{\max} + K\,w_i(s),\ \log\sigma_{\min}\big).

    Since :math:`\frac1B\sum_b\sum_i w_i(s^{(b)}) = 1`, the batch mean of the Gaussian entropy
    is exactly :math:`H_0'` when no clamp fires, while each state's entropy is free (states
    with a large :math:`\sum_j e^{s_j}` get less). Every :math:`\log\sigma_i\le\log\sigma_{\max}`.
    At evaluation, pass the running :math:`\log\bar Z` kept with
    :func:`update_running_log_partition`, as BatchNorm keeps running statistics.

    Args:
      pre_std: ``(..., D)`` raw outputs; every leading axis is part of the batch.
      target_entropy, log_std_min, log_std_max, compensation: as in :func:`gaussian_log_std`
        (scalars here, since the target is a batch-level quantity).
      log_partition: ``None`` in training (use this batch's :math:`\log\bar Z`), or the
        running value for evaluation.

    Returns:
      ``(log_std, batch_log_partition)``: the log-stds and this batch's :math:`\log\bar Z`
      (a 0-d array in ``pre_std``'s dtype) to feed into :func:`update_running_log_partition`.
    """
    xp = namespace(pre_std)
    check_ndim(pre_std, "pre_std", 1)
    log_std_min, log_std_max = check_interval(
        log_std_min, log_std_max, "log_std_min", "log_std_max"
    )
    dtype = compute_dtype(xp, pre_std, "pre_std")
    budget = _budget(
        xp,
        pre_std,
        finite_float(target_entropy, "target_entropy"),
        finite_float(compensation, "compensation"),
        log_std_max,
        dtype,
    )
    s = xp.astype(pre_std, dtype, copy=False)
    batch_log_z = _log_mean_partition(xp, s)
    if log_partition is None:
        log_z = batch_log_z
    else:
        log_z = as_float_array(xp, log_partition, batch_log_z, "log_partition")
    weights = xp.exp(s - log_z)
    log_std = clip_below(xp, log_std_max + budget * weights, log_std_min)
    return xp.astype(log_std, pre_std.dtype, copy=False), xp.astype(
        batch_log_z, pre_std.dtype, copy=False
    )


def update_running_log_partition(
    running: Array, batch_log_partition: Array, momentum: float = 0.01
) -> Array:
    r"""Exponential moving average of the batch partition :math:`\bar Z`, kept in log space.

    .. math:: \log\bar Z_{\text{run}} \leftarrow
              \log\big((1-m)\,\bar Z_{\text{run}} + m\,\bar Z_{\text{batch}}\big)

    computed as a ``logaddexp`` so it never overflows. ``running=None`` starts the average
    at the batch value.
    """
    momentum = finite_float(momentum, "momentum")
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum must be in (0, 1], got {momentum}")
    if running is None:
        return batch_log_partition
    xp = namespace(running, batch_log_partition)
    a = running + math.log1p(-momentum) if momentum < 1.0 else None
    b = batch_log_partition + math.log(momentum)
    if a is None:
        return b
    top = xp.maximum(a, b)
    return top + xp.log(xp.exp(a - top) + xp.exp(b - top))
