"""The training loop shared by all algorithms: environments, evaluation, logging rows, checkpoints.

:class:`RunConfig` describes one run (algorithm, env id, steps, seeds, intervals and the
algorithm's hyper-parameter overrides); :func:`make_trainer` returns a trainer whose
:meth:`~OffPolicyTrainer.run` trains all seeds at once (one vmapped program) and calls back with
one metrics row per seed every ``log_interval`` steps.

Steps count agent decisions (environment steps after action repeat). Checkpoints (every
``checkpoint_interval`` steps, a multiple of ``log_interval``) hold the whole learner state
(networks, optimiser states, target networks, replay buffer, PRNG keys), the pending action and
the environments' running episodes (seed + recorded actions; restoring re-simulates them), so a
resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .envs import VectorEnv, episode_seed
from .sac import SAC, SACConfig
from .sac_era import SACERA, SACERAConfig

OFF_POLICY = {"sac": (SAC, SACConfig), "sac-era": (SACERA, SACERAConfig)}
ALGOS = ("sac", "sac-era", "ppo", "ppo-era")
CHECKPOINT = "checkpoint.pkl"


def algo_config_class(algo: str):
    if algo in OFF_POLICY:
        return OFF_POLICY[algo][1]
    if algo in ("ppo", "ppo-era"):
        from .ppo import PPO_CONFIGS

        return PPO_CONFIGS[algo]
    raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(ALGOS)}")


def make_algo_config(algo: str, overrides: dict[str, Any]):
    """The algorithm's config dataclass with ``overrides`` (unknown keys raise ValueError)."""
    cls = algo_config_class(algo)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {algo} hyper-parameter(s) {unknown}; valid: {', '.join(sorted(fields))}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class RunConfig:
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

    def validate(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; valid: {', '.join(ALGOS)}")
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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(**d)


def warmup_steps(config_warmup: int, steps: int) -> int:
    """Random warm-up steps: the configured number, never more than a tenth of the run."""
    return min(config_warmup, steps // 10)


def evaluate(act: Callable[[np.ndarray], np.ndarray], env: VectorEnv, step: int, episodes: int):
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


def random_policy_return(env_id: str, seeds: list[int], episodes: int = 1, action_repeat=None):
    """Mean evaluation return of the uniform random policy (the baseline to beat)."""
    env = VectorEnv(env_id, seeds, stream=2, action_repeat=action_repeat)
    rng = np.random.default_rng(0)
    act = lambda obs: rng.uniform(-1, 1, (len(seeds), env.action_dim))  # noqa: E731
    return evaluate(act, env, 0, episodes)


@functools.lru_cache(maxsize=8)
def build_agent(algo: str, config, obs_dim: int, action_dim: int, capacity: int):
    """The agent and its compiled functions, memoised: a second run with the same config in
    one process (a resume, a test) reuses the compiled programs."""
    agent = OFF_POLICY[algo][0](config, obs_dim, action_dim, capacity)
    return agent, agent.compile()


def _to_host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _to_device(tree):
    return jax.tree.map(jnp.asarray, tree)


class OffPolicyTrainer:
    """SAC and SAC-ERA: all seeds in one vmapped, jitted step per environment step."""

    def __init__(self, run: RunConfig):
        run.validate()
        self.run_config = run
        self.config = make_algo_config(run.algo, run.agent)
        self.seeds = [run.seed + i for i in range(run.seeds)]
        self.envs = VectorEnv(run.env, self.seeds, stream=0, action_repeat=run.action_repeat)
        self.eval_envs = VectorEnv(run.env, self.seeds, stream=1, action_repeat=run.action_repeat)
        capacity = min(self.config.buffer_size, run.steps)
        self.agent, self.fns = build_agent(
            run.algo, self.config, self.envs.observation_dim, self.envs.action_dim, capacity
        )
        self.warmup = warmup_steps(self.config.warmup_steps, run.steps)

    @property
    def target_entropy(self) -> float:
        return self.agent.target_entropy

    def _init(self):
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(self.seeds))
        state = self.fns["init"](keys)
        obs = self.envs.reset()
        state, action = self.fns["start"](state, obs, random=self.warmup > 0)
        return 0, state, np.asarray(action)

    def checkpoint_bytes(self, step: int, state, action) -> bytes:
        return pickle.dumps(
            {
                "step": step,
                "state": _to_host(state),
                "action": np.asarray(action),
                "envs": self.envs.state_dict(),
                "run": self.run_config.to_dict(),
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def _restore(self, blob: bytes):
        ckpt = pickle.loads(blob)
        if ckpt["run"] != self.run_config.to_dict():
            raise ValueError("the checkpoint was written by a run with a different config")
        self.envs.load_state_dict(ckpt["envs"])
        return ckpt["step"], _to_device(ckpt["state"]), ckpt["action"]

    def run(
        self,
        on_row: Callable[[dict[str, Any]], None],
        *,
        save_checkpoint: Callable[[int, bytes], None] | None = None,
        resume: bytes | None = None,
        stop_at: int | None = None,
        on_step: Callable[[int, float | None], None] | None = None,
    ) -> int:
        """Train to ``run.steps`` (or ``stop_at``); returns the last step reached.

        ``on_row`` gets one dict per seed per log interval; ``save_checkpoint(step, blob)``
        stores a checkpoint; ``resume`` is a blob from it; ``on_step(step, latest_return)``
        drives a progress bar.
        """
        run = self.run_config
        step, state, action = self._restore(resume) if resume is not None else self._init()
        end = run.steps if stop_at is None else min(stop_at, run.steps)
        episodes: list[list[float]] = [[] for _ in self.seeds]
        metrics: dict[str, Any] = {}
        latest = None
        updates, t_updates, t_log = 0, 0.0, time.perf_counter()
        while step < end:
            res = self.envs.step(action)
            step += 1
            update, random = step >= max(self.warmup, 1), step < self.warmup
            t0 = time.perf_counter()
            state, action, m = self.fns["step"](
                state,
                res.final_obs,
                res.reward.astype(np.float32),
                res.terminated,
                res.obs,
                update=update,
                random=random,
            )
            action = np.asarray(action)
            if update:
                metrics = m
                updates += self.config.updates_per_step
                t_updates += time.perf_counter() - t0
            for i, r in enumerate(res.episode_return):
                if not np.isnan(r):
                    episodes[i].append(float(r))
                    latest = float(r)
            if on_step is not None:
                on_step(step, latest)
            if step % run.log_interval and step != run.steps:
                continue
            evals = None
            if step % run.eval_interval == 0 or step == run.steps:
                evals = evaluate(
                    functools.partial(self.fns["act_eval"], state),
                    self.eval_envs,
                    step,
                    run.eval_episodes,
                )
            host = {k: np.asarray(v) for k, v in metrics.items()}
            elapsed = time.perf_counter() - t_log
            for i, seed in enumerate(self.seeds):
                row: dict[str, Any] = {"step": step, "seed": seed}
                if episodes[i]:
                    row["episode_return"] = float(np.mean(episodes[i]))
                if evals is not None:
                    row["eval_return"] = float(evals[i])
                row["target_entropy"] = float(self.target_entropy)
                row.update({k: float(v[i]) for k, v in sorted(host.items())})
                row["updates_per_s"] = updates * len(self.seeds) / t_updates if t_updates else 0.0
                row["env_steps_per_s"] = run.log_interval * len(self.seeds) / max(elapsed, 1e-9)
                on_row(row)
            episodes = [[] for _ in self.seeds]
            updates, t_updates, t_log = 0, 0.0, time.perf_counter()
            if save_checkpoint is not None and (
                step % run.checkpoint_interval == 0 or step == run.steps
            ):
                save_checkpoint(step, self.checkpoint_bytes(step, state, action))
        self.state = state
        return step


def make_trainer(run: RunConfig):
    run.validate()
    if run.algo in OFF_POLICY:
        return OffPolicyTrainer(run)
    from .ppo import PPOTrainer

    return PPOTrainer(run)
