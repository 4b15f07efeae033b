"""``mjx/<domain>-<task>``: MuJoCo Playground's DM Control Suite on MJX, stepped on the device.

MuJoCo Playground (PyPI ``playground``, module ``mujoco_playground``) re-implements the DM
Control Suite on MJX, MuJoCo in JAX. Here a task becomes a set of pure functions on a batch of
environment states (an array pytree with leading batch axes, e.g. ``(seeds, num_envs)``):
:meth:`MJXTask.init`, :meth:`MJXTask.step` (with auto-reset) and :meth:`MJXTask.rollout_return`
(evaluation). They are traced into the learner's own jitted program
(:mod:`era_control.mjx_trainer`), so the environments step on the device with no host round
trip per step, and the state goes into a checkpoint like any other array.

* Ids use dm-control's spelling (``mjx/cheetah-run``, ``mjx/ball_in_cup-catch``; see
  :data:`TASKS`); Playground's own names (``mjx/CheetahRun``) are accepted too.
* Every task of :data:`TASKS` builds from files inside the installed ``playground`` wheel (its
  ``dm_control_suite/xmls``), so nothing is downloaded. Playground's locomotion and manipulation
  environments clone MuJoCo Menagerie with git when created; their ids are refused.
* Physics: MJX's JAX implementation (``impl="jax"``; Playground's default, MuJoCo Warp, needs an
  NVIDIA GPU), so the same code runs on CPU and GPU.
* An action in ``[-1, 1]^D`` (every task's control range) is repeated ``action_repeat`` times,
  rewards summed. An episode lasts Playground's ``episode_length`` physics-control steps
  (1000, as dm-control), i.e. ``ceil(episode_length / action_repeat)`` agent steps, and ends
  by truncation; a state whose physics turned non-finite (Playground's ``done``) ends as
  terminated, its observation replaced by zeros.
* Every environment of a batch has a base key (the trainer's: ``PRNGKey(episode_seed(s, 0, 0,
  j))`` for environment ``j`` of seed ``s``, see :mod:`era_control.mjx_trainer`); its episode
  ``e`` resets with ``fold_in(base_key, e)``, so an episode is a deterministic function of its
  seed and actions, as for the host adapters of :mod:`era_control.envs`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

PREFIX = "mjx/"
# mjx/<domain>-<task> (dm-control's names) -> MuJoCo Playground's DM Control Suite environment
TASKS = {
    "acrobot-swingup": "AcrobotSwingup",
    "acrobot-swingup_sparse": "AcrobotSwingupSparse",
    "ball_in_cup-catch": "BallInCup",
    "cartpole-balance": "CartpoleBalance",
    "cartpole-balance_sparse": "CartpoleBalanceSparse",
    "cartpole-swingup": "CartpoleSwingup",
    "cartpole-swingup_sparse": "CartpoleSwingupSparse",
    "cheetah-run": "CheetahRun",
    "finger-spin": "FingerSpin",
    "finger-turn_easy": "FingerTurnEasy",
    "finger-turn_hard": "FingerTurnHard",
    "fish-swim": "FishSwim",
    "hopper-hop": "HopperHop",
    "hopper-stand": "HopperStand",
    "humanoid-stand": "HumanoidStand",
    "humanoid-walk": "HumanoidWalk",
    "humanoid-run": "HumanoidRun",
    "pendulum-swingup": "PendulumSwingup",
    "point_mass-easy": "PointMass",
    "reacher-easy": "ReacherEasy",
    "reacher-hard": "ReacherHard",
    "swimmer-swimmer6": "SwimmerSwimmer6",
    "walker-run": "WalkerRun",
    "walker-stand": "WalkerStand",
    "walker-walk": "WalkerWalk",
}
INSTALL = (
    "the mjx/ environments need MuJoCo Playground on MJX: install era-control with its mjx "
    "extra (uv build --all-packages --wheel --out-dir dist && pip install --find-links dist "
    "'era-control[mjx]'; it adds the PyPI packages playground and mujoco-mjx)"
)


def is_mjx_id(env_id: str) -> bool:
    return env_id.startswith(PREFIX)


def _offline_ids() -> str:
    return ", ".join(PREFIX + name for name in TASKS)


def _menagerie_envs() -> tuple[str, ...]:
    """Playground's locomotion and manipulation environment names (empty if not installed)."""
    try:
        from mujoco_playground import locomotion, manipulation
    except ImportError:
        return ()
    return (*locomotion.ALL_ENVS, *manipulation.ALL_ENVS)


