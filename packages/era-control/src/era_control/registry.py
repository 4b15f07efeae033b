"""The algorithm registry: one :class:`AlgorithmSpec` per algorithm name.

Every place that needs the algorithm names (the app's ``--algo`` choices, preset validation,
the compare and reproduce commands, :class:`era_control.training.RunConfig`) reads them from
here. The built-in algorithms are registered in :mod:`era_control.algorithms`, which
``import era_control`` loads; a new algorithm is one module (its config dataclass and agent)
plus one :func:`register_algorithm` call there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

TRAINER_KINDS = ("off-policy", "on-policy", "parallel off-policy", "model-based")


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """What the training loop needs to know about one algorithm.

    Attributes:
      name: the ``--algo`` value.
      config: the hyper-parameter dataclass; its defaults are the paper's.
      agent: the agent class, called as ``agent(config, obs_dim, action_dim, capacity)``
        for ``"off-policy"``, ``agent(config, obs_dim, action_dim)`` for ``"on-policy"`` and
        ``agent(config, obs_dim, action_dim, capacity, num_envs)`` for ``"parallel off-policy"``
        and ``agent(config, obs_dim, action_dim, capacity)`` for ``"model-based"``.
      trainer: ``"off-policy"`` (one fused learner step per environment step) or
        ``"on-policy"`` (a rollout, then one fused update) or ``"parallel off-policy"`` (one
        fused learner step per step of ``--num-envs`` parallel environments, at least 2) or
        ``"model-based"`` (the off-policy loop with a planner whose state is in the learner
        state: TD-MPC2).
      description: one line for help texts.
      baseline: for an ERA algorithm, the algorithm it is compared against (the same
        learner with the usual entropy mechanism); ``None`` for the baselines themselves.
    """

    name: str
    config: type
    agent: Callable[..., Any]
    trainer: str
    description: str
    baseline: str | None = None

    def __post_init__(self) -> None:
        if self.trainer not in TRAINER_KINDS:
            raise ValueError(
                f"trainer of algorithm {self.name!r} must be one of {TRAINER_KINDS}, "
                f"got {self.trainer!r}"
            )
        if not dataclasses.is_dataclass(self.config):
            raise ValueError(f"config of algorithm {self.name!r} must be a dataclass")

    @property
    def is_era(self) -> bool:
        return self.baseline is not None


_REGISTRY: dict[str, AlgorithmSpec] = {}


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add ``spec`` under ``spec.name``; registering the same spec twice is a no-op, a
    different spec under a taken name raises ``ValueError``."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(
            f"algorithm {spec.name!r} is already registered with a different spec ({known})"
        )
    _REGISTRY[spec.name] = spec
    return spec


def list_algorithms() -> list[str]:
    """The registered algorithm names, in registration order."""
    return list(_REGISTRY)


def get_algorithm(name: str) -> AlgorithmSpec:
    """The spec registered under ``name``; an unknown name raises ``ValueError`` listing the
    valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown algo {name!r}; valid: {', '.join(list_algorithms())}") from None
