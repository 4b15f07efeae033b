"""The learned compensation delta of Gaussian ERA (paper Eq. 12, docs/paper.md §1)."""

from __future__ import annotations

from ._backend import Array, as_float_array, compute_dtype, is_scalar, namespace, stop_gradient

__all__ = ["compensation_loss", "compensation_value"]

_PARAMETERIZATIONS = ("log", "softplus", "value")


def compensation_value(param: Array, parameterization: str = "log") -> Array:
    r"""The compensation :math:`\delta \ge 0` from its unconstrained parameter.

    ``"log"``: :math:`\delta=e^{p}` (default, like SAC's ``log_alpha``); ``"softplus"``:
    :math:`\delta=\log(1+e^{p})`; ``"value"``: :math:`\delta=p` (the caller keeps it >= 0).
    """
    if parameterization not in _PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {_PARAMETERIZATIONS}, got {parameterization!r}"
        )
    xp = namespace(param)
    compute_dtype(xp, param, "log_compensation_or_value")
    if parameterization == "log":
        return xp.exp(param)
    if parameterization == "softplus":
        return xp.logaddexp(xp.zeros_like(param), param)
    return param


def compensation_loss(
    log_compensation_or_value: Array,
    entropy: Array,
    target_entropy: float | Array,
    *,
    parameterization: str = "log",
) -> Array:
    r"""Dual loss of the learned compensation (paper Eq. 12), SAC's temperature loss in form.

    .. math:: L(\delta) = \mathbb{E}_s\big[\delta\,(H[\pi(\cdot\mid s)] - H_0)\big],\qquad \delta\ge0

    minimised over the parameter of :math:`\delta` only (the entropy is treated as a
    constant: its gradient is stopped). When the entropy of the final, bounded policy falls
    below :math:`H_0`, the gradient pushes :math:`\delta` up, raising the Gaussian target
    :math:`H_0+\delta` of :func:`gaussian_log_std`.

    Args:
      log_compensation_or_value: the parameter :math:`p` of :math:`\delta` (see
        :func:`compensation_value`; by default :math:`\delta=e^p`).
      entropy: ``(...)`` entropy estimates of the final policy, e.g. ``-log pi(a|s)`` of
        sampled actions.
      target_entropy: :math:`H_0` (float or array broadcastable to ``entropy``).
      parameterization: ``"log"`` (default), ``"softplus"`` or ``"value"``.

    Returns:
      A 0-d array, the mean of :math:`\delta (H - H_0)` over ``entropy``.

    Example:
      >>> import numpy as np
      >>> float(compensation_loss(np.log(2.0), np.array([1.0, 3.0]), 1.0))
      2.0
    """
    xp = namespace(entropy)
    compute_dtype(xp, entropy, "entropy")
    param = log_compensation_or_value
    if is_scalar(param):
        param = as_float_array(xp, param, entropy, "log_compensation_or_value")
    delta = compensation_value(param, parameterization)
    target = as_float_array(xp, target_entropy, entropy, "target_entropy")
    gap = stop_gradient(xp, entropy - target)
    return xp.mean(delta * gap)
