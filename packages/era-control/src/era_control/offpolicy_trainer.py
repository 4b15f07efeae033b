"""The off-policy loop (SAC, SAC-ERA): all seeds in one vmapped, jitted step per env step.

Each advance steps the environments with the pending actions, then calls the agent's fused
learner step (store the transition, ``updates_per_step`` gradient updates, choose the next
actions); only observations, rewards and actions cross between host and device. The first
``warmup`` steps act uniformly at random and do not update.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, cast

import jax
import numpy as np

from . import checkpoint
from .registry import get_algorithm
from .run_config import warmup_steps
from .trainer import Loop, OnStep, Trainer, Window


@functools.lru_cache(maxsize=8)
def build_agent(
    algo: str, config: Any, obs_dim: int, action_dim: int, capacity: int
) -> tuple[Any, dict[str, Any]]:
    """The agent and its compiled functions, memoised: a second run with the same config in
    one process (a resume, a test) reuses the compiled programs."""
    agent = get_algorithm(algo).agent(config, obs_dim, action_dim, capacity)
    return agent, agent.compile()


class OffPolicyTrainer(Trainer):
    """SAC and SAC-ERA: all seeds in one vmapped, jitted step per environment step."""

    def build(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        run = self.run_config
        self.warmup = warmup_steps(self.config.warmup_steps, run.steps)
        capacity = min(self.config.buffer_size, run.steps)
        return build_agent(
            run.algo, self.config, self.envs.observation_dim, self.envs.action_dim, capacity
        )

    def start(self) -> Loop:
        state = self.initial_state()
        obs = self.envs.reset()
        state, action = self.fns["start"](state, obs, random=self.warmup > 0)
        return Loop(0, state, np.asarray(action))

    def restore(self, ckpt: dict[str, Any]) -> Loop:
        self.envs.load_state_dict(ckpt["envs"])
        return Loop(ckpt["step"], ckpt["state"], ckpt["action"])

    def checkpoint_extras(self, loop: Loop) -> dict[str, Any]:
        return {"action": np.asarray(loop.carry)}

    def checkpoint_bytes(self, step: int, state: dict[str, Any], action: jax.Array) -> bytes:
        """The checkpoint of ``state`` at ``step`` with the pending ``action``."""
        return checkpoint.dumps(step, state, self.envs, self.run_config, action=np.asarray(action))

    def row_prefix(self) -> dict[str, float]:
        # an off-policy algorithm always has a target entropy
        return {"target_entropy": float(cast(float, self.target_entropy))}

    def advance(self, loop: Loop, window: Window, on_step: OnStep | None) -> None:
        res = self.envs.step(loop.carry)
        loop.step += 1
        update, random = loop.step >= max(self.warmup, 1), loop.step < self.warmup
        t0 = time.perf_counter()
        loop.state, action, metrics = self.fns["step"](
            loop.state,
            res.final_obs,
            res.reward.astype(np.float32),
            res.terminated,
            res.obs,
            update=update,
            random=random,
        )
        loop.carry = np.asarray(action)
        if update:
            loop.metrics = metrics
            window.add_updates(self.config.updates_per_step, time.perf_counter() - t0)
        window.record_episodes(loop, res.episode_return)
        if on_step is not None:
            on_step(loop.step, loop.latest_return)