def playground_name(env_id: str) -> str:
    """The Playground environment of an ``mjx/`` id; ``ValueError`` naming the offline ids for
    any other (Playground's Menagerie-based environments included)."""
    name = env_id.removeprefix(PREFIX)
    if name in TASKS:
        return TASKS[name]
    if name in TASKS.values():
        return name
    if name in _menagerie_envs():
        why = (
            f"Playground's {name} needs MuJoCo Menagerie, which Playground downloads with git "
            "when the environment is created, so it is not available offline"
        )
    else:
        why = "not a DM Control Suite task of MuJoCo Playground"
    raise ValueError(
        f"unknown environment id {env_id!r}: {why}. The mjx/ ids available offline: "
        f"{_offline_ids()}"
    )


def _batched(fn: Callable[..., Any], ndim: int) -> Callable[..., Any]:
    """``fn`` vmapped over ``ndim`` leading axes of every argument."""
    for _ in range(ndim):
        fn = jax.vmap(fn)
    return fn


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``mask`` (over the leading axes), else ``old``, leaf by leaf."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree.map(pick, new, old)


@dataclasses.dataclass(frozen=True)
class Transition:
    """What one batched step returns (all with the state's leading axes)."""

    obs: jax.Array  # the observation to act on (after an auto-reset)
    final_obs: jax.Array  # the observation the step reached (for the stored transition)
    reward: jax.Array
    terminated: jax.Array  # bool: the physics turned non-finite (no bootstrap)
    done: jax.Array  # bool: the episode ended (terminated or truncated)
    episode_return: jax.Array  # the return of the episode that ended, NaN where none did


jax.tree_util.register_dataclass(
    Transition,
    data_fields=["obs", "final_obs", "reward", "terminated", "done", "episode_return"],
    meta_fields=[],
)


