"""The on-policy loop (PPO, PPO-ERA): a rollout per seed, then one fused update.

A rollout of ``rollout_steps`` per seed is collected with the agent's jitted, seed-vmapped
policy step (actions are clipped to ``[-1, 1]`` on the environment side); the update is one
jitted, seed-vmapped call. Rows are logged and checkpoints written at the end of the rollout
in which a ``log_interval`` / ``checkpoint_interval`` boundary is crossed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .trainer import Loop, OnStep, Trainer, Window


class OnPolicyTrainer(Trainer):
    """PPO and PPO-ERA, with the same interface as the off-policy trainer."""

    def build(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        agent = self.spec.agent(self.config, self.envs.observation_dim, self.envs.action_dim)
        return agent, agent.compile()

    def start(self) -> Loop:
        return Loop(0, self.initial_state(), self.envs.reset())

    def restore(self, ckpt: dict[str, Any]) -> Loop:
        obs = self.envs.load_state_dict(ckpt["envs"])
        return Loop(ckpt["step"], ckpt["state"], obs)

    def checkpoint_extras(self, loop: Loop) -> dict[str, Any]:
        return {"obs": loop.carry}

    def rollout_buffer(self) -> dict[str, np.ndarray]:
        T, S = self.config.rollout_steps, len(self.seeds)
        obs, act = self.envs.observation_dim, self.envs.action_dim
        shapes = {"obs": (obs,), "final_obs": (obs,), "action": (act,), "log_prob": ()}
        shapes |= {"reward": (), "terminated": (), "done": ()}
        return {k: np.zeros((T, S, *shape), np.float32) for k, shape in shapes.items()}

    def advance(self, loop: Loop, window: Window, on_step: OnStep | None) -> None:
        buf, obs = self.rollout_buffer(), loop.carry
        for t in range(self.config.rollout_steps):
            loop.state, action, log_prob = self.fns["policy_step"](loop.state, obs)
            action = np.asarray(action)
            res = self.envs.step(np.clip(action, -1.0, 1.0))
            buf["obs"][t], buf["action"][t], buf["log_prob"][t] = obs, action, log_prob
            buf["final_obs"][t], buf["reward"][t] = res.final_obs, res.reward
            buf["terminated"][t], buf["done"][t] = res.terminated, res.done
            obs = res.obs
            window.record_episodes(loop, res.episode_return)
            if on_step is not None:
                on_step(loop.step + t + 1, loop.latest_return)
        loop.carry = obs
        loop.step += self.config.rollout_steps
        t0 = time.perf_counter()
        loop.state, metrics = self.fns["update"](loop.state, buf)
        loop.metrics = {k: np.asarray(v) for k, v in metrics.items()}  # waits for the update
        window.add_updates(self.agent.updates_per_rollout, time.perf_counter() - t0)
