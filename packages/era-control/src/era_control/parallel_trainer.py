"""The parallel off-policy loop (FastTD3, FastSAC, FastSAC-ERA): ``N`` environments per seed.

Each advance steps all ``seeds x num_envs`` environments at once (in worker processes,
:class:`~era_control.envs.VectorEnv` with ``workers``), then calls the agent's fused learner
step for all seeds (one vmapped, jitted program): store the ``N`` transitions of each seed,
``updates_per_step`` gradient updates once more than ``learning_starts`` parallel steps are
stored, choose the next ``N`` actions. A step of the loop is one transition, so an advance moves
``loop.step`` by ``num_envs`` and ``--steps`` is the number of transitions per seed.

``hb/`` tasks are the standard HumanoidBench ones here (action repeat 1 unless
``--action-repeat`` says otherwise, with termination), as the paper ran FastSAC-ERA. Exact
resume: the replay buffer, normaliser and noise scales are in the learner state; each
environment's running episode is re-simulated from its seed and recorded actions in the worker
processes.

For an ``mjx/`` id, :func:`era_control.training.make_trainer` builds a
:class:`~era_control.mjx_trainer.MJXParallelTrainer` instead: the environments step on the
device, inside the learner's jitted program.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .envs import VectorEnv
from .registry import get_algorithm
from .trainer import Loop, OnRow, OnStep, Trainer, Window


@functools.lru_cache(maxsize=8)
def build_parallel_agent(
    algo: str, config: Any, obs_dim: int, action_dim: int, capacity: int, num_envs: int
) -> tuple[Any, dict[str, Any]]:
    """The agent and its compiled functions, memoised (a resume or a test reuses them)."""
    agent = get_algorithm(algo).agent(config, obs_dim, action_dim, capacity, num_envs)
    return agent, agent.compile()


def env_workers(instances: int) -> int:
    """Worker processes for ``instances`` environments: one per CPU core, at most one each."""
    return max(1, min(instances, os.cpu_count() or 1))


class ParallelOffPolicyTrainer(Trainer):
    """FastTD3, FastSAC and FastSAC-ERA: ``num_envs`` environments per seed."""

    def make_envs(self) -> tuple[VectorEnv, VectorEnv]:
        run = self.run_config
        n = run.num_envs
        train = VectorEnv(
            run.env,
            self.seeds,
            stream=0,
            action_repeat=run.action_repeat,
            num_envs=n,
            workers=env_workers(len(self.seeds) * n),
            standard=True,
        )
        evals = VectorEnv(
            run.env, self.seeds, stream=1, action_repeat=run.action_repeat, standard=True
        )
        return train, evals

    def build(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        run = self.run_config
        capacity = min(self.config.buffer_size, math.ceil(run.steps / run.num_envs))
        obs_dim, action_dim = self.envs.observation_dim, self.envs.action_dim
        return build_parallel_agent(
            run.algo, self.config, obs_dim, action_dim, capacity, run.num_envs
        )

    @property
    def target_entropy(self) -> float | None:
        return self.agent.target_entropy

    def _split(self, x: np.ndarray) -> np.ndarray:
        """``(seeds * num_envs, ...)`` -> ``(seeds, num_envs, ...)``."""
        return x.reshape(len(self.seeds), self.run_config.num_envs, *x.shape[1:])

    def start(self) -> Loop:
        state, action = self.fns["start"](self.initial_state(), self._split(self.envs.reset()))
        return Loop(0, state, np.asarray(action))

    def restore(self, ckpt: dict[str, Any]) -> Loop:
        self.envs.load_state_dict(ckpt["envs"])
        return Loop(ckpt["step"], ckpt["state"], ckpt["action"])

    def checkpoint_extras(self, loop: Loop) -> dict[str, Any]:
        return {"action": np.asarray(loop.carry)}

    def row_prefix(self) -> dict[str, float]:
        h0 = self.target_entropy
        return {} if h0 is None else {"target_entropy": float(h0)}

    def advance(self, loop: Loop, window: Window, on_step: OnStep | None) -> None:
        n = self.run_config.num_envs
        res = self.envs.step(loop.carry.reshape(-1, self.envs.action_dim))
        before = loop.step
        loop.step += n
        update = loop.step // n > self.config.learning_starts
        t0 = time.perf_counter()
        loop.state, action, metrics = self.fns["step"](
            loop.state,
            self._split(res.final_obs),
            self._split(res.reward.astype(np.float32)),
            self._split(res.terminated),
            self._split(res.done),
            self._split(res.obs),
            update=update,
        )
        loop.carry = np.asarray(action)  # waits for the step
        if update:
            loop.metrics = metrics
            window.add_updates(self.config.updates_per_step, time.perf_counter() - t0)
        for k in np.flatnonzero(~np.isnan(res.episode_return)):
            window.episodes[k // n].append(float(res.episode_return[k]))
            loop.latest_return = float(res.episode_return[k])
        if on_step is not None:
            for t in range(before + 1, loop.step + 1):
                on_step(t, loop.latest_return)

    def run(self, on_row: OnRow, **kwargs: Any) -> int:  # the worker processes end with the run
        try:
            return super().run(on_row, **kwargs)
        finally:
            self.envs.close()