def _strong(tree: Any) -> Any:
    """``tree`` with every leaf's dtype strong. Playground's reset and step leave some leaves
    weakly typed (cheetah's reset ``data.time``, pendulum's step another), and a jitted loop
    given a state of each kind compiles twice (a minute at MJX's sizes)."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), tree)


class MJXTask:
    """One Playground DM Control Suite task as pure, batchable JAX functions."""

    def __init__(self, env_id: str, action_repeat: int | None = None):
        if action_repeat is not None and action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        name = playground_name(env_id)
        try:
            from mujoco_playground import dm_control_suite
        except ImportError as err:
            raise ImportError(f"{env_id}: {INSTALL} ({err})") from err
        self.env_id, self.name = env_id, name
        try:
            self.env = dm_control_suite.load(name, config_overrides={"impl": "jax"})
        except AttributeError as err:  # Playground code that the installed MuJoCo lacks
            raise ValueError(
                f"{env_id}: MuJoCo Playground cannot build {name} with the installed mujoco ({err})"
            ) from err
        ctrl = np.asarray(self.env.mj_model.actuator_ctrlrange)
        if not np.allclose(ctrl, [-1.0, 1.0]):
            raise ValueError(f"{env_id}: action bounds are not [-1, 1]")
        self.action_dim = int(self.env.action_size)
        self.observation_dim = int(cast(int, self.env.observation_size))
        self.action_repeat = action_repeat or 1
        config: Any = dm_control_suite.get_default_config(name)
        self.episode_length = int(config.episode_length)
        self.max_steps = math.ceil(self.episode_length / self.action_repeat)

    # ---- one environment (vmapped by the batched functions below) ---------------------------
    def _reset_one(self, key: jax.Array) -> Any:
        return _strong(self.env.reset(key))

    def _step_one(self, sim: Any, action: jax.Array) -> tuple[Any, jax.Array]:
        """``action_repeat`` physics-control steps: the new Playground state and summed reward."""

        def repeat(carry: tuple[Any, jax.Array], _: None) -> tuple[tuple[Any, jax.Array], None]:
            sim, total = carry
            sim = self.env.step(sim, action)
            return (sim, total + sim.reward), None

        (sim, reward), _ = jax.lax.scan(
            repeat, (sim, jnp.zeros((), jnp.float32)), None, length=self.action_repeat
        )
        return _strong(sim), reward

    # ---- batches ----------------------------------------------------------------------------
    def init(self, base_keys: jax.Array) -> dict[str, Any]:
        """The state of a batch of environments at the start of their first episode;
        ``base_keys`` has the batch's leading axes and a last axis of 2."""
        ndim = base_keys.ndim - 1
        episode = jnp.zeros(base_keys.shape[:-1], jnp.int32)
        sim = _batched(self._reset_one, ndim)(
            _batched(jax.random.fold_in, ndim)(base_keys, episode)
        )
        zeros = jnp.zeros(episode.shape, jnp.float32)
        return {"sim": sim, "base_key": base_keys, "episode": episode, "t": episode, "ret": zeros}

    @staticmethod
    def observation(state: dict[str, Any]) -> jax.Array:
        return state["sim"].obs

    def step(self, state: dict[str, Any], action: jax.Array) -> tuple[dict[str, Any], Transition]:
        """Step every environment; those whose episode ends are reset (their next episode)."""
        ndim = state["t"].ndim
        sim, reward = _batched(self._step_one, ndim)(state["sim"], action)
        finite = jnp.all(jnp.isfinite(sim.obs), -1) & jnp.isfinite(reward)
        reward = jnp.where(finite, reward, 0.0)
        final_obs = jnp.where(finite[..., None], sim.obs, 0.0)
        t = state["t"] + 1
        terminated = (sim.done > 0) | ~finite
        done = terminated | (t >= self.max_steps)
        ret = state["ret"] + reward
        episode = state["episode"] + done.astype(jnp.int32)

        def reset(sim: Any) -> Any:
            keys = _batched(jax.random.fold_in, ndim)(state["base_key"], episode)
            return _select(done, _batched(self._reset_one, ndim)(keys), sim)

        # one reset of the whole batch, run only on a step where some episode ends
        sim = jax.lax.cond(jnp.any(done), reset, lambda sim: sim, sim)
        new = {
            "sim": sim,
            "base_key": state["base_key"],
            "episode": episode,
            "t": jnp.where(done, 0, t),
            "ret": jnp.where(done, 0.0, ret),
        }
        out = Transition(
            sim.obs, final_obs, reward, terminated, done, jnp.where(done, ret, jnp.nan)
        )
        return new, out

    def rollout_return(
        self, policy: Callable[[jax.Array], jax.Array], keys: jax.Array
    ) -> jax.Array:
        """The return of one episode per key (``keys``: the batch's leading axes, then 2),
        acting with ``policy`` (observations with those axes -> actions)."""
        ndim = keys.ndim - 1
        sim = _batched(self._reset_one, ndim)(keys)
        total = jnp.zeros(keys.shape[:-1], jnp.float32)
        alive = jnp.ones(keys.shape[:-1], bool)

        def body(carry: tuple[Any, jax.Array, jax.Array], _: None) -> tuple[Any, None]:
            sim, total, alive = carry
            sim, reward = _batched(self._step_one, ndim)(sim, policy(sim.obs))
            finite = jnp.all(jnp.isfinite(sim.obs), -1) & jnp.isfinite(reward)
            total = total + jnp.where(alive & finite, reward, 0.0)
            alive = alive & finite & ~(sim.done > 0)
            return (sim, total, alive), None

        (_, total, _), _ = jax.lax.scan(body, (sim, total, alive), None, length=self.max_steps)
        return total


@functools.lru_cache(maxsize=16)
def load_task(env_id: str, action_repeat: int | None = None) -> MJXTask:
    """The :class:`MJXTask` of ``env_id`` (memoised: building the MJX model takes a while)."""
    return MJXTask(env_id, action_repeat)
