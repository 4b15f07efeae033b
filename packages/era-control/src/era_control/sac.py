"""SAC, the baseline: a tanh-squashed Gaussian policy and a learned temperature alpha.

Read top to bottom with :mod:`era_control.offpolicy` (the shared critic, target network,
replay buffer and fused update):

* critic target: ``r + gamma * mask * (min(Q1', Q2')(s', a') - alpha * log pi(a'|s'))``;
* actor loss: ``E[alpha * log pi(a|s) - min(Q1, Q2)(s, a)]``, ``a ~ pi(.|s)`` reparameterised;
* temperature loss: ``alpha * (H - H0)`` with ``H = -log pi(a|s)`` (alpha grows when the
  entropy falls below the target ``H0 = D * target_entropy_per_dim``), ``alpha = exp(log_alpha)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

from . import heads
from .heads import Head, total_target_entropy
from .offpolicy import OffPolicyAgent, OffPolicyConfig


@dataclasses.dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """SAC hyper-parameters: the shared ones plus the temperature's (paper Table 6)."""

    target_entropy_per_dim: float = -0.5  # H0 = D * this (jaxrl: -D/2)
    init_temperature: float = 1.0
    temperature_lr: float = 3e-4
    log_std_min: float = -5.0
    log_std_max: float = 2.0


class SAC(OffPolicyAgent):
    """SAC: the learned temperature alpha steers the policy's entropy towards ``H0``."""

    config: SACConfig

    def __init__(self, config: SACConfig, obs_dim: int, action_dim: int, capacity: int):
        self.target_entropy = total_target_entropy(
            config.target_entropy_per_dim, action_dim, config.log_std_max
        )
        self.temperature_opt = optax.adam(config.temperature_lr)
        super().__init__(config, obs_dim, action_dim, capacity)

    def make_head(self) -> Head:
        cfg = self.config
        return heads.make_head(
            "sac", self.action_dim, log_std_min=cfg.log_std_min, log_std_max=cfg.log_std_max
        )

    def init_extra(self) -> dict[str, Any]:
        log_alpha = jnp.log(jnp.asarray(self.config.init_temperature, jnp.float32))
        return {"log_alpha": log_alpha, "temperature_opt": self.temperature_opt.init(log_alpha)}

    def next_value_penalty(
        self, extra: dict[str, Any], next_log_prob: jax.Array | None
    ) -> jax.Array:
        # the SAC head always returns log pi
        return jnp.exp(extra["log_alpha"]) * cast(jax.Array, next_log_prob)

    def actor_loss(
        self,
        actor_params: Any,
        extra: dict[str, Any],
        critic_params: Any,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        action, log_prob = self.sample(actor_params, extra, obs, key)
        log_prob = cast(jax.Array, log_prob)  # the SAC head always returns log pi
        q = cast(jax.Array, self.critic.apply(critic_params, obs, action)).min(0)
        alpha = jnp.exp(extra["log_alpha"])
        loss = jnp.mean(alpha * log_prob - q)
        entropy = -jnp.mean(log_prob)
        return loss, {"entropy": entropy, "target_entropy": jnp.asarray(self.target_entropy)}

    def update_extra(
        self, extra: dict[str, Any], aux: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        entropy = jax.lax.stop_gradient(aux["entropy"])

        def loss_fn(log_alpha: jax.Array) -> jax.Array:
            return jnp.exp(log_alpha) * (entropy - self.target_entropy)

        loss, grad = jax.value_and_grad(loss_fn)(extra["log_alpha"])
        updates, opt = self.temperature_opt.update(grad, extra["temperature_opt"])
        log_alpha = cast(jax.Array, optax.apply_updates(extra["log_alpha"], updates))
        extra = {"log_alpha": log_alpha, "temperature_opt": opt}
        return extra, {"alpha": jnp.exp(log_alpha), "temperature_loss": loss}
