"""The training loop every algorithm shares; the algorithm kinds fill in its hooks.

:class:`Trainer` builds the environments (training and evaluation instances, one per seed)
and runs the loop: advance (collect experience and update the learner, one hook), then on
every ``log_interval`` boundary one metrics row per seed, on every ``eval_interval`` boundary
an evaluation (:mod:`era_control.evaluation`), on every ``checkpoint_interval`` boundary a
checkpoint (:mod:`era_control.checkpoint`); the last step does all three. A boundary counts
as crossed when an advance passes it, so an on-policy loop (whole rollouts per advance) logs
at the end of the rollout that crosses it.

Steps count agent decisions (environment steps after action repeat). Checkpoints hold the
whole learner state, what the loop needs to continue and the environments' running episodes
(seed + recorded actions; restoring re-simulates them), so a resumed run continues exactly.

Hooks (:class:`~era_control.offpolicy_trainer.OffPolicyTrainer`,
:class:`~era_control.onpolicy_trainer.OnPolicyTrainer`): ``build`` (agent and compiled
functions), ``make_envs`` (training and evaluation environments), ``start`` (a fresh :class:`Loop`), ``restore`` (a :class:`Loop` from a checkpoint
dict), ``advance`` (collect + update), ``checkpoint_extras``, ``row_prefix`` and
``evaluate_policy``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint
from .envs import VectorEnv
from .evaluation import evaluate
from .registry import get_algorithm
from .run_config import RunConfig, make_algo_config

OnRow = Callable[[dict[str, Any]], None]
OnStep = Callable[[int, "float | None"], None]


@dataclasses.dataclass
class Loop:
    """Where a run is: the step, the learner state (all seeds), what the next advance starts
    from (``carry``: the pending actions or the last observations), the latest update's
    metrics (device arrays, one value per seed) and the latest finished episode's return."""

    step: int
    state: Any
    carry: np.ndarray
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    latest_return: float | None = None


@dataclasses.dataclass
class Window:
    """What the next metrics row reports: finished episodes, updates and their time."""

    start_step: int
    episodes: list[list[float]]
    updates: int = 0
    update_seconds: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @classmethod
    def open(cls, seeds: int, step: int) -> Window:
        return cls(step, [[] for _ in range(seeds)])

    def record_episodes(self, loop: Loop, episode_return: np.ndarray) -> None:
        """Note the returns of the episodes that just ended (NaN where none did)."""
        for i, r in enumerate(episode_return):
            if not np.isnan(r):
                self.episodes[i].append(float(r))
                loop.latest_return = float(r)

    def add_updates(self, count: int, seconds: float) -> None:
        self.updates += count
        self.update_seconds += seconds


def _crossed(before: int, after: int, interval: int) -> bool:
    """Whether going from step ``before`` to ``after`` passes a multiple of ``interval``."""
    return after // interval != before // interval


