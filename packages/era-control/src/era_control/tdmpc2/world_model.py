"""TD-MPC2's decoder-free world model in Flax (Hansen et al., 2024, Sec. 3 / App. A-B).

Every layer but the outputs is "normed": ``Dense -> LayerNorm -> Mish``. With latent ``z``:

* encoder ``h(s)``: ``num_enc_layers - 1`` normed layers of ``enc_dim``, then
  ``Dense -> LayerNorm -> SimNorm`` to ``latent_dim`` (:func:`simnorm`: softmax over groups
  of ``simnorm_dim``, so ``z`` is a stack of simplices);
* latent dynamics ``d(z, a)``: two normed layers of ``mlp_dim``, then to ``latent_dim`` with
  SimNorm;
* reward ``R(z, a)`` and each of the ``num_q`` Q-functions ``Q_i(z, a)``: two normed layers of
  ``mlp_dim`` (the Q-functions with dropout after the first), then ``num_bins`` logits
  (:mod:`era_control.tdmpc2.twohot`); the output layers start at zero, as in the authors' code;
* policy prior ``pi(z)``: two normed layers of ``mlp_dim``, then ``(mu, pre_std)``, turned into
  a distribution by a policy head of :mod:`era_control.heads` (``"sac"``: TD-MPC2's own tanh
  Gaussian with ``log_std`` squashed into ``[log_std_min, log_std_max]``; ``"tanh"``:
  TD-MPC2-ERA's, whose Gaussian entropy is the target ``H0`` by construction).

:class:`TDMPC2Config` holds the official defaults of the 5M-parameter model (the authors'
``config.yaml`` with ``model_size: 5``; the training-loop fields from their online trainer and
environment set-up, each noted beside it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

import flax.linen as nn
import jax
import jax.numpy as jnp


def simnorm(x: jax.Array, group: int) -> jax.Array:
    """Softmax over consecutive groups of ``group`` features (the last axis a multiple of it)."""
    if x.shape[-1] % group:
        raise ValueError(f"latent size {x.shape[-1]} is not a multiple of simnorm_dim {group}")
    shaped = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)
    return jax.nn.softmax(shaped, -1).reshape(x.shape)


def _mish(x: jax.Array) -> jax.Array:
    """``x * tanh(softplus(x))``, TD-MPC2's activation."""
    return x * jnp.tanh(jax.nn.softplus(x))


