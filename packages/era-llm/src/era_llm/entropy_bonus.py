r"""An adaptive entropy bonus: the loss-side alternative to ERA (the baseline of the comparison).

The policy loss gets a bonus :math:`-\beta\,\bar H`, with :math:`\bar H` the differentiable mean
token entropy of the responses (:func:`masked_entropy_mean`), and the coefficient follows the
gap between a target entropy :math:`H^*` and the measured one by projected dual ascent:

.. math::

    \beta_{t+1} = \max\bigl(0,\ \beta_t + \eta\,(H^* - H_t)\bigr)

so the bonus grows while the entropy is below the target and shrinks (to 0 at least) above it.
In the style of Optax: the coefficient is a small immutable state, :func:`init` makes it and
the pure function :func:`update` returns the next one::

    state = entropy_bonus.init()
    for batch in batches:
        loss = entropy_bonus.apply(policy_loss, masked_entropy_mean(logits, mask), state)
        ...
        state = entropy_bonus.update(state, measured_entropy, target=0.45, lr=0.05)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

import era_core

__all__ = ["EntropyBonusState", "apply", "init", "masked_entropy_mean", "update"]


class EntropyBonusState(NamedTuple):
    """The bonus coefficient :math:`\\beta \\ge 0` (a Python float: it is checkpointed as is)."""

    coef: float = 0.0


def init(coef: float = 0.0) -> EntropyBonusState:
    """The starting state (``coef >= 0``; 0 = no bonus until the entropy falls below target)."""
    coef = float(coef)
    if not (math.isfinite(coef) and coef >= 0):
        raise ValueError(f"coef must be a finite number >= 0, got {coef}")
    return EntropyBonusState(coef)


def update(
    state: EntropyBonusState, entropy: float | torch.Tensor, *, target: float, lr: float
) -> EntropyBonusState:
    """One dual-ascent step: ``max(0, coef + lr * (target - entropy))``.

    Args:
      state: the current coefficient.
      entropy: the measured entropy (nats; a float or a 0-d tensor, read once here).
      target: the target entropy :math:`H^* \\ge 0` (nats).
      lr: the step size :math:`\\eta`.

    Example:
      >>> s = update(init(), 0.2, target=0.45, lr=0.1)
      >>> round(s.coef, 6), update(s, 1.0, target=0.45, lr=0.1).coef
      (0.025, 0.0)
    """
    if not target >= 0:
        raise ValueError(f"target must be >= 0 (an entropy in nats), got {target}")
    gap = target - float(entropy)
    return EntropyBonusState(max(0.0, state.coef + lr * gap))


def apply(loss: torch.Tensor, entropy_mean: torch.Tensor, state: EntropyBonusState) -> torch.Tensor:
    """The loss with the bonus: ``loss - coef * entropy_mean``."""
    return loss - state.coef * entropy_mean


def masked_entropy_mean(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Differentiable mean token entropy :math:`\sum_t m_t H(\mathrm{softmax}(z_t)) / \sum_t m_t`
    over the positions where ``mask`` is 1 (:func:`era_core.categorical_entropy` in float32).

    Args:
      logits: ``[B, T, V]``.
      mask: ``[B, T]`` (0 for prompt and padding).
    """
    entropy = era_core.categorical_entropy(logits.float(), axis=-1)
    return (entropy * mask).sum() / mask.sum().clamp(min=1)
