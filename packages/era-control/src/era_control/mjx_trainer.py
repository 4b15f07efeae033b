"""FastTD3, FastSAC and FastSAC-ERA on ``mjx/`` environments: one program on the device(s).

For an ``mjx/`` id the parallel off-policy loop keeps the environments on the device: per seed
``num_envs`` MuJoCo Playground states (:mod:`era_control.mjx_envs`) beside the learner state,
and one jitted call (:class:`Program`'s ``chunk``) runs up to :attr:`MJXParallelTrainer.CHUNK`
parallel steps in a ``jax.lax.fori_loop``: step all ``seeds x num_envs`` environments (with
auto-reset), then the agents' fused step for all seeds (vmapped; the gradient updates under a
``jax.lax.cond`` that opens once more than ``learning_starts`` parallel steps are stored). Only
the returns of the episodes that ended and the latest update's metrics come back to the host,
once per call. A call ends on the loop's next logging boundary, so rows, evaluations and
checkpoints fall on the same steps as with worker-process environments.

The learner state of every seed holds the environment state under ``"env"`` (an array pytree),
so a checkpoint stores it with the replay buffer and ``--resume`` continues exactly.
Evaluation runs on the device too: ``eval_episodes`` deterministic episodes per seed in
parallel, reset with keys that depend only on ``(seed, episode, step)``.

Devices: with ``D > 1`` devices (``jax.devices()``), one mesh axis ``"env"``: the environments,
the replay buffer's environment axis, the pending observations, actions and noise scales are
split over the devices, and so is every sampled batch (the agent's ``batch_sharding``);
parameters, optimiser states and normaliser statistics are replicated. ``num_envs`` must be a
multiple of ``D``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .checkpoint import to_device
from .envs import episode_seed
from .mjx_envs import MJXTask, load_task
from .parallel_trainer import ParallelOffPolicyTrainer
from .registry import get_algorithm
from .run_config import RunConfig
from .trainer import Loop, OnRow, OnStep, Window

AXIS = "env"  # the mesh axis the environments are split over
# learner-state entries with an environment axis: name -> which axis
ENV_AXIS = {"env": 1, "buffer": 2, "last_obs": 1, "last_action": 1, "noise_scale": 1}


def _keys(seeds: Sequence[Sequence[int]]) -> jax.Array:
    """``PRNGKey`` of every entry of a ``(rows, cols)`` table of integer seeds."""
    table = jnp.asarray(np.asarray(seeds, np.uint64) % 2**32, jnp.uint32)
    return jax.vmap(jax.vmap(jax.random.PRNGKey))(table)


def env_keys(seeds: Sequence[int], num_envs: int, stream: int = 0) -> jax.Array:
    """``(seeds, num_envs, 2)`` base keys: environment ``j`` of seed ``s`` gets
    ``PRNGKey(episode_seed(s, stream, 0, j))``."""
    return _keys([[episode_seed(s, stream, 0, j) for j in range(num_envs)] for s in seeds])


def eval_keys(seeds: Sequence[int], step: int, episodes: int) -> jax.Array:
    """``(seeds, episodes, 2)`` reset keys of the evaluation at ``step`` (as the host
    evaluation's seeds: ``episode_seed(seed, 1 + k, step)``)."""
    return _keys([[episode_seed(s, 1 + k, step) for k in range(episodes)] for s in seeds])


def state_shardings(state: Any, mesh: Mesh) -> Any:
    """A ``NamedSharding`` per leaf of a (seed-vmapped) learner state: the environment axis of
    the entries of :data:`ENV_AXIS` split over ``mesh``, everything else replicated."""

    def spec(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        axis = ENV_AXIS.get(str(getattr(path[0], "key", "")))
        if axis is None or leaf.ndim <= axis:
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, P(*([None] * axis), AXIS))

    return jax.tree_util.tree_map_with_path(spec, state)


@dataclasses.dataclass(frozen=True)
class Program:
    """The compiled pieces of an MJX run (all seeds in each call).

    ``start(agent_keys, env_keys)``: the first state (learner + environments, first actions
    chosen). ``chunk(state, count, done)``: ``count`` parallel steps after ``done`` of them,
    returning ``(state, metrics, returns)`` (``returns``: ``(CHUNK, seeds, num_envs)``, NaN
    where no episode ended). ``evaluate(state, keys)``: the mean deterministic return per seed
    of one episode per key. ``place(state)``: a host or device state put on the devices.
    """

    agent: Any
    task: MJXTask
    fns: dict[str, Callable[..., Any]]
    place: Callable[[Any], Any]


def _learner(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "env"}


def _chunk_fn(agent: Any, task: MJXTask, length: int) -> Callable[..., Any]:
    """The function behind ``Program.fns["chunk"]`` (see :class:`Program`)."""
    learning_starts = agent.config.learning_starts

    def chunk(state: dict[str, Any], count: jax.Array, done: jax.Array) -> tuple[Any, Any, Any]:
        learner, env = _learner(state), state["env"]
        returns = jnp.full((length, *env["t"].shape), jnp.nan, jnp.float32)
        keys = jax.vmap(jax.random.split)(learner["key"])[:, 0]
        shapes = jax.eval_shape(jax.vmap(agent.updates), learner, keys)[1]
        metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def body(i: jax.Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
            learner, env, returns, metrics = carry
            env, out = task.step(env, learner["last_action"])
            update = done + i + 1 > learning_starts  # one flag for all seeds: a real cond
            step = functools.partial(agent.step, update=update)
            learner, _, new = jax.vmap(step)(
                learner, out.final_obs, out.reward, out.terminated, out.done, out.obs
            )
            metrics = jax.tree.map(lambda a, b: jnp.where(update, a, b), new, metrics)
            return learner, env, returns.at[i].set(out.episode_return), metrics

        learner, env, returns, metrics = jax.lax.fori_loop(
            0, count, body, (learner, env, returns, metrics)
        )
        return dict(learner, env=env), metrics, returns

    return chunk


@functools.lru_cache(maxsize=8)
def build_program(
    algo: str,
    config: Any,
    env_id: str,
    action_repeat: int | None,
    capacity: int,
    num_envs: int,
    device_ids: tuple[int, ...],
    length: int,
) -> Program:
    """The agent and compiled functions of an MJX run on the devices ``device_ids``
    (memoised: a resumed run or a test reuses them)."""
    task = load_task(env_id, action_repeat)
    agent = get_algorithm(algo).agent(
        config, task.observation_dim, task.action_dim, capacity, num_envs
    )

    def start(agent_keys: jax.Array, keys: jax.Array) -> dict[str, Any]:
        learner = jax.vmap(agent.init_state)(agent_keys)
        env = task.init(keys)
        learner, _ = jax.vmap(agent.start)(learner, task.observation(env))
        return dict(learner, env=env)

    def evaluate(state: dict[str, Any], keys: jax.Array) -> jax.Array:
        learner = _learner(state)

        def policy(obs: jax.Array) -> jax.Array:
            return jax.vmap(agent.act_normalized)(learner, obs)

        return jnp.mean(task.rollout_return(policy, keys), -1)

    chunk = _chunk_fn(agent, task, length)
    fns: dict[str, Callable[..., Any]] = {
        "init": jax.jit(jax.vmap(agent.init_state)),
        "act_eval": jax.jit(jax.vmap(agent.act_normalized)),
        "evaluate": jax.jit(evaluate),
    }
    by_id = {d.id: d for d in jax.devices()}
    devices = [by_id[i] for i in device_ids]
    if len(devices) == 1:
        fns["start"] = jax.jit(start)
        fns["chunk"] = jax.jit(chunk, donate_argnums=0)
        return Program(agent, task, fns, to_device)
    mesh = Mesh(np.asarray(devices), (AXIS,))
    agent.batch_sharding = NamedSharding(mesh, P(AXIS))
    shape = jax.eval_shape(
        start,
        jax.ShapeDtypeStruct((1, 2), jnp.uint32),
        jax.ShapeDtypeStruct((1, num_envs, 2), jnp.uint32),
    )
    shardings = state_shardings(shape, mesh)
    replicated = NamedSharding(mesh, P())
    fns["start"] = jax.jit(start, out_shardings=shardings)
    fns["chunk"] = jax.jit(
        chunk, donate_argnums=0, out_shardings=(shardings, replicated, replicated)
    )
    return Program(agent, task, fns, lambda state: jax.device_put(state, shardings))


class DeviceEnvs:
    """What the loop asks of its environments when they live in the learner state: their
    dimensions, an empty ``state_dict`` (the state is checkpointed with the learner's) and
    nothing to close."""

    def __init__(self, task: MJXTask, num_envs: int):
        self.task, self.num_envs = task, num_envs
        self.observation_dim, self.action_dim = task.observation_dim, task.action_dim

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore here (see the class docstring)."""

    def close(self) -> None:
        """Nothing to close."""


class MJXParallelTrainer(ParallelOffPolicyTrainer):
    """The parallel off-policy loop with ``mjx/`` environments on the device(s)."""

    CHUNK: ClassVar[int] = 64  # the most parallel steps per jitted call

    def __init__(self, run: RunConfig, devices: Sequence[Any] | None = None):
        self.devices = list(jax.devices() if devices is None else devices)
        self.stop_at: int | None = None
        super().__init__(run)

    def make_envs(self) -> tuple[Any, Any]:
        run = self.run_config
        if run.num_envs % len(self.devices):
            raise ValueError(
                f"num_envs (--num-envs) must be a multiple of the number of devices "
                f"({len(self.devices)}), got {run.num_envs}"
            )
        envs = DeviceEnvs(load_task(run.env, run.action_repeat), run.num_envs)
        return envs, envs

    def build(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        run = self.run_config
        capacity = min(self.config.buffer_size, math.ceil(run.steps / run.num_envs))
        ids = tuple(d.id for d in self.devices)
        self.program = build_program(
            run.algo, self.config, run.env, run.action_repeat, capacity, run.num_envs, ids,
            self.CHUNK,
        )  # fmt: skip
        return self.program.agent, self.program.fns

    def start(self) -> Loop:
        run = self.run_config
        agent_keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(self.seeds))
        state = self.fns["start"](agent_keys, env_keys(self.seeds, run.num_envs))
        return Loop(0, state, np.zeros(0))

    def restore(self, ckpt: dict[str, Any]) -> Loop:
        return Loop(ckpt["step"], self.program.place(ckpt["state"]), np.zeros(0))

    def checkpoint_extras(self, loop: Loop) -> dict[str, Any]:
        return {}

    def evaluate_policy(self, loop: Loop) -> np.ndarray:
        keys = eval_keys(self.seeds, loop.step, self.run_config.eval_episodes)
        return np.asarray(self.fns["evaluate"](loop.state, keys), np.float64)

    def chunk_length(self, step: int) -> int:
        """Parallel steps of the next call from transition ``step``: up to the next logging
        boundary, the end of the run (or ``stop_at``) and :attr:`CHUNK`."""
        run = self.run_config
        n, log = run.num_envs, run.log_interval
        end = run.steps if self.stop_at is None else min(self.stop_at, run.steps)
        done = step // n
        next_row = math.ceil((step // log + 1) * log / n)
        return max(1, min(self.CHUNK, next_row - done, math.ceil(end / n) - done))

    def advance(self, loop: Loop, window: Window, on_step: OnStep | None) -> None:
        n = self.run_config.num_envs
        done, count = loop.step // n, self.chunk_length(loop.step)
        t0 = time.perf_counter()
        loop.state, metrics, returns = self.fns["chunk"](
            loop.state, np.int32(count), np.int32(done)
        )
        returns = np.asarray(returns)[:count]  # waits for the call
        seconds = time.perf_counter() - t0
        updating = max(0, done + count - max(done, self.config.learning_starts))
        if updating:
            loop.metrics = metrics
            window.add_updates(updating * self.config.updates_per_step, seconds)
        for i, seed, j in np.argwhere(~np.isnan(returns)):
            window.episodes[seed].append(float(returns[i, seed, j]))
            loop.latest_return = float(returns[i, seed, j])
        before = loop.step
        loop.step += count * n
        if on_step is not None:
            for t in range(before + 1, loop.step + 1):
                on_step(t, loop.latest_return)

    def run(self, on_row: OnRow, **kwargs: Any) -> int:
        self.stop_at = kwargs.get("stop_at")
        return super().run(on_row, **kwargs)