@dataclasses.dataclass(frozen=True)
class TDMPC2Config:
    """TD-MPC2's hyper-parameters: the authors' ``config.yaml`` for ``model_size: 5``."""

    # architecture (5M parameters)
    num_enc_layers: int = 2
    enc_dim: int = 256
    mlp_dim: int = 512
    latent_dim: int = 512
    num_q: int = 5
    dropout: float = 0.01
    simnorm_dim: int = 8
    # discrete regression
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    # policy prior
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    entropy_coef: float = 1e-4
    # planning (MPPI)
    mpc: bool = True
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    horizon: int = 3
    min_std: float = 0.05
    max_std: float = 2.0
    temperature: float = 0.5
    # training
    batch_size: int = 256
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    tau: float = 0.01
    rho: float = 0.5
    reward_coef: float = 0.1
    value_coef: float = 0.1
    consistency_coef: float = 20.0
    discount_denom: float = 5.0
    discount_min: float = 0.95
    discount_max: float = 0.995
    buffer_size: int = 1_000_000
    # training loop (the authors' online trainer / envs/__init__.py)
    episode_length: int = 500  # agent steps per episode: DMC's 1000 at action repeat 2
    warmup_steps: int = 2500  # seed_steps = max(1000, 5 * episode_length), uniform actions
    pretrain: bool = True  # once the seed data are in: warmup_steps updates in one go
    updates_per_step: int = 1  # then one update per agent step

    # --quick: at most this many agent steps, and the fields quick() shrinks
    QUICK_STEPS: ClassVar[int] = 5000
    QUICK_FIELDS: ClassVar[tuple[str, ...]] = (
        "enc_dim",
        "mlp_dim",
        "latent_dim",
        "iterations",
        "num_samples",
        "num_elites",
        "num_pi_trajs",
        "batch_size",
        "warmup_steps",
    )

    POSITIVE: ClassVar[tuple[str, ...]] = (
        "num_enc_layers",
        "enc_dim",
        "mlp_dim",
        "latent_dim",
        "simnorm_dim",
        "iterations",
        "num_samples",
        "num_elites",
        "horizon",
        "batch_size",
        "buffer_size",
        "episode_length",
        "updates_per_step",
    )

    def quick(self, steps: int) -> TDMPC2Config:
        """A CPU-sized copy for a ``steps``-step run: encoder 64, MLP 128, latent 64, MPPI with
        4 iterations of 128 samples (16 elites, 8 policy trajectories), batch at most 128 and
        warm-up at most a tenth of the run."""
        return dataclasses.replace(
            self,
            enc_dim=min(self.enc_dim, 64),
            mlp_dim=min(self.mlp_dim, 128),
            latent_dim=min(self.latent_dim, 64),
            iterations=min(self.iterations, 4),
            num_samples=min(self.num_samples, 128),
            num_elites=min(self.num_elites, 16),
            num_pi_trajs=min(self.num_pi_trajs, 8),
            batch_size=min(self.batch_size, 128),
            warmup_steps=min(self.warmup_steps, steps // 10),
        )

    def validate(self, action_dim: int) -> None:
        for name in self.POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_q < 2:
            raise ValueError(
                f"num_q must be >= 2 (the target takes the min of two), got {self.num_q}"
            )
        if self.num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {self.num_bins}")
        if self.latent_dim % self.simnorm_dim:
            raise ValueError(
                f"latent_dim ({self.latent_dim}) must be a multiple of simnorm_dim "
                f"({self.simnorm_dim})"
            )
        if not 0 <= self.num_pi_trajs < self.num_samples:
            raise ValueError(
                f"num_pi_trajs must be in [0, num_samples={self.num_samples}), "
                f"got {self.num_pi_trajs}"
            )
        if not 1 <= self.num_elites <= self.num_samples:
            raise ValueError(
                f"num_elites must be in [1, num_samples={self.num_samples}], got {self.num_elites}"
            )
        if not 0.0 < self.min_std <= self.max_std:
            raise ValueError(f"need 0 < min_std <= max_std, got {self.min_std}, {self.max_std}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.vmin < self.vmax:
            raise ValueError(f"need vmin < vmax, got {self.vmin}, {self.vmax}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(
                f"need log_std_min < log_std_max, got {self.log_std_min}, {self.log_std_max}"
            )
        for name in ("tau", "rho", "enc_lr_scale"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("lr", "grad_clip_norm", "temperature"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def discount(self, episode_length: int) -> float:
        """The authors' heuristic: ``(L/denom - 1) / (L/denom)`` clipped to
        ``[discount_min, discount_max]`` for episodes of ``L`` agent steps."""
        frac = episode_length / self.discount_denom
        return min(max((frac - 1) / frac, self.discount_min), self.discount_max)


class NormedMLP(nn.Module):
    """Normed hidden layers (``Dense -> LayerNorm -> Mish``; dropout after the first if
    ``dropout > 0``), then the output layer: plain ``Dense`` (zero-initialised with
    ``zero_out``) or ``Dense -> LayerNorm -> SimNorm`` with ``simnorm_dim``."""

    hidden: tuple[int, ...]
    out: int
    simnorm_dim: int = 0
    dropout: float = 0.0
    zero_out: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = _mish(nn.LayerNorm()(nn.Dense(width)(x)))
            if i == 0 and self.dropout > 0:
                x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        if self.simnorm_dim:
            return simnorm(nn.LayerNorm()(nn.Dense(self.out)(x)), self.simnorm_dim)
        init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
        return nn.Dense(self.out, kernel_init=init)(x)


class WorldModel(nn.Module):
    """Encoder, latent dynamics, reward, policy prior and the Q-ensemble (module docstring).

    ``__call__`` touches every part once (for ``init``); use ``apply(..., method=...)`` with
    :meth:`encode`, :meth:`next`, :meth:`reward`, :meth:`pi` and :meth:`qs`.
    """

    cfg: TDMPC2Config
    action_dim: int

    def setup(self) -> None:
        cfg = self.cfg
        mlp = (cfg.mlp_dim, cfg.mlp_dim)
        enc = (cfg.enc_dim,) * (cfg.num_enc_layers - 1)
        self._encoder = NormedMLP(enc, cfg.latent_dim, simnorm_dim=cfg.simnorm_dim)
        self._dynamics = NormedMLP(mlp, cfg.latent_dim, simnorm_dim=cfg.simnorm_dim)
        self._reward = NormedMLP(mlp, cfg.num_bins, zero_out=True)
        self._pi = NormedMLP(mlp, 2 * self.action_dim)
        ensemble = nn.vmap(
            NormedMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=cast(Any, (None, None)),  # a tuple is valid; flax annotates an int
            axis_size=cfg.num_q,
        )
        self._qs = ensemble(mlp, cfg.num_bins, dropout=cfg.dropout, zero_out=True)

    def encode(self, obs: jax.Array) -> jax.Array:
        return self._encoder(obs)

    def next(self, z: jax.Array, action: jax.Array) -> jax.Array:
        return self._dynamics(jnp.concatenate([z, action], -1))

    def reward(self, z: jax.Array, action: jax.Array) -> jax.Array:
        """Reward logits ``(..., num_bins)``."""
        return self._reward(jnp.concatenate([z, action], -1))

    def pi(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The policy prior's raw ``(mu, pre_std)``, each ``(..., action_dim)``."""
        out = self._pi(z)
        return out[..., : self.action_dim], out[..., self.action_dim :]

    def qs(self, z: jax.Array, action: jax.Array, deterministic: bool = True) -> jax.Array:
        """Logits of every Q-function: ``(num_q, ..., num_bins)``."""
        return self._qs(jnp.concatenate([z, action], -1), deterministic)

    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[Any, ...]:
        z = self.encode(obs)
        return self.next(z, action), self.reward(z, action), self.pi(z), self.qs(z, action)
