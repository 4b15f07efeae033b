"""A replay buffer that lives on the device: a dict of fixed-size arrays and two counters.

Pure functions, so it sits inside the jitted (and seed-vmapped) training step; with the state
donated to the step, :func:`replay_add` writes in place.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def replay_init(capacity: int, obs_dim: int, action_dim: int) -> dict[str, jax.Array]:
    return {
        "obs": jnp.zeros((capacity, obs_dim), jnp.float32),
        "action": jnp.zeros((capacity, action_dim), jnp.float32),
        "reward": jnp.zeros((capacity,), jnp.float32),
        "next_obs": jnp.zeros((capacity, obs_dim), jnp.float32),
        "discount": jnp.zeros((capacity,), jnp.float32),
        "ptr": jnp.zeros((), jnp.int32),
        "size": jnp.zeros((), jnp.int32),
    }


def replay_add(
    buffer: dict[str, Any],
    obs: jax.Array,
    action: jax.Array,
    reward: jax.Array,
    next_obs: jax.Array,
    discount: jax.Array,
) -> dict[str, jax.Array]:
    """Insert one transition (ring buffer: the oldest is overwritten when full)."""
    capacity = buffer["reward"].shape[0]
    i = buffer["ptr"]
    out = dict(buffer)
    for name, value in (
        ("obs", obs),
        ("action", action),
        ("reward", reward),
        ("next_obs", next_obs),
        ("discount", discount),
    ):
        out[name] = buffer[name].at[i].set(jnp.asarray(value, jnp.float32))
    out["ptr"] = (i + 1) % capacity
    out["size"] = jnp.minimum(buffer["size"] + 1, capacity)
    return out


def replay_sample(buffer: dict[str, Any], key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """``batch_size`` transitions drawn uniformly with replacement from the filled part."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer["size"], 1))
    return {k: buffer[k][idx] for k in ("obs", "action", "reward", "next_obs", "discount")}
