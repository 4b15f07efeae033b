"""FastSAC: the FastTD3 learner with SAC's entropy objective instead of the noise mechanism.

As FastTD3's authors describe it (their ``fast_sac`` code): a tanh-squashed Gaussian actor with
log-std softly clipped to ``[-5, 2]``, sampled for exploration (no extra noise), and a learned
temperature alpha. Here it keeps FastTD3's categorical critic (so the three Fast* algorithms
differ only in the policy; the ``fast_sac`` code uses a scalar critic):

* critic target: the categorical projection of ``r + gamma * mask * (Z'(s', a') - alpha log
  pi(a'|s'))``, ``a' ~ pi(.|s')``;
* actor loss: ``E[alpha log pi(a|s) - min(Q1, Q2)(s, a)]``, on every ``policy_frequency``-th
  update (FastSAC's published default 2, as FastTD3);
* temperature loss: ``alpha * (H - H0)``, ``H = -log pi``, as :mod:`era_control.sac`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

from . import heads
from .fast_offpolicy import FastAgent, FastTD3Config, Metrics, Params
from .heads import Head, total_target_entropy


@dataclasses.dataclass(frozen=True)
class FastSACConfig(FastTD3Config):
    """FastTD3's defaults plus the temperature's. ``log_std_min``/``log_std_max``: FastSAC's
    actor (``LOG_STD_MIN = -5``, ``LOG_STD_MAX = 2``); the temperature fields are this
    package's SAC defaults (:class:`era_control.sac.SACConfig`)."""

    target_entropy_per_dim: float = -0.5
    init_temperature: float = 1.0
    temperature_lr: float = 3e-4
    log_std_min: float = -5.0
    log_std_max: float = 2.0


class FastSAC(FastAgent[FastSACConfig]):
    """FastSAC: the learned temperature alpha steers the entropy towards ``H0``."""

    stochastic = True

    def __init__(
        self, config: FastSACConfig, obs_dim: int, action_dim: int, capacity: int, num_envs: int
    ):
        self.target_entropy = total_target_entropy(
            config.target_entropy_per_dim, action_dim, config.log_std_max
        )
        self.temperature_opt = optax.adam(config.temperature_lr)
        super().__init__(config, obs_dim, action_dim, capacity, num_envs)

    def make_head(self) -> Head:
        """SAC's tanh-Gaussian head with FastSAC's log-std bounds."""
        cfg = self.config
        return heads.make_head(
            heads.SACHead.kind,
            self.action_dim,
            log_std_min=cfg.log_std_min,
            log_std_max=cfg.log_std_max,
        )

    @property
    def sac_head(self) -> Head:
        """The head (always built: this policy is stochastic)."""
        assert self.head is not None
        return self.head

    def sample(
        self, actor_params: Params, obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """``(a, log pi(a|s))``, ``a ~ pi(.|s)`` reparameterised."""
        mu, pre_std = self.actor_outputs(actor_params, obs)
        log_std, _ = self.sac_head.log_std(pre_std)
        action, log_prob = self.sac_head.sample(key, mu, log_std)
        assert log_prob is not None
        return action, log_prob

    def init_extra(self) -> dict[str, Any]:
        log_alpha = jnp.log(jnp.asarray(self.config.init_temperature, jnp.float32))
        return {"log_alpha": log_alpha, "temperature_opt": self.temperature_opt.init(log_alpha)}

    def target_action(
        self, actor_params: Params, extra: dict[str, Any], next_obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        return self.sample(actor_params, next_obs, key)

    def next_value_penalty(
        self, extra: dict[str, Any], next_log_prob: jax.Array | None
    ) -> jax.Array:
        assert next_log_prob is not None  # target_action returns it
        return jnp.exp(extra["log_alpha"]) * next_log_prob

    def actor_loss(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        critic_params: Params,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        action, log_prob = self.sample(actor_params, obs, key)
        q = self.q_value(critic_params, obs, action)
        loss = jnp.mean(jnp.exp(extra["log_alpha"]) * log_prob - q)
        entropy = -jnp.mean(log_prob)
        return loss, {"entropy": entropy, "target_entropy": jnp.asarray(self.target_entropy)}

    def update_extra(
        self, extra: dict[str, Any], aux: dict[str, jax.Array]
    ) -> tuple[dict[str, Any], Metrics]:
        entropy = jax.lax.stop_gradient(aux["entropy"])
        target = self.target_entropy
        assert target is not None  # set in __init__

        def loss_fn(log_alpha: jax.Array) -> jax.Array:
            return jnp.exp(log_alpha) * (entropy - target)

        loss, grad = jax.value_and_grad(loss_fn)(extra["log_alpha"])
        updates, opt = self.temperature_opt.update(grad, extra["temperature_opt"])
        log_alpha = cast(jax.Array, optax.apply_updates(extra["log_alpha"], updates))
        extra = {"log_alpha": log_alpha, "temperature_opt": opt}
        return extra, {"alpha": jnp.exp(log_alpha), "temperature_loss": loss}

    def explore_action(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        obs: jax.Array,
        key: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        return self.sample(actor_params, obs, key)[0]
