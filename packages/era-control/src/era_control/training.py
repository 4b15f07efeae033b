"""The training entry point: :func:`make_trainer` for a :class:`RunConfig`.

:class:`RunConfig` describes one run (algorithm, env id, steps, seeds, intervals and the
algorithm's hyper-parameter overrides); :func:`make_trainer` returns the trainer of the
algorithm's kind (:mod:`era_control.registry`), whose ``run`` trains all seeds at once (one
vmapped program) and calls back with one metrics row per seed every ``log_interval`` steps.
The loop itself is :class:`era_control.trainer.Trainer`; this module also re-exports the
names it has always offered.
"""

from __future__ import annotations

from typing import Any

from .checkpoint import CHECKPOINT
from .evaluation import evaluate, random_policy_return
from .mjx_envs import is_mjx_id
from .mjx_trainer import MJXParallelTrainer
from .model_based_trainer import ModelBasedTrainer
from .offpolicy_trainer import OffPolicyTrainer, build_agent
from .onpolicy_trainer import OnPolicyTrainer
from .parallel_trainer import ParallelOffPolicyTrainer
from .registry import get_algorithm, list_algorithms
from .run_config import RunConfig, algo_config_class, make_algo_config, warmup_steps
from .trainer import Trainer

__all__ = [
    "CHECKPOINT",
    "TRAINERS",
    "ModelBasedTrainer",
    "OffPolicyTrainer",
    "OnPolicyTrainer",
    "ParallelOffPolicyTrainer",
    "RunConfig",
    "Trainer",
    "algo_config_class",
    "build_agent",
    "evaluate",
    "make_algo_config",
    "make_trainer",
    "random_policy_return",
    "warmup_steps",
]

# AlgorithmSpec.trainer -> the loop that trains it
TRAINERS: dict[str, type[Trainer]] = {
    "off-policy": OffPolicyTrainer,
    "on-policy": OnPolicyTrainer,
    "parallel off-policy": ParallelOffPolicyTrainer,
    "model-based": ModelBasedTrainer,
}


def make_trainer(run: RunConfig) -> Trainer:
    """The trainer of ``run``'s algorithm kind (for a parallel algorithm on an ``mjx/`` id, the
    on-device :class:`~era_control.mjx_trainer.MJXParallelTrainer`)."""
    run.validate()
    kind = get_algorithm(run.algo).trainer
    if kind == "parallel off-policy" and is_mjx_id(run.env):
        return MJXParallelTrainer(run)
    return TRAINERS[kind](run)


def __getattr__(name: str) -> Any:
    # ALGOS (all names) and OFF_POLICY (name -> (agent, config)): read from the registry
    if name == "ALGOS":
        return tuple(list_algorithms())
    if name == "OFF_POLICY":
        specs = (get_algorithm(n) for n in list_algorithms())
        return {s.name: (s.agent, s.config) for s in specs if s.trainer == "off-policy"}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
