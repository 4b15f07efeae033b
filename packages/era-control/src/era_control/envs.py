"""Environments behind one string registry, and a batch of them stepped together.

Ids:

* ``dmc/<domain>-<task>``: a dm-control suite task (``dmc/cartpole-swingup``,
  ``dmc/ball_in_cup-catch``, ``dmc/dog-run``). Observations are the task's observation dict
  flattened and concatenated; actions are in ``[-1, 1]`` already.
* ``gym/<Id>``: a Gymnasium MuJoCo environment (``gym/HalfCheetah-v5``). Actions in ``[-1, 1]``
  are rescaled to the environment's box.
* ``hb/<task>``: a HumanoidBench task (``hb/h1hand-walk-v0``), imported lazily; action repeat 2
  and no episode termination by default, as in the paper.

Every adapter takes actions in ``[-1, 1]^D``, returns ``float32`` observations, repeats an
action ``action_repeat`` times (rewards summed) and is reset with an explicit seed, so an
episode is a deterministic function of its seed and its actions (what makes exact resume
possible: :class:`VectorEnv` re-simulates the current episode from its recorded actions).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np

from ._display import default_headless_gl

# Before dm-control, MuJoCo or HumanoidBench is first imported (they read it once).
default_headless_gl()

PREFIXES = ("dmc/", "gym/", "hb/")
EXAMPLE_IDS = (
    "dmc/cartpole-swingup",
    "dmc/cheetah-run",
    "dmc/walker-walk",
    "dmc/dog-run",
    "dmc/humanoid-run",
    "gym/HalfCheetah-v5",
    "gym/Humanoid-v5",
    "hb/h1hand-walk-v0",
)
HB_INSTALL = (
    "HumanoidBench is not on PyPI. Install it from its upstream source with the pins that work "
    "with dm-control 1.0.50:\n"
    "    uv pip install mujoco==3.17.0 dm-control==1.0.50 'gymnasium[mujoco]>=1.0,<2' "
    "git+https://github.com/carlosferrazza/humanoid-bench"
)


def _unknown(env_id: str, why: str) -> ValueError:
    return ValueError(
        f"unknown environment id {env_id!r}: {why}. Valid prefixes: {', '.join(PREFIXES)}; "
        f"for example {', '.join(EXAMPLE_IDS)}"
    )


def _flatten(observation: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in observation.values()])


class DMCEnv:
    """A dm-control suite task with a flat observation."""

    def __init__(self, domain: str, task: str, action_repeat: int = 1):
        from dm_control import suite

        self._random = np.random.RandomState(0)
        self._env = suite.load(domain, task, task_kwargs={"random": self._random})
        spec = self._env.action_spec()
        if not (np.allclose(spec.minimum, -1) and np.allclose(spec.maximum, 1)):
            raise ValueError(f"dmc/{domain}-{task}: action bounds are not [-1, 1]")
        self.action_dim = int(spec.shape[0])
        self.observation_dim = int(
            sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        )
        self.action_repeat = action_repeat

    def reset(self, seed: int) -> np.ndarray:
        self._random.seed(seed % 2**32)
        return _flatten(self._env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        reward, ts = 0.0, None
        for _ in range(self.action_repeat):
            ts = self._env.step(action)
            reward += float(ts.reward or 0.0)
            if ts.last():
                break
        assert ts is not None  # action_repeat >= 1: the loop ran
        # dm-control suite tasks end only by their time limit (discount stays 1): truncation.
        terminated = ts.last() and ts.discount == 0.0
        return _flatten(ts.observation), reward, bool(terminated), bool(ts.last())

    def close(self) -> None:
        self._env.close()


class GymEnv:
    """A Gymnasium environment with its action box rescaled to ``[-1, 1]``."""

    def __init__(self, env: Any, action_repeat: int = 1, terminate: bool = True):
        self._env = env
        self.action_dim = int(np.prod(env.action_space.shape))
        self.observation_dim = int(np.prod(env.observation_space.shape))
        self._low = np.asarray(env.action_space.low, np.float64)
        self._high = np.asarray(env.action_space.high, np.float64)
        self.action_repeat = action_repeat
        self.terminate = terminate

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self._env.reset(seed=seed % 2**31)
        return np.asarray(obs, np.float32).ravel()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        scaled = self._low + 0.5 * (np.clip(action, -1, 1) + 1.0) * (self._high - self._low)
        reward, terminated, truncated, obs = 0.0, False, False, None
        for _ in range(self.action_repeat):
            obs, r, term, truncated, _ = self._env.step(scaled)
            reward += float(r)
            terminated = bool(term) and self.terminate
            if terminated or truncated:
                break
        assert obs is not None  # action_repeat >= 1: the loop ran
        return np.asarray(obs, np.float32).ravel(), reward, terminated, bool(truncated)

    def close(self) -> None:
        self._env.close()


def _dmc(name: str, env_id: str, action_repeat: int | None) -> DMCEnv:
    from dm_control import suite

    domain, _, task = name.partition("-")
    if (domain, task) not in suite.ALL_TASKS:
        some = ", ".join(f"dmc/{d}-{t}" for d, t in suite.BENCHMARKING[:8])
        raise _unknown(env_id, f"no dm-control suite task {domain!r}/{task!r} (e.g. {some})")
    return DMCEnv(domain, task, action_repeat or 1)


def _gym_ids() -> list[str]:
    import gymnasium as gym

    return sorted(
        k for k, v in gym.registry.items() if "mujoco" in str(v.entry_point) and k.endswith("-v5")
    )


def _gym(name: str, env_id: str, action_repeat: int | None) -> GymEnv:
    import gymnasium as gym

    if name not in gym.registry or "mujoco" not in str(gym.registry[name].entry_point):
        raise _unknown(env_id, f"not a Gymnasium MuJoCo id (valid: {', '.join(_gym_ids())})")
    return GymEnv(gym.make(name), action_repeat or 1)


def _hb(name: str, env_id: str, action_repeat: int | None) -> GymEnv:
    try:
        importlib.import_module("humanoid_bench")
    except ImportError as err:
        raise ImportError(f"{env_id} needs HumanoidBench ({err}). {HB_INSTALL}") from err
    import gymnasium as gym

    if name not in gym.registry:
        valid = sorted(k for k in gym.registry if k.startswith(("h1hand-", "h1-")))
        raise _unknown(env_id, f"no HumanoidBench task {name!r} (e.g. {', '.join(valid[:8])})")
    env = gym.make(name, render_mode=None)
    return GymEnv(env, 2 if action_repeat is None else action_repeat, terminate=False)


def make_env(env_id: str, action_repeat: int | None = None) -> DMCEnv | GymEnv:
    """One environment from its string id; ``action_repeat=None`` takes the family's default
    (1 for ``dmc/`` and ``gym/``, 2 for ``hb/``).

    >>> env = make_env("dmc/cartpole-swingup")
    >>> env.observation_dim, env.action_dim
    (5, 1)
    >>> make_env("atari/Pong")
    Traceback (most recent call last):
    ...
    ValueError: unknown environment id 'atari/Pong': ...
    """
    if action_repeat is not None and action_repeat < 1:
        raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
    prefix, sep, name = env_id.partition("/")
    if not sep or not name:
        raise _unknown(env_id, "expected '<prefix>/<name>'")
    makers = {"dmc": _dmc, "gym": _gym, "hb": _hb}
    if prefix not in makers:
        raise _unknown(env_id, f"unknown prefix {prefix + '/'!r}")
    return makers[prefix](name, env_id, action_repeat)


def episode_seed(seed: int, stream: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of environment stream ``stream`` of run seed ``seed``."""
    return int(np.random.SeedSequence([seed, stream, episode]).generate_state(1)[0])


