"""The distributional (C51-style categorical) critic of FastTD3, FastSAC and FastSAC-ERA.

Each Q-network outputs logits over ``num_atoms`` fixed atoms ``z_0 < ... < z_{K-1}`` spread
evenly on ``[v_min, v_max]``; ``Q(s, a) = sum_k softmax(logits)_k z_k``. The Bellman target of a
transition moves every atom to ``r + gamma * mask * z_k`` (clipped to the support) and
:func:`categorical_projection` splits each moved atom's probability between its two neighbouring
fixed atoms in proportion to closeness, so the target is again a distribution on the fixed atoms
(Bellemare et al. 2017, Alg. 1). The critic loss is the cross-entropy between that target and
the predicted distribution (:func:`categorical_loss`).

Networks (FastTD3's ``DistributionalQNetwork``): ``concat(obs, action)`` through Dense layers of
``hidden`` widths (FastTD3: ``1024, 512, 256``), ReLU, then ``num_atoms`` logits; two of them
for clipped double Q.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def support(v_min: float, v_max: float, num_atoms: int) -> jax.Array:
    """The fixed atoms ``linspace(v_min, v_max, num_atoms)``."""
    return jnp.linspace(v_min, v_max, num_atoms)


def expected_value(logits: jax.Array, atoms: jax.Array) -> jax.Array:
    """``Q = sum_k softmax(logits)_k atoms_k`` over the last axis."""
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * atoms, axis=-1)


def categorical_projection(
    probs: jax.Array, reward: jax.Array, discount: jax.Array, atoms: jax.Array
) -> jax.Array:
    """Project the distribution ``probs`` (``(B, K)`` on ``atoms``) moved by
    ``z -> reward + discount * z`` back onto ``atoms``.

    ``reward`` and ``discount`` are ``(B,)`` (``discount = gamma * mask``). Each moved atom
    ``b_j = (clip(r + d z_j) - v_min) / dz`` gives weight ``1 - (b_j - floor(b_j))`` to atom
    ``floor(b_j)`` and the rest to the next one (all of it where ``b_j`` lands on an atom), so
    every row of the result sums to 1 and its mean is ``r + d E[z]`` whenever no clipping occurs.
    """
    num_atoms = atoms.shape[0]
    v_min, v_max = atoms[0], atoms[-1]
    dz = (v_max - v_min) / (num_atoms - 1)
    moved = jnp.clip(reward[:, None] + discount[:, None] * atoms[None, :], v_min, v_max)
    b = (moved - v_min) / dz
    lower = jnp.clip(jnp.floor(b), 0, num_atoms - 1)
    upper_weight = b - lower  # in [0, 1]; 0 where b lies on an atom (or at v_max)
    lower_i = lower.astype(jnp.int32)
    upper_i = jnp.minimum(lower_i + 1, num_atoms - 1)
    rows = jnp.broadcast_to(jnp.arange(probs.shape[0])[:, None], lower_i.shape)
    out = jnp.zeros_like(probs)
    out = out.at[rows, lower_i].add(probs * (1.0 - upper_weight))
    return out.at[rows, upper_i].add(probs * upper_weight)


def categorical_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Cross-entropy ``-sum_k target_k log softmax(logits)_k``, averaged over the batch."""
    return -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1))


class _DistributionalQ(nn.Module):
    hidden: Sequence[int]
    num_atoms: int

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_atoms)(x)


class DistributionalCritic(nn.Module):
    """Two categorical Q-networks on the same input: logits of shape ``(2, ..., num_atoms)``."""

    hidden: Sequence[int]
    num_atoms: int

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        nets = [_DistributionalQ(self.hidden, self.num_atoms) for _ in range(2)]
        return jnp.stack([net(obs, action) for net in nets])
