r"""GRPO's group-normalised advantages with dynamic sampling (docs/paper.md §3).

Rewards come prompt-major: rows ``g * n .. g * n + n - 1`` are the ``n`` responses to prompt
``g``. Within each group

.. math::

    A_{g,j} = \frac{r_{g,j} - \mathrm{mean}_j\, r_{g,j}}{\mathrm{std}_j\, r_{g,j} + \epsilon}

with the unbiased (``n - 1``) standard deviation; :math:`\epsilon` only guards a zero std. A
group whose rewards are all equal carries no signal and is dropped (dynamic sampling, DAPO).
"""

from __future__ import annotations

import torch

__all__ = ["ADV_EPS", "group_advantages"]

ADV_EPS = 1e-6


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, eps: float = ADV_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, keep)``: ``[B]`` floating-point advantages and a ``[B]`` bool mask of the
    rows whose group has at least two different rewards. Integer or bool rewards are read as
    float32 (the advantages are never rounded: ERA's sign test ``A > 0`` sees ``0 < A < 1``).

    Args:
      rewards: ``[B]`` rewards, ``B = groups * group_size``, prompt-major.
      group_size: responses per prompt, ``>= 2``.
      eps: added to each group's std.

    Example:
      >>> import torch
      >>> adv, keep = group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), 2)
      >>> [round(a, 4) for a in adv.tolist()], keep.tolist()
      ([0.7071, -0.7071, 0.0, 0.0], [True, True, False, False])
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an int >= 2 (a group to compare), got {group_size!r}")
    if rewards.ndim != 1 or rewards.shape[0] % group_size:
        raise ValueError(
            f"rewards must have shape (groups * group_size,) with group_size={group_size}, "
            f"got {tuple(rewards.shape)}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.float32)
    g = rewards.view(-1, group_size)
    adv = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)
    keep = (g.max(1).values > g.min(1).values).repeat_interleave(group_size)
    return adv.reshape(-1), keep
