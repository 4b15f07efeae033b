"""One run's description (:class:`RunConfig`) and the algorithm config built from it.

:func:`make_algo_config` is where a run's hyper-parameter overrides become the algorithm's
config dataclass (names from :mod:`era_control.registry`); unknown keys raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .registry import get_algorithm

# override keys accepted under an older name: old name -> field
RENAMED_FIELDS = {"entropy_per_dim": "target_entropy_per_dim"}


def algo_config_class(algo: str) -> type:
    """The config dataclass of ``algo`` (``ValueError`` listing the valid names if unknown)."""
    return get_algorithm(algo).config


def make_algo_config(algo: str, overrides: dict[str, Any]) -> Any:
    """The algorithm's config dataclass with ``overrides`` (unknown keys raise ValueError)."""
    cls = algo_config_class(algo)
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in overrides.items():
        name = RENAMED_FIELDS.get(key, key) if key not in fields else key
        if name in values:
            raise ValueError(f"{algo} hyper-parameter {name!r} is given twice (as {key!r} too)")
        values[name] = tuple(value) if isinstance(value, list) else value
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"unknown {algo} hyper-parameter(s) {unknown}; valid: {', '.join(sorted(fields))}"
        )
    return cls(**values)


def warmup_steps(config_warmup: int, steps: int) -> int:
    """Random warm-up steps: the configured number, never more than a tenth of the run."""
    return min(config_warmup, steps // 10)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Algorithm, env id, steps, seeds, intervals (in agent steps) and the algorithm's
    hyper-parameter overrides (``agent``). ``num_envs`` is the number of parallel environments
    per seed: 1 for the one-environment algorithms, at least 2 for a ``"parallel off-policy"``
    one, whose steps count transitions (``num_envs`` per parallel step)."""

    algo: str
    env: str
    steps: int
    seeds: int = 1
    seed: int = 0
    action_repeat: int | None = None
    log_interval: int = 1000
    eval_interval: int = 10000
    eval_episodes: int = 1
    checkpoint_interval: int = 10000
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 1

    def validate(self) -> None:
        spec = get_algorithm(self.algo)
        if self.num_envs < 1:
            raise ValueError(f"num_envs (--num-envs) must be >= 1, got {self.num_envs}")
        parallel = spec.trainer == "parallel off-policy"
        if parallel and self.num_envs < 2:
            raise ValueError(
                f"{self.algo} needs parallel environments: num_envs (--num-envs) must be >= 2, "
                f"got {self.num_envs}"
            )
        if not parallel and self.num_envs != 1:
            raise ValueError(
                f"{self.algo} steps one environment per seed: num_envs (--num-envs) must be 1, "
                f"got {self.num_envs} (parallel environments are for the parallel off-policy "
                "algorithms)"
            )
        if self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        for name in ("log_interval", "eval_interval", "checkpoint_interval", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_interval % self.log_interval:
            raise ValueError(
                f"checkpoint_interval ({self.checkpoint_interval}) must be a multiple of "
                f"log_interval ({self.log_interval})"
            )
        make_algo_config(self.algo, self.agent)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``num_envs`` only when it is not 1, so the config of a
        one-environment run reads as it always has (and its checkpoints stay valid)."""
        d = dataclasses.asdict(self)
        if d["num_envs"] == 1:
            del d["num_envs"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(**d)
