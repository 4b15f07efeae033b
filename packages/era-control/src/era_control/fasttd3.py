"""FastTD3 (Seo et al. 2025): TD3 with a categorical critic on many parallel environments.

Read with :mod:`era_control.fast_offpolicy` (buffer, normaliser, critic update, fused step):

* actor: ``a = tanh(mu(s))``, deterministic;
* exploration: ``a + eps * sigma_env``, ``eps ~ N(0, I)``, ``sigma_env ~ U[std_min, std_max]``
  drawn per environment and redrawn when its episode ends (clipped to ``[-1, 1]``);
* critic target: the categorical projection of ``r + gamma * mask * Z'(s', a')`` with
  ``a' = clip(tanh(mu(s')) + clip(N(0, policy_noise^2), -noise_clip, noise_clip), -1, 1)``,
  taking the target critic whose expected value is smaller (clipped double Q);
* actor loss: ``-E[min(Q1, Q2)(s, tanh(mu(s)))]`` on every ``policy_frequency``-th update.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .fast_offpolicy import FastAgent, FastTD3Config, Params

__all__ = ["FastTD3", "FastTD3Config"]


class FastTD3(FastAgent[FastTD3Config]):
    """FastTD3: deterministic actor, per-environment noise scales, delayed actor updates."""

    target_entropy = None  # no entropy target

    def target_action(
        self, actor_params: Params, extra: dict[str, Any], next_obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, None]:
        mu, _ = self.actor_outputs(actor_params, next_obs)
        action = jnp.tanh(mu) + self.smoothing_noise(key, mu.shape)
        return jnp.clip(action, -1.0, 1.0), None

    def actor_loss(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        critic_params: Params,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        action = self.act(actor_params, obs)
        return -jnp.mean(self.q_value(critic_params, obs, action)), {}

    def explore_action(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        obs: jax.Array,
        key: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        action = self.act(actor_params, obs)
        return action + self.exploration_noise(key, action.shape, noise_scale)
