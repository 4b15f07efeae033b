"""TD-MPC2-ERA: TD-MPC2 with the policy prior's entropy constraint moved into its last
activation.

Everything of :mod:`era_control.tdmpc2_agent` (world model, losses, MPPI, warm start) except
the policy prior:

* its log-std is ``era_core.gaussian_log_std(pre_std, H0)`` (Eq. 11) through ERA's bounded head
  (``"tanh"`` by default, TD-MPC2's own squashing; ``"truncated"`` possible), so the Gaussian
  entropy before bounding is exactly ``H0 = D * target_entropy_per_dim`` in every state;
* its loss has **no entropy term**: ``(1/(H+1)) sum_t rho^t E[-Q(z_t, a) / S]``, ``a ~ pi(.|z_t)``
  (``entropy_coef`` must stay 0).

The planner samples the prior the same way (its trajectories seed MPPI). Defaults: TD-MPC2's
(:class:`~era_control.tdmpc2.TDMPC2Config`); ``target_entropy_per_dim = -0.5`` is ours (the
paper's value for TD-MPC2-ERA is not legible in our copy of it; -0.5 per dimension is SAC-ERA's
default), the compensation is 0 as in the paper's main results.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

import era_core

from . import heads
from .heads import Head, total_target_entropy
from .tdmpc2 import TDMPC2Config
from .tdmpc2_agent import TDMPC2

ERA_HEADS = ("tanh", "truncated")


@dataclasses.dataclass(frozen=True)
class TDMPC2ERAConfig(TDMPC2Config):
    """TD-MPC2's hyper-parameters with ERA's head and no entropy term."""

    head: str = "tanh"  # "tanh" (TD-MPC2's squashing) | "truncated"
    target_entropy_per_dim: float = -0.5  # H0 = D * this (ours; see the module docstring)
    entropy_coef: float = 0.0  # no entropy term: must stay 0

    def validate(self, action_dim: int) -> None:
        super().validate(action_dim)
        if self.head not in ERA_HEADS:
            raise ValueError(f"head must be one of {ERA_HEADS}, got {self.head!r}")
        if self.entropy_coef != 0.0:
            raise ValueError(
                f"entropy_coef must be 0 for the ERA policy prior (no entropy term), "
                f"got {self.entropy_coef}"
            )
        total_target_entropy(self.target_entropy_per_dim, action_dim, self.log_std_max)


class TDMPC2ERA(TDMPC2):
    """TD-MPC2-ERA: the ERA head fixes the prior's Gaussian entropy at ``H0``; no entropy term."""

    config: TDMPC2ERAConfig

    def __init__(self, config: TDMPC2ERAConfig, obs_dim: int, action_dim: int, capacity: int):
        config.validate(action_dim)
        self.target_entropy = total_target_entropy(
            config.target_entropy_per_dim, action_dim, config.log_std_max
        )
        super().__init__(config, obs_dim, action_dim, capacity)

    def make_head(self) -> Head:
        cfg = self.config
        return heads.make_head(
            cfg.head,
            self.action_dim,
            target_entropy=self.target_entropy,
            log_std_min=cfg.log_std_min,
            log_std_max=cfg.log_std_max,
        )

    def entropy_term(self, log_prob: jax.Array | None) -> jax.Array | float:
        return 0.0

    def entropy_metrics(
        self, mu: jax.Array, log_std: jax.Array, log_prob: jax.Array | None, key: jax.Array
    ) -> dict[str, jax.Array]:
        """``entropy`` of the bounded policy, ``gaussian_entropy`` (= ``H0``) and the target."""
        return {
            "entropy": jnp.mean(self.head.entropy(mu, log_std, key)),
            "gaussian_entropy": jnp.mean(era_core.gaussian_entropy(log_std)),
            "target_entropy": jnp.asarray(self.target_entropy, jnp.float32),
        }
