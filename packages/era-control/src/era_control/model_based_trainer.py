"""The model-based loop (TD-MPC2, TD-MPC2-ERA): the off-policy loop with a planner.

As :class:`~era_control.offpolicy_trainer.OffPolicyTrainer` (all seeds in one vmapped, jitted
step per environment step, the learner state and pending actions in the checkpoint), plus:

* the step is told which observations start an episode (``done``), so the planner's warm-start
  mean (kept in the learner state) is reset there;
* with ``pretrain``, the first update step runs ``warmup_steps`` updates (the TD-MPC2 authors'
  pretraining on the seed data), then ``updates_per_step``;
* evaluation plans too (no exploration noise): each evaluation environment records its reset
  seed and its step in the episode, which give the planner its warm-start reset and a key that
  depends only on ``(reset seed, step)``, so evaluations are reproducible and resumable;
* rows carry ``target_entropy`` only for an algorithm that has one (the ERA variant);
* ``episode_length`` (the discount heuristic's episode length in agent steps), when the run does
  not set it, is the environment's time limit over the action repeat, and ``warmup_steps``
  (uniform seed steps), when not set, is ``max(1000, 5 * episode_length)`` as the authors'
  ``seed_steps`` (still at most a tenth of the run).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from .envs import VectorEnv
from .offpolicy_trainer import OffPolicyTrainer
from .trainer import Loop, OnStep, Window


class _Tracked:
    """An evaluation environment that remembers its last reset seed and steps since."""

    def __init__(self, env: Any):
        self.env, self.seed, self.t = env, 0, 0

    def reset(self, seed: int) -> np.ndarray:
        self.seed, self.t = seed, 0
        return self.env.reset(seed)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        self.t += 1
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()


class ModelBasedTrainer(OffPolicyTrainer):
    """TD-MPC2 and TD-MPC2-ERA; see the module docstring."""

    def make_envs(self) -> tuple[VectorEnv, VectorEnv]:
        envs, evals = super().make_envs()
        evals.envs[:] = [cast(Any, _Tracked(e)) for e in evals.envs]  # the pool's list too
        return envs, evals

    def build(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        # The discount heuristic reads the episode's length in agent steps: the environment's
        # time limit over the action repeat (500 for DMC at action repeat 2), unless set.
        if "episode_length" not in self.run_config.agent:
            tracked = cast(list[_Tracked], self.eval_envs.envs)[0]
            steps = getattr(tracked.env, "episode_steps", None)
            if steps is not None:
                self.config = dataclasses.replace(self.config, episode_length=int(steps))
        # The seed steps follow the episode length as the authors' `seed_steps`, unless set.
        if "warmup_steps" not in self.run_config.agent:
            seed_steps = max(1000, 5 * self.config.episode_length)
            self.config = dataclasses.replace(self.config, warmup_steps=seed_steps)
        agent, fns = super().build()
        self._eval_mean: Any = None
        return agent, {**fns, "act_eval": self._plan_eval}

    def _plan_eval(self, state: Any, obs: np.ndarray) -> np.ndarray:
        tracked = cast(list[_Tracked], self.eval_envs.envs)
        if self._eval_mean is None:
            shape = (len(tracked), self.config.horizon, self.envs.action_dim)
            self._eval_mean = np.zeros(shape, np.float32)
        first = np.array([e.t == 0 for e in tracked])
        seeds = np.array([e.seed % 2**31 for e in tracked], np.int32)
        steps = np.array([e.t for e in tracked], np.int32)
        action, self._eval_mean = self.fns["plan_eval"](
            state, obs, self._eval_mean, first, seeds, steps
        )
        return np.asarray(action)

    def row_prefix(self) -> dict[str, float]:
        target = self.target_entropy
        return {} if target is None else {"target_entropy": float(target)}

    def advance(self, loop: Loop, window: Window, on_step: OnStep | None) -> None:
        res = self.envs.step(loop.carry)
        loop.step += 1
        first_update = max(self.warmup, 1)
        update, random = loop.step >= first_update, loop.step < self.warmup
        count = self.config.updates_per_step
        if self.config.pretrain and self.warmup > 0 and loop.step == first_update:
            count = self.warmup
        t0 = time.perf_counter()
        loop.state, action, metrics = self.fns["step"](
            loop.state,
            res.final_obs,
            res.reward.astype(np.float32),
            res.terminated,
            res.done,
            res.obs,
            random,
            count,
            update=update,
        )
        loop.carry = np.asarray(action)
        if update:
            loop.metrics = metrics
            window.add_updates(count, time.perf_counter() - t0)
        window.record_episodes(loop, res.episode_return)
        if on_step is not None:
            on_step(loop.step, loop.latest_return)
