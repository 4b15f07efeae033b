"""FastSAC-ERA (paper App. A.1.5): FastTD3 with ERA on the actor's output.

FastTD3 (:mod:`era_control.fasttd3`) with two changes and nothing else (the paper keeps every
other FastTD3 hyper-parameter):

* the actor is stochastic: a truncated normal on ``[-1, 1]`` with location ``tanh(mu)``
  (default) or a tanh-squashed Gaussian, whose log-std is
  ``era_core.gaussian_log_std(pre_std, H0 + delta)`` (heads ``"truncated"`` / ``"tanh"`` of
  :mod:`era_control.heads`), so the Gaussian entropy before bounding is ``H0 + delta`` in every
  state, ``H0 = D * target_entropy_per_dim`` as for SAC-ERA;
* no delayed policy update: the actor is updated on every gradient update.

FastTD3's noise mechanism is kept: data is collected with ``a ~ pi(.|s)`` plus the
per-environment exploration noise, and the critic target uses ``a' ~ pi(.|s')`` plus the
clipped smoothing noise (both clipped to ``[-1, 1]``). There is **no entropy term and no
temperature anywhere**: the critic target is the categorical projection of
``r + gamma * mask * Z'(s', a')`` and the actor loss is ``-E[min(Q1, Q2)(s, a ~ pi)]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

import era_core

from . import heads
from .fast_offpolicy import FastAgent, FastTD3Config, Params
from .heads import Head, total_target_entropy

BOUNDED_HEADS = ("truncated", "tanh")


@dataclasses.dataclass(frozen=True)
class FastSACERAConfig(FastTD3Config):
    """FastTD3's defaults, no delayed actor update, and the ERA head's fields (as SAC-ERA)."""

    policy_frequency: int = 1  # no delayed policy update (paper App. A.1.5)
    head: str = "truncated"  # "truncated" | "tanh"
    target_entropy_per_dim: float = -0.5  # H0 = D * this (SAC-ERA's default)
    log_std_min: float = -8.0
    log_std_max: float = 0.0
    delta: float = 0.0  # constant compensation (0 in the paper's main results)


class FastSACERA(FastAgent[FastSACERAConfig]):
    """FastSAC-ERA: the ERA head fixes the Gaussian's entropy at ``H0 + delta``; no alpha."""

    stochastic = True

    def __init__(
        self, config: FastSACERAConfig, obs_dim: int, action_dim: int, capacity: int, num_envs: int
    ):
        if config.head not in BOUNDED_HEADS:
            raise ValueError(f"head must be one of {BOUNDED_HEADS}, got {config.head!r}")
        if config.delta < 0:
            raise ValueError(f"delta must be >= 0, got {config.delta}")
        self.target_entropy = total_target_entropy(
            config.target_entropy_per_dim, action_dim, config.log_std_max, config.delta
        )
        super().__init__(config, obs_dim, action_dim, capacity, num_envs)

    def make_head(self) -> Head:
        """The ERA head of ``config.head`` with target ``H0 + delta``."""
        cfg = self.config
        return heads.make_head(
            cfg.head,
            self.action_dim,
            target_entropy=self.target_entropy,
            log_std_min=cfg.log_std_min,
            log_std_max=cfg.log_std_max,
        )

    def policy(self, actor_params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(mu, log_std)`` with the ERA log-std."""
        mu, pre_std = self.actor_outputs(actor_params, obs)
        log_std, _ = self.era_head.log_std(pre_std, self.config.delta)
        return mu, log_std

    @property
    def era_head(self) -> Head:
        """The head (always built: this policy is stochastic)."""
        assert self.head is not None
        return self.head

    def sample(self, actor_params: Params, obs: jax.Array, key: jax.Array) -> jax.Array:
        """``a ~ pi(.|s)`` (bounded, reparameterised)."""
        mu, log_std = self.policy(actor_params, obs)
        return self.era_head.sample(key, mu, log_std)[0]

    def target_action(
        self, actor_params: Params, extra: dict[str, Any], next_obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, None]:
        k_sample, k_noise = jax.random.split(key)
        action = self.sample(actor_params, next_obs, k_sample)
        action = action + self.smoothing_noise(k_noise, action.shape)
        return jnp.clip(action, -1.0, 1.0), None

    def actor_loss(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        critic_params: Params,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        k_sample, k_entropy = jax.random.split(key)
        mu, log_std = self.policy(actor_params, obs)
        action, _ = self.era_head.sample(k_sample, mu, log_std)
        loss = -jnp.mean(self.q_value(critic_params, obs, action))
        entropy = jax.lax.stop_gradient(self.era_head.entropy(mu, log_std, k_entropy))
        return loss, {
            "entropy": jnp.mean(entropy),
            "gaussian_entropy": jnp.mean(era_core.gaussian_entropy(log_std)),
            "target_entropy": jnp.asarray(self.target_entropy),
        }

    def explore_action(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        obs: jax.Array,
        key: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        k_sample, k_noise = jax.random.split(key)
        action = self.sample(actor_params, obs, k_sample)
        return action + self.exploration_noise(k_noise, action.shape, noise_scale)