class Trainer:
    """The loop shared by the algorithm kinds; see the module docstring for the hooks."""

    def __init__(self, run: RunConfig):
        run.validate()
        self.run_config = run
        self.spec = get_algorithm(run.algo)
        self.config = make_algo_config(run.algo, run.agent)
        self.seeds = [run.seed + i for i in range(run.seeds)]
        self.envs, self.eval_envs = self.make_envs()
        self.agent, self.fns = self.build()

    # ---- hooks -------------------------------------------------------------------------
    def make_envs(self) -> tuple[VectorEnv, VectorEnv]:
        """The training and the evaluation environments (one instance per seed each)."""
        run = self.run_config
        return (
            VectorEnv(run.env, self.seeds, stream=0, action_repeat=run.action_repeat),
            VectorEnv(run.env, self.seeds, stream=1, action_repeat=run.action_repeat),
        )

    def build(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        """The agent and its compiled functions (``init`` and ``act_eval`` at least)."""
        raise NotImplementedError

    def start(self) -> Loop:
        raise NotImplementedError

    def restore(self, ckpt: dict[str, Any]) -> Loop:
        raise NotImplementedError

    def advance(self, loop: Loop, window: Window, on_step: OnStep | None) -> None:
        """Collect experience and update the learner; moves ``loop.step`` forward."""
        raise NotImplementedError

    def checkpoint_extras(self, loop: Loop) -> dict[str, Any]:
        """What a checkpoint stores beside the learner state to continue the loop."""
        return {}

    def row_prefix(self) -> dict[str, float]:
        """Columns every row has before the learner's metrics."""
        return {}

    def evaluate_policy(self, loop: Loop) -> np.ndarray:
        """The mean evaluation return per seed of the current policy
        (:func:`era_control.evaluation.evaluate` on the evaluation environments)."""
        act = functools.partial(self.fns["act_eval"], loop.state)
        return evaluate(act, self.eval_envs, loop.step, self.run_config.eval_episodes)

    # ---- shared --------------------------------------------------------------------------
    @property
    def target_entropy(self) -> float | None:
        """The total target entropy ``H0`` (``None`` for an algorithm without one)."""
        return self.agent.target_entropy

    def initial_state(self) -> Any:
        """The learner state of all seeds, each from ``PRNGKey(seed)``."""
        return self.fns["init"](jax.vmap(jax.random.PRNGKey)(jnp.asarray(self.seeds)))

    def checkpoint_blob(self, loop: Loop) -> bytes:
        return checkpoint.dumps(
            loop.step, loop.state, self.envs, self.run_config, **self.checkpoint_extras(loop)
        )

    def rows(self, loop: Loop, window: Window, evals: np.ndarray | None) -> Iterator[dict]:
        """One metrics row per seed for the window that ends at ``loop.step``."""
        host = {k: np.asarray(v) for k, v in loop.metrics.items()}
        elapsed = time.perf_counter() - window.started
        n = len(self.seeds)
        for i, seed in enumerate(self.seeds):
            row: dict[str, Any] = {"step": loop.step, "seed": seed}
            if window.episodes[i]:
                row["episode_return"] = float(np.mean(window.episodes[i]))
            if evals is not None:
                row["eval_return"] = float(evals[i])
            row.update(self.row_prefix())
            row.update({k: float(v[i]) for k, v in sorted(host.items())})
            updates = window.updates * n
            row["updates_per_s"] = updates / window.update_seconds if window.update_seconds else 0.0
            row["env_steps_per_s"] = (loop.step - window.start_step) * n / max(elapsed, 1e-9)
            yield row

    def run(
        self,
        on_row: OnRow,
        *,
        save_checkpoint: Callable[[int, bytes], None] | None = None,
        resume: bytes | None = None,
        stop_at: int | None = None,
        on_step: OnStep | None = None,
    ) -> int:
        """Train to ``run.steps`` (or ``stop_at``); returns the last step reached.

        ``on_row`` gets one dict per seed per log interval; ``save_checkpoint(step, blob)``
        stores a checkpoint; ``resume`` is a blob from it; ``on_step(step, latest_return)``
        drives a progress bar.
        """
        run = self.run_config
        if resume is not None:
            loop = self.restore(checkpoint.loads(resume, run))
        else:
            loop = self.start()
        end = run.steps if stop_at is None else min(stop_at, run.steps)
        window = Window.open(len(self.seeds), loop.step)
        while loop.step < end:
            before = loop.step
            self.advance(loop, window, on_step)
            final = loop.step >= run.steps
            if not (final or _crossed(before, loop.step, run.log_interval)):
                continue
            evals = None
            if final or _crossed(before, loop.step, run.eval_interval):
                evals = self.evaluate_policy(loop)
            for row in self.rows(loop, window, evals):
                on_row(row)
            window = Window.open(len(self.seeds), loop.step)
            if save_checkpoint is not None and (
                final or _crossed(before, loop.step, run.checkpoint_interval)
            ):
                save_checkpoint(loop.step, self.checkpoint_blob(loop))
        self.state = loop.state
        return loop.step