@dataclasses.dataclass
class StepResult:
    obs: np.ndarray  # (N, obs_dim): observation to act on (after an auto-reset)
    final_obs: np.ndarray  # (N, obs_dim): the observation the step reached (for the transition)
    reward: np.ndarray  # (N,)
    terminated: np.ndarray  # (N,) bool: true end of the MDP (no bootstrap)
    done: np.ndarray  # (N,) bool: the episode ended (terminated or truncated)
    episode_return: np.ndarray  # (N,): return of the episode that ended, NaN where none did


class VectorEnv:
    """``N`` instances of one env id, one per seed, stepped as a batch with auto-reset.

    Episode ``k`` of instance ``i`` is reset with ``episode_seed(seeds[i], stream, k)``, and the
    actions of the running episode are recorded, so :meth:`state_dict` /
    :meth:`load_state_dict` restore the exact simulator state by re-simulating them.
    """

    def __init__(
        self,
        env_id: str,
        seeds: list[int],
        *,
        stream: int = 0,
        action_repeat: int | None = None,
    ):
        self.env_id = env_id
        self.seeds = list(seeds)
        self.stream = stream
        self.envs = [make_env(env_id, action_repeat) for _ in seeds]
        self.observation_dim = self.envs[0].observation_dim
        self.action_dim = self.envs[0].action_dim
        self.episode = [0] * len(seeds)
        self.actions: list[list[np.ndarray]] = [[] for _ in seeds]
        self.returns = np.zeros(len(seeds))
        self._obs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.envs)

    def _reset_one(self, i: int) -> np.ndarray:
        self.actions[i] = []
        self.returns[i] = 0.0
        return self.envs[i].reset(episode_seed(self.seeds[i], self.stream, self.episode[i]))

    def reset(self) -> np.ndarray:
        self.episode = [0] * len(self.envs)
        self._obs = np.stack([self._reset_one(i) for i in range(len(self.envs))])
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions, np.float64).reshape(len(self.envs), self.action_dim)
        finite = np.isfinite(actions).all(axis=1)
        if not finite.all():
            bad = [self.seeds[i] for i in np.flatnonzero(~finite)]
            raise FloatingPointError(
                f"the policy returned a non-finite action for seed(s) {bad}: training diverged "
                "(NaN or inf in the network); the run directory keeps its last checkpoint"
            )
        n = len(self.envs)
        obs = np.empty((n, self.observation_dim), np.float32)
        final = np.empty_like(obs)
        reward, term, done = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        ep_ret = np.full(n, np.nan)
        for i, env in enumerate(self.envs):
            o, r, t, tr = env.step(actions[i])
            self.actions[i].append(actions[i].copy())
            self.returns[i] += r
            final[i], reward[i], term[i], done[i] = o, r, t, t or tr
            if done[i]:
                ep_ret[i] = self.returns[i]
                self.episode[i] += 1
                o = self._reset_one(i)
            obs[i] = o
        self._obs = obs
        return StepResult(obs.copy(), final, reward, term, done, ep_ret)

    def state_dict(self) -> dict[str, Any]:
        return {
            "episode": list(self.episode),
            "actions": [np.array(a).reshape(-1, self.action_dim) for a in self.actions],
            "returns": self.returns.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> np.ndarray:
        """Restore the exact state (re-simulating the running episodes); returns the obs."""
        obs = []
        for i, env in enumerate(self.envs):
            self.episode[i] = int(state["episode"][i])
            o = self._reset_one(i)
            for a in state["actions"][i]:
                o, r, *_ = env.step(a)
                self.actions[i].append(np.asarray(a, np.float64))
                self.returns[i] += r
            obs.append(o)
        if not np.allclose(self.returns, state["returns"], rtol=0, atol=1e-9):
            raise RuntimeError("re-simulating the running episodes did not reproduce their returns")
        self._obs = np.stack(obs)
        return self._obs.copy()

    def close(self) -> None:
        for env in self.envs:
            env.close()
