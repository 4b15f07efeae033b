"""The Flax networks: an MLP trunk, the actor ``obs -> (mu, pre_std)``, SAC's double critic and
PPO's value network."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"elu": nn.elu, "relu": nn.relu, "tanh": nn.tanh}


class MLP(nn.Module):
    """Dense layers, each followed by LayerNorm (optional) and the activation."""

    hidden: Sequence[int]
    activation: str = "elu"
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array):
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return x


class Actor(nn.Module):
    """Observation -> ``(mu, pre_std)``; ``state_independent_std`` learns ``pre_std`` as a
    free parameter (PPO's convention) instead of a network output."""

    action_dim: int
    hidden: Sequence[int]
    activation: str = "elu"
    layer_norm: bool = True
    state_independent_std: bool = False
    final_scale: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        x = MLP(self.hidden, self.activation, self.layer_norm)(obs)
        init = nn.initializers.variance_scaling(self.final_scale, "fan_avg", "uniform")
        mu = nn.Dense(self.action_dim, kernel_init=init)(x)
        if self.state_independent_std:
            log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
            pre_std = jnp.broadcast_to(log_std, mu.shape)
        else:
            pre_std = nn.Dense(self.action_dim, kernel_init=init)(x)
        return mu, pre_std


class DoubleCritic(nn.Module):
    """Two Q-networks on the same input: returns ``(2, ...)``.

    Two separate modules rather than one ``nn.vmap`` ensemble: with LayerNorm, XLA:CPU runs the
    SAC update faster this way (measured in docs/benchmarks.md); without LayerNorm the two are
    equal.
    """

    hidden: Sequence[int]
    activation: str = "elu"
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array):
        q = [_QNet(self.hidden, self.activation, self.layer_norm)(obs, action) for _ in range(2)]
        return jnp.stack(q)


class _QNet(nn.Module):
    hidden: Sequence[int]
    activation: str
    layer_norm: bool

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array):
        x = MLP(self.hidden, self.activation, self.layer_norm)(jnp.concatenate([obs, action], -1))
        return nn.Dense(1)(x)[..., 0]


class ValueNetwork(nn.Module):
    """PPO's state-value network: an MLP without LayerNorm and one linear output."""

    hidden: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, obs: jax.Array):
        return nn.Dense(1)(MLP(self.hidden, self.activation, layer_norm=False)(obs))[..., 0]
