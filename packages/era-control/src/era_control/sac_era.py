"""SAC-ERA: SAC with the entropy constraint moved into the policy's last activation.

There is **no entropy term and no temperature alpha anywhere** (docs/paper.md §1):

* policy: a truncated normal on ``[-1, 1]`` with location ``tanh(mu)`` (default, the authors'
  reference) or a tanh-squashed Gaussian, whose log-std comes from
  ``era_core.gaussian_log_std(pre_std, H0 + delta)`` (Eq. 11), so the Gaussian entropy before
  bounding is exactly ``H0 + delta`` in every state (or on average over the batch with
  ``batch_level=True``, App. C.1.2);
* critic target: ``r + gamma * mask * min(Q1', Q2')(s', a')``, ``a' ~ pi(.|s')``;
* actor loss: ``-E[min(Q1, Q2)(s, a)]``, ``a ~ pi(.|s)`` reparameterised;
* compensation ``delta`` (bounding lowers the entropy below ``H0``): constant (``0`` in the
  paper's main results) or learned with ``era_core.compensation_loss`` (Eq. 12).

The shared critic, target network, replay buffer and fused update are in
:mod:`era_control.offpolicy`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

import era_core

from . import heads
from .heads import Head, total_target_entropy
from .offpolicy import OffPolicyAgent, OffPolicyConfig

COMPENSATIONS = ("constant", "learned")
BOUNDED_HEADS = ("truncated", "tanh")  # the ERA head kinds whose actions lie in [-1, 1]


@dataclasses.dataclass(frozen=True)
class SACERAConfig(OffPolicyConfig):
    """SAC-ERA hyper-parameters: the shared ones plus the ERA head's (docs/paper.md §1)."""

    head: str = "truncated"  # "truncated" | "tanh"
    target_entropy_per_dim: float = -0.5  # H0 = D * this
    log_std_min: float = -8.0
    log_std_max: float = 0.0
    compensation: str = "constant"  # "constant" | "learned"
    delta: float = 0.0  # the constant delta, or the initial learned one
    delta_lr: float = 3e-4
    batch_level: bool = False
    running_momentum: float = 0.01  # batch-level: running log-partition for acting


class SACERA(OffPolicyAgent):
    """SAC-ERA: the ERA head fixes the Gaussian's entropy at ``H0 + delta``; no alpha."""

    config: SACERAConfig

    def __init__(self, config: SACERAConfig, obs_dim: int, action_dim: int, capacity: int):
        if config.head not in BOUNDED_HEADS:
            raise ValueError(f"head must be one of {BOUNDED_HEADS}, got {config.head!r}")
        if config.compensation not in COMPENSATIONS:
            raise ValueError(
                f"compensation must be one of {COMPENSATIONS}, got {config.compensation!r}"
            )
        if config.delta < 0:
            raise ValueError(f"delta must be >= 0, got {config.delta}")
        if config.batch_level and config.compensation == "learned":
            raise ValueError("batch_level=True supports a constant compensation only")
        self.target_entropy = total_target_entropy(
            config.target_entropy_per_dim, action_dim, config.log_std_max, config.delta
        )
        self.delta_opt = optax.adam(config.delta_lr)
        super().__init__(config, obs_dim, action_dim, capacity)

    def make_head(self) -> Head:
        cfg = self.config
        return heads.make_head(
            cfg.head,
            self.action_dim,
            target_entropy=self.target_entropy,
            log_std_min=cfg.log_std_min,
            log_std_max=cfg.log_std_max,
            batch_level=cfg.batch_level,
        )

    def init_extra(self) -> dict[str, Any]:
        extra = {}
        if self.config.compensation == "learned":
            log_delta = jnp.asarray(math.log(max(self.config.delta, 1e-2)), jnp.float32)
            extra.update(log_delta=log_delta, delta_opt=self.delta_opt.init(log_delta))
        if self.config.batch_level:
            extra["log_partition"] = jnp.asarray(math.log(self.action_dim), jnp.float32)
        return extra

    def delta(self, extra: dict[str, Any]) -> jax.Array | float:
        if self.config.compensation == "learned":
            return era_core.compensation_value(extra["log_delta"], "log")
        return self.config.delta

    def actor_loss(
        self,
        actor_params: Any,
        extra: dict[str, Any],
        critic_params: Any,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        k_sample, k_entropy = jax.random.split(key)
        mu, log_std, log_z = self.distribution(actor_params, extra, obs, training=True)
        action, _ = self.head.sample(k_sample, mu, log_std)
        q = cast(jax.Array, self.critic.apply(critic_params, obs, action)).min(0)
        loss = -jnp.mean(q)
        entropy = jax.lax.stop_gradient(self.head.entropy(mu, log_std, k_entropy))
        aux = {
            "entropy": jnp.mean(entropy),
            "gaussian_entropy": jnp.mean(era_core.gaussian_entropy(log_std)),
            "target_entropy": jnp.asarray(self.target_entropy),
            "_entropy_per_state": entropy,
            "_log_partition": jax.lax.stop_gradient(log_z),
        }
        return loss, aux

    def update_extra(
        self, extra: dict[str, Any], aux: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        extra, metrics = dict(extra), {}
        if self.config.compensation == "learned":

            def loss_fn(log_delta: jax.Array) -> jax.Array:
                return era_core.compensation_loss(
                    log_delta, aux["_entropy_per_state"], self.target_entropy
                )

            loss, grad = jax.value_and_grad(loss_fn)(extra["log_delta"])
            updates, extra["delta_opt"] = self.delta_opt.update(grad, extra["delta_opt"])
            extra["log_delta"] = optax.apply_updates(extra["log_delta"], updates)
            metrics["delta_loss"] = loss
        if self.config.batch_level:
            extra["log_partition"] = era_core.update_running_log_partition(
                extra["log_partition"], aux["_log_partition"], self.config.running_momentum
            )
        metrics["delta"] = jnp.minimum(
            jnp.asarray(self.delta(extra), jnp.float32), self.head.max_compensation
        )
        return extra, metrics
