"""Evaluation: deterministic episodes with seeds that depend only on ``(seed, episode, step)``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .envs import VectorEnv, episode_seed


def evaluate(
    act: Callable[[np.ndarray], np.ndarray], env: VectorEnv, step: int, episodes: int
) -> np.ndarray:
    """Mean return over ``episodes`` deterministic episodes per seed, reset with seeds that
    depend only on ``(seed, episode, step)`` (so evaluation is reproducible and resumable)."""
    totals = np.zeros(len(env))
    for k in range(episodes):
        obs = np.stack(
            [
                e.reset(episode_seed(s, 1 + k, step))
                for e, s in zip(env.envs, env.seeds, strict=True)
            ]
        )
        done = np.zeros(len(env), bool)
        while not done.all():
            actions = np.asarray(act(obs))
            for i, e in enumerate(env.envs):
                if done[i]:
                    continue
                o, r, term, trunc = e.step(actions[i].astype(np.float64))
                obs[i] = o
                totals[i] += r
                done[i] = term or trunc
    return totals / episodes


def random_policy_return(
    env_id: str, seeds: list[int], episodes: int = 1, action_repeat: int | None = None
) -> np.ndarray:
    """Mean evaluation return of the uniform random policy (the baseline to beat)."""
    env = VectorEnv(env_id, seeds, stream=2, action_repeat=action_repeat)
    rng = np.random.default_rng(0)
    act = lambda obs: rng.uniform(-1, 1, (len(seeds), env.action_dim))  # noqa: E731
    return evaluate(act, env, 0, episodes)
