"""TD-MPC2's replay: the device ring buffer of :mod:`era_control.replay` plus, per transition,
whether the episode continues into the next stored one, so that ``horizon``-step subsequences
can be drawn from it.

:func:`sample_sequences` draws ``batch`` start indices uniformly among the stored transitions
that have ``horizon - 1`` newer ones after them (oldest first, so a window never wraps from
the newest transition to the oldest) and returns, for each, ``horizon + 1`` observations
(``obs`` of the first transition, then ``next_obs`` of each), ``horizon`` actions, rewards and
bootstrap masks, and the weight ``w_t = prod_{j<t} cont_j`` of each step: 1 while the window
is inside one episode, 0 from the step after an episode's end on (those steps drop out of the
losses).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..replay import replay_add, replay_init


def sequence_buffer_init(capacity: int, obs_dim: int, action_dim: int) -> dict[str, jax.Array]:
    """An empty buffer of ``capacity`` transitions (the fields of ``replay_init`` and ``cont``)."""
    return {**replay_init(capacity, obs_dim, action_dim), "cont": jnp.zeros((capacity,))}


def sequence_buffer_add(
    buffer: dict[str, Any],
    obs: jax.Array,
    action: jax.Array,
    reward: jax.Array,
    next_obs: jax.Array,
    discount: jax.Array,
    cont: jax.Array,
) -> dict[str, jax.Array]:
    """Insert one transition; ``cont`` is 1 when the next stored transition starts at
    ``next_obs`` (the episode did not end), else 0."""
    index = buffer["ptr"]
    out = replay_add(buffer, obs, action, reward, next_obs, discount)
    out["cont"] = buffer["cont"].at[index].set(jnp.asarray(cont, jnp.float32))
    return out


def sample_sequences(
    buffer: dict[str, Any], key: jax.Array, batch: int, horizon: int
) -> dict[str, jax.Array]:
    """``batch`` subsequences of ``horizon`` transitions (time-major; see the module docstring):
    ``obs`` ``(H+1, B, O)``, ``action`` ``(H, B, A)``, ``reward``, ``discount``, ``weight``
    ``(H, B)`` and ``pi_weight`` ``(H+1, B)`` (the weights of the ``H+1`` latents)."""
    capacity = buffer["reward"].shape[0]
    size = buffer["size"]
    oldest = (buffer["ptr"] - size) % capacity
    start = jax.random.randint(key, (batch,), 0, jnp.maximum(size - horizon + 1, 1))
    idx = (oldest + start[None] + jnp.arange(horizon)[:, None]) % capacity  # (H, B)
    obs = jnp.concatenate([buffer["obs"][idx[:1]], buffer["next_obs"][idx]], 0)
    cont = buffer["cont"][idx]
    ones = jnp.ones((1, batch))
    return {
        "obs": obs,
        "action": buffer["action"][idx],
        "reward": buffer["reward"][idx],
        "discount": buffer["discount"][idx],
        "weight": jnp.cumprod(jnp.concatenate([ones, cont[:-1]], 0), 0),
        "pi_weight": jnp.cumprod(jnp.concatenate([ones, cont], 0), 0),
    }
