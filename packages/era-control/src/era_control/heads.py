"""Policy heads: how an actor's ``(mu, pre_std)`` become a distribution over actions.

An actor network (:mod:`era_control.networks`) maps an observation to ``(mu, pre_std)``, each
``(..., D)``. A head (a frozen, hashable dataclass satisfying :class:`Head`) turns them into a
policy and knows how to sample it, take its mode and measure its entropy. One class per kind,
built by name with :func:`make_head`:

* ``"truncated"`` (:class:`TruncatedHead`, ERA, the reference default): a Gaussian with
  location ``tanh(mu)`` truncated to ``[-1, 1]``; its log-std is
  ``era_core.gaussian_log_std(pre_std, H0 + delta)``.
* ``"tanh"`` (:class:`TanhHead`, ERA): a Gaussian on ``mu`` squashed by ``tanh``; the same ERA
  log-std.
* ``"gaussian-era"`` (:class:`GaussianERAHead`, PPO-ERA): an unbounded Gaussian with the ERA
  log-std, so its entropy is exactly ``H0`` (no bounding deficit, no compensation needed).
* ``"sac"`` (:class:`SACHead`, plain SAC): a tanh-squashed Gaussian whose log-std is
  ``pre_std`` softly clipped to ``[log_std_min, log_std_max]`` (SAC's learned temperature
  alpha does the entropy control).
* ``"gaussian"`` (:class:`GaussianHead`, plain PPO): an unbounded Gaussian with a
  state-independent learned log-std (held by the actor network); actions are clipped by the
  environment side.

``target_entropy`` is always the total ``H0`` over the action dimensions. Configs and the CLI
give the target per action dimension (the paper's convention, ``target_entropy_per_dim``);
:func:`total_target_entropy` converts it to ``H0 = D * target_entropy_per_dim`` and rejects
infeasible targets.

:class:`PolicyHead` keeps the older spelling ``PolicyHead(kind, action_dim, ...)``: it returns
the registered class for ``kind``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Protocol, cast

import jax
import jax.numpy as jnp

import era_core

from .networks import ACTIVATIONS, MLP, Actor, DoubleCritic
from .truncated_normal import standard_truncated_normal, truncated_normal_sample

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Actor",
    "DoubleCritic",
    "GaussianERAHead",
    "GaussianHead",
    "Head",
    "PolicyHead",
    "SACHead",
    "TanhHead",
    "TruncatedHead",
    "list_heads",
    "make_head",
    "register_head",
    "standard_truncated_normal",
    "total_target_entropy",
    "truncated_normal_sample",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def total_target_entropy(
    entropy_per_dim: float, action_dim: int, log_std_max: float = 0.0, compensation: float = 0.0
) -> float:
    """``H0 = action_dim * entropy_per_dim``, checked against the Gaussian ceiling.

    >>> total_target_entropy(-0.5, 6)
    -3.0
    >>> total_target_entropy(2.0, 6)
    Traceback (most recent call last):
    ...
    ValueError: target entropy per action dimension 2.0 is infeasible for action_dim=6 ...
    """
    ceiling = era_core.max_gaussian_entropy(action_dim, log_std_max) / action_dim
    per_dim = float(entropy_per_dim) + float(compensation) / action_dim
    if not math.isfinite(per_dim) or per_dim > ceiling + 1e-9:
        raise ValueError(
            f"target entropy per action dimension {entropy_per_dim} is infeasible for "
            f"action_dim={action_dim} with log_std_max={log_std_max} and compensation "
            f"{compensation}: the Gaussian ceiling is {ceiling:.4f} nats per dimension "
            f"(valid range: at most {ceiling - float(compensation) / action_dim:.4f})"
        )
    return float(entropy_per_dim) * action_dim


class Head(Protocol):
    """What the agents use of a policy head (every class registered with :func:`make_head`)."""

    kind: ClassVar[str]
    is_era: ClassVar[bool]
    action_dim: int
    target_entropy: float

    @property
    def max_compensation(self) -> float: ...

    def log_std(
        self,
        pre_std: jax.Array,
        delta: jax.Array | float = 0.0,
        log_partition: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Log-std of the underlying Gaussian and the batch log-partition (zero if unused)."""
        ...

    def loc(self, mu: jax.Array) -> jax.Array:
        """The location of the distribution (its mode before any squashing)."""
        ...

    def mode(self, mu: jax.Array) -> jax.Array:
        """The deterministic action in ``[-1, 1]``."""
        ...

    def sample(
        self, key: jax.Array, mu: jax.Array, log_std: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        """A reparameterised sample and its ``log pi`` (``None`` where training never needs it)."""
        ...

    def log_prob(self, action: jax.Array, mu: jax.Array, log_std: jax.Array) -> jax.Array:
        """``log pi(action)`` (the unbounded Gaussian kinds)."""
        ...

    def entropy(self, mu: jax.Array, log_std: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """The entropy of the final (bounded) policy per state."""
        ...


# ---------------------------------------------------------------------------------------------
# shared pieces


def _gaussian_sample(
    key: jax.Array, mu: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``u = mu + std * eps`` and the Gaussian ``log N(u; mu, std)`` summed over the last axis."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mu.shape)
    u = mu + std * eps
    return u, jnp.sum(-0.5 * eps**2 - log_std - _HALF_LOG_2PI, -1)


def _gaussian_log_prob(action: jax.Array, mu: jax.Array, log_std: jax.Array) -> jax.Array:
    z = (action - mu) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - _HALF_LOG_2PI, -1)


@dataclasses.dataclass(frozen=True)
class _BaseHead:
    """Fields every kind has; ``target_entropy`` is ignored by the non-ERA kinds."""

    kind: ClassVar[str] = ""
    is_era: ClassVar[bool] = False

    action_dim: int
    target_entropy: float = 0.0
    log_std_min: float = -8.0
    log_std_max: float = 0.0

    @property
    def max_compensation(self) -> float:
        """The largest ``delta`` that keeps ``H0 + delta`` feasible."""
        return (
            era_core.max_gaussian_entropy(self.action_dim, self.log_std_max) - self.target_entropy
        )

    def loc(self, mu: jax.Array) -> jax.Array:
        return mu

    def mode(self, mu: jax.Array) -> jax.Array:
        return jnp.tanh(mu)

    def log_prob(self, action: jax.Array, mu: jax.Array, log_std: jax.Array) -> jax.Array:
        raise ValueError(f"log_prob is implemented for the Gaussian kinds, not {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class _ERAHead(_BaseHead):
    """The ERA log-std (Eq. 11): the Gaussian's entropy is ``H0 + delta`` in every state, or on
    average over the batch with ``batch_level`` (App. C.1.2)."""

    is_era: ClassVar[bool] = True

    batch_level: bool = False

    def __post_init__(self) -> None:
        # the invariant of a head: H0 is at most the Gaussian ceiling (the per-dimension input
        # of a config is checked, with its compensation, by total_target_entropy)
        ceiling = era_core.max_gaussian_entropy(self.action_dim, self.log_std_max)
        if not math.isfinite(self.target_entropy) or (
            self.target_entropy > ceiling + 1e-9 * self.action_dim
        ):
            raise ValueError(
                f"target_entropy (the total H0) {self.target_entropy} is infeasible for "
                f"action_dim={self.action_dim} with log_std_max={self.log_std_max}: "
                f"valid range: at most {ceiling:.4f} nats"
            )

    def log_std(
        self,
        pre_std: jax.Array,
        delta: jax.Array | float = 0.0,
        log_partition: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Eq. 11 with the target ``H0 + delta`` (``delta`` clipped to stay feasible).
        Batch-level: normalised over all leading axes; pass the running ``log_partition`` to act
        with it (evaluation / data collection)."""
        if self.batch_level:  # a constant delta only (era_core takes a scalar compensation)
            return era_core.batch_gaussian_log_std(
                pre_std,
                self.target_entropy,
                log_std_min=self.log_std_min,
                log_std_max=self.log_std_max,
                compensation=min(float(delta), self.max_compensation),
                log_partition=log_partition,
            )
        log_std = era_core.gaussian_log_std(
            pre_std,
            self.target_entropy,
            log_std_min=self.log_std_min,
            log_std_max=self.log_std_max,
            compensation=jnp.minimum(delta, self.max_compensation),
        )
        return log_std, jnp.zeros(())


# ---------------------------------------------------------------------------------------------
# one class per kind


@dataclasses.dataclass(frozen=True)
class TruncatedHead(_ERAHead):
    """ERA: ``N(tanh(mu), std^2)`` truncated to ``[-1, 1]``; exact entropy, no ``log pi``."""

    kind: ClassVar[str] = "truncated"

    def loc(self, mu: jax.Array) -> jax.Array:
        return jnp.tanh(mu)

    def sample(
        self, key: jax.Array, mu: jax.Array, log_std: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        std = jnp.exp(log_std)
        return truncated_normal_sample(key, jnp.tanh(mu), std), None

    def entropy(self, mu: jax.Array, log_std: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return era_core.truncated_gaussian_entropy(jnp.tanh(mu), log_std)


@dataclasses.dataclass(frozen=True)
class TanhHead(_ERAHead):
    """ERA: ``tanh(u)``, ``u ~ N(mu, std^2)``; Monte-Carlo entropy (``entropy_samples``)."""

    kind: ClassVar[str] = "tanh"

    entropy_samples: int = 4

    def sample(
        self, key: jax.Array, mu: jax.Array, log_std: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        u, log_prob = _gaussian_sample(key, mu, log_std)
        return jnp.tanh(u), log_prob - era_core.tanh_log_det_jacobian(u)

    def entropy(self, mu: jax.Array, log_std: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return era_core.tanh_gaussian_entropy(mu, log_std, self.entropy_samples, key)


class _UnboundedGaussian:
    """The action distribution of the PPO heads: a Gaussian, clipped to [-1, 1] only for its
    mode; exact log-prob and entropy."""

    def mode(self, mu: jax.Array) -> jax.Array:
        return jnp.clip(mu, -1.0, 1.0)

    def sample(
        self, key: jax.Array, mu: jax.Array, log_std: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        return _gaussian_sample(key, mu, log_std)

    def log_prob(self, action: jax.Array, mu: jax.Array, log_std: jax.Array) -> jax.Array:
        return _gaussian_log_prob(action, mu, log_std)

    def entropy(self, mu: jax.Array, log_std: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return era_core.gaussian_entropy(log_std)


@dataclasses.dataclass(frozen=True)
class GaussianERAHead(_UnboundedGaussian, _ERAHead):
    """PPO-ERA: an unbounded Gaussian with the ERA log-std; its entropy is exactly ``H0``."""

    kind: ClassVar[str] = "gaussian-era"


@dataclasses.dataclass(frozen=True)
class SACHead(_BaseHead):
    """Plain SAC: a tanh-squashed Gaussian, log-std ``pre_std`` softly clipped to the bounds."""

    kind: ClassVar[str] = "sac"

    entropy_samples: int = 4

    def log_std(
        self,
        pre_std: jax.Array,
        delta: jax.Array | float = 0.0,
        log_partition: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        lo, hi = self.log_std_min, self.log_std_max
        return lo + 0.5 * (hi - lo) * (jnp.tanh(pre_std) + 1.0), jnp.zeros(())

    def sample(
        self, key: jax.Array, mu: jax.Array, log_std: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        u, log_prob = _gaussian_sample(key, mu, log_std)
        return jnp.tanh(u), log_prob - era_core.tanh_log_det_jacobian(u)

    def entropy(self, mu: jax.Array, log_std: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return era_core.tanh_gaussian_entropy(mu, log_std, self.entropy_samples, key)


@dataclasses.dataclass(frozen=True)
class GaussianHead(_UnboundedGaussian, _BaseHead):
    """Plain PPO: an unbounded Gaussian, log-std ``pre_std`` clipped to the bounds."""

    kind: ClassVar[str] = "gaussian"

    def log_std(
        self,
        pre_std: jax.Array,
        delta: jax.Array | float = 0.0,
        log_partition: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        return jnp.clip(pre_std, self.log_std_min, self.log_std_max), jnp.zeros(())


# ---------------------------------------------------------------------------------------------
# the registry


_HEADS: dict[str, type[_BaseHead]] = {}


def register_head(cls: type[_BaseHead]) -> type[_BaseHead]:
    """Register a head class under its ``kind`` (usable as a class decorator)."""
    known = _HEADS.get(cls.kind)
    if known is not None and known is not cls:
        raise ValueError(f"head kind {cls.kind!r} is already registered ({known.__name__})")
    _HEADS[cls.kind] = cls
    return cls


for _cls in (TruncatedHead, TanhHead, SACHead, GaussianHead, GaussianERAHead):
    register_head(_cls)


def list_heads() -> list[str]:
    """The registered head kinds."""
    return list(_HEADS)


def make_head(kind: str, action_dim: int, **options: Any) -> Head:
    """The head of ``kind`` for ``action_dim`` action dimensions; ``options`` are the class's
    fields (``target_entropy`` for the ERA kinds, ``log_std_min``, ``log_std_max``, ...)."""
    if kind not in _HEADS:
        raise ValueError(f"head kind must be one of {tuple(_HEADS)}, got {kind!r}")
    return cast(Head, _HEADS[kind](action_dim, **options))  # each registered kind is a Head


def __getattr__(name: str) -> tuple[str, ...]:
    # HEAD_KINDS / ERA_KINDS: read from the registry, so a registered head shows up in them
    if name == "HEAD_KINDS":
        return tuple(_HEADS)
    if name == "ERA_KINDS":
        return tuple(k for k, cls in _HEADS.items() if cls.is_era)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def PolicyHead(  # a factory with the class-style name it always had
    kind: str,
    action_dim: int,
    target_entropy: float = 0.0,
    log_std_min: float = -8.0,
    log_std_max: float = 0.0,
    batch_level: bool = False,
    entropy_samples: int = 4,
) -> Head:
    """``make_head`` with every option of every kind: the ones ``kind`` lacks are dropped,
    except a ``batch_level=True`` for a non-ERA kind, which raises ``ValueError``."""
    if kind not in _HEADS:
        raise ValueError(f"head kind must be one of {tuple(_HEADS)}, got {kind!r}")
    cls = _HEADS[kind]
    if batch_level and not cls.is_era:
        era = tuple(k for k, c in _HEADS.items() if c.is_era)
        raise ValueError(f"batch_level needs an ERA head {era}, got {kind!r}")
    given = {
        "target_entropy": target_entropy,
        "log_std_min": log_std_min,
        "log_std_max": log_std_max,
        "batch_level": batch_level,
        "entropy_samples": entropy_samples,
    }
    fields = {f.name for f in dataclasses.fields(cls)}
    return cast(Head, cls(action_dim, **{k: v for k, v in given.items() if k in fields}))
