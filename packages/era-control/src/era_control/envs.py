"""Environments behind one string registry, and a batch of them stepped together.

Ids:

* ``dmc/<domain>-<task>``: a dm-control suite task (``dmc/cartpole-swingup``,
  ``dmc/ball_in_cup-catch``, ``dmc/dog-run``). Observations are the task's observation dict
  flattened and concatenated; actions are in ``[-1, 1]`` already.
* ``gym/<Id>``: a Gymnasium MuJoCo environment (``gym/HalfCheetah-v5``). Actions in ``[-1, 1]``
  are rescaled to the environment's box.
* ``hb/<task>``: a HumanoidBench task (``hb/h1hand-walk-v0``), imported lazily; action repeat 2
  and no episode termination by default, as in the paper.
* ``mjx/<domain>-<task>``: a DM Control Suite task of MuJoCo Playground on MJX
  (``mjx/cheetah-run``), stepped on the device inside the parallel off-policy algorithms'
  program (:mod:`era_control.mjx_envs`), not here: :func:`make_env` refuses it.

Every adapter takes actions in ``[-1, 1]^D``, returns ``float32`` observations, repeats an
action ``action_repeat`` times (rewards summed) and is reset with an explicit seed, so an
episode is a deterministic function of its seed and its actions (what makes exact resume
possible: :class:`VectorEnv` re-simulates the current episode from its recorded actions).
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import importlib
import itertools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

# --- a headless OpenGL backend for MuJoCo when there is no display ---------------------------
# dm-control and MuJoCo pick their OpenGL backend from MUJOCO_GL when first imported; left unset
# without a display, dm-control tries GLFW first and prints "GLFWError: ... DISPLAY environment
# variable is missing". Training never renders, so without a display a headless backend is chosen
# up front: EGL when its library is installed, else OSMesa, else none ("disabled"). An explicit
# MUJOCO_GL always wins; with a display (DISPLAY or WAYLAND_DISPLAY) nothing is set. (Kept in
# this module, which environment workers load by path, outside the package.)

HEADLESS_BACKENDS = (("egl", "EGL"), ("osmesa", "OSMesa"))


def headless_backend() -> str:
    """The first headless backend whose library is installed, else ``"disabled"``."""
    for backend, library in HEADLESS_BACKENDS:
        if ctypes.util.find_library(library):
            return backend
    return "disabled"


def default_headless_gl(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Set ``MUJOCO_GL`` to a headless backend when it is unset and there is no display.

    Returns the value ``MUJOCO_GL`` holds afterwards (``None`` when it stays unset).
    """
    if "MUJOCO_GL" not in environ and not (
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    ):
        environ["MUJOCO_GL"] = headless_backend()
    return environ.get("MUJOCO_GL")


# Before dm-control, MuJoCo or HumanoidBench is first imported (they read it once).
default_headless_gl()

PREFIXES = ("dmc/", "gym/", "hb/", "mjx/")
EXAMPLE_IDS = (
    "dmc/cartpole-swingup",
    "dmc/cheetah-run",
    "dmc/walker-walk",
    "dmc/dog-run",
    "dmc/humanoid-run",
    "gym/HalfCheetah-v5",
    "gym/Humanoid-v5",
    "hb/h1hand-walk-v0",
    "mjx/cheetah-run",
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


def _agent_steps(limit: float, action_repeat: int) -> int | None:
    """Agent steps in an episode of ``limit`` environment steps, ``None`` for no time limit."""
    return None if math.isinf(limit) else math.ceil(limit / max(action_repeat, 1))


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
        # the suite's time limit in control steps (1000 for every suite task); inf without one
        self.episode_steps = _agent_steps(
            getattr(self._env, "_step_limit", math.inf), action_repeat
        )

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
        spec = getattr(env, "spec", None)
        limit = getattr(spec, "max_episode_steps", None)
        self.episode_steps = _agent_steps(math.inf if limit is None else limit, action_repeat)

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


def _hb(name: str, env_id: str, action_repeat: int | None, standard: bool = False) -> GymEnv:
    try:
        importlib.import_module("humanoid_bench")
    except ImportError as err:
        raise ImportError(f"{env_id} needs HumanoidBench ({err}). {HB_INSTALL}") from err
    import gymnasium as gym

    if name not in gym.registry:
        valid = sorted(k for k in gym.registry if k.startswith(("h1hand-", "h1-")))
        raise _unknown(env_id, f"no HumanoidBench task {name!r} (e.g. {', '.join(valid[:8])})")
    env = gym.make(name, render_mode=None)
    if standard:  # HumanoidBench's own task: no action repeat, episodes end on termination
        return GymEnv(env, 1 if action_repeat is None else action_repeat, terminate=True)
    return GymEnv(env, 2 if action_repeat is None else action_repeat, terminate=False)


def make_env(
    env_id: str, action_repeat: int | None = None, *, standard: bool = False
) -> DMCEnv | GymEnv:
    """One environment from its string id; ``action_repeat=None`` takes the family's default
    (1 for ``dmc/`` and ``gym/``, 2 for ``hb/``). ``standard=True`` makes an ``hb/`` task the
    standard HumanoidBench one (action repeat 1, with termination; the Fast* algorithms' setting);
    it changes nothing for ``dmc/`` and ``gym/``.

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
    makers = {"dmc": _dmc, "gym": _gym}
    if prefix == "mjx":
        raise ValueError(
            f"{env_id}: mjx/ environments step on the device inside the program of the "
            "parallel off-policy algorithms (era_control.list_algorithms() with trainer kind "
            "'parallel off-policy', given --num-envs N); this one steps host environments "
            "(use dmc/, gym/ or hb/)"
        )
    if prefix == "hb":
        return _hb(name, env_id, action_repeat, standard)
    if prefix not in makers:
        raise _unknown(env_id, f"unknown prefix {prefix + '/'!r}")
    return makers[prefix](name, env_id, action_repeat)


def episode_seed(seed: int, stream: int, episode: int, env: int = 0) -> int:
    """The reset seed of episode ``episode`` of environment stream ``stream`` of run seed ``seed``;
    ``env`` numbers the parallel copies of one seed (copy 0 gets the single-environment seeds)."""
    entropy = [seed, stream, episode] if env == 0 else [seed, stream, episode, env]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@dataclasses.dataclass
class StepResult:
    obs: np.ndarray  # (N, obs_dim): observation to act on (after an auto-reset)
    final_obs: np.ndarray  # (N, obs_dim): the observation the step reached (for the transition)
    reward: np.ndarray  # (N,)
    terminated: np.ndarray  # (N,) bool: true end of the MDP (no bootstrap)
    done: np.ndarray  # (N,) bool: the episode ended (terminated or truncated)
    episode_return: np.ndarray  # (N,): return of the episode that ended, NaN where none did


class _LocalEnvs:
    """The environments of a :class:`VectorEnv` in this process."""

    def __init__(self, make: Callable[[], DMCEnv | GymEnv], count: int):
        self.envs = [make() for _ in range(count)]

    def step(self, actions: np.ndarray, next_seeds: list[int]) -> tuple[np.ndarray, ...]:
        return _step_chunk(self.envs, actions, next_seeds)

    def reset(self, seeds: dict[int, int]) -> dict[int, np.ndarray]:
        return {k: self.envs[k].reset(s) for k, s in seeds.items()}

    def replay(self, episodes: dict[int, tuple[int, np.ndarray]]) -> dict[int, tuple]:
        return {k: _replay(self.envs[k], s, a) for k, (s, a) in episodes.items()}

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _step_chunk(envs: list, actions: np.ndarray, next_seeds: list[int]) -> tuple[np.ndarray, ...]:
    """Step each env; one whose episode ends is reset with its ``next_seeds`` entry. Returns
    ``(final_obs, reward, terminated, truncated, obs)`` (``obs`` after any reset)."""
    n = len(envs)
    final, obs = [], []
    reward, term, trunc = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    for k, env in enumerate(envs):
        o, reward[k], term[k], trunc[k] = env.step(actions[k])
        final.append(o)
        obs.append(env.reset(next_seeds[k]) if term[k] or trunc[k] else o)
    return np.stack(final), reward, term, trunc, np.stack(obs)


def _replay(env: DMCEnv | GymEnv, seed: int, actions: np.ndarray) -> tuple[np.ndarray, float]:
    """Reset ``env`` with ``seed`` and re-apply ``actions``: ``(obs, summed reward)``."""
    o, total = env.reset(seed), 0.0
    for a in actions:
        o, r, *_ = env.step(np.asarray(a, np.float64))
        total += r
    return o, total


def serve(
    inbox: Any, outbox: Any, env_id: str, action_repeat: int | None, standard: bool, count: int
) -> None:
    """The loop of a worker process (:mod:`era_control._env_worker`): ``count`` environments,
    driven by ``(command, payload)`` messages on ``inbox``, answers on ``outbox``."""
    try:
        local = _LocalEnvs(lambda: make_env(env_id, action_repeat, standard=standard), count)
    except Exception as err:
        outbox.send(("error", f"{type(err).__name__}: {err}"))
        return
    outbox.send(("ok", None))
    while True:
        try:
            command, payload = inbox.recv()
        except EOFError:  # the parent is gone
            break
        if command == "close":
            break
        try:
            outbox.send(("ok", getattr(local, command)(*payload)))
        except Exception as err:
            outbox.send(("error", f"{type(err).__name__}: {err}"))
    local.close()


class _WorkerEnvs:
    """The environments of a :class:`VectorEnv` spread over worker processes, each holding a
    contiguous chunk of them; every batched call sends one message per worker and then waits
    for all the answers. A worker is a fresh interpreter running
    :mod:`era_control._env_worker` (no fork of this process and its JAX threads, no import
    of the caller's main module); the workers start on first use and stop on :meth:`close`."""

    def __init__(
        self, env_id: str, action_repeat: int | None, standard: bool, count: int, workers: int
    ):
        self.args = (env_id, action_repeat, standard)
        workers = max(1, min(workers, count))
        bounds = np.linspace(0, count, workers + 1).astype(int)
        self.chunks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.pipes: list[tuple[Any, Any]] = []
        self.procs: list[Any] = []

    def _start(self) -> None:
        import json
        import os
        import subprocess
        import sys
        from multiprocessing.connection import Connection
        from pathlib import Path

        script = str(Path(__file__).with_name("_env_worker.py"))
        for a, b in self.chunks:
            down_r, down_w = os.pipe()
            up_r, up_w = os.pipe()
            spec = json.dumps([*self.args, b - a])
            proc = subprocess.Popen(
                [sys.executable, script, str(down_r), str(up_w), spec], pass_fds=(down_r, up_w)
            )
            os.close(down_r)
            os.close(up_w)
            self.procs.append(proc)
            self.pipes.append(
                (Connection(down_w, readable=False), Connection(up_r, writable=False))
            )
        for _, inbox in self.pipes:
            self._answer(inbox)

    def _answer(self, inbox: Any) -> Any:
        try:
            status, value = inbox.recv()
        except EOFError:
            status, value = "error", "the worker process exited"
        if status == "error":
            self.close()
            raise RuntimeError(f"an environment worker failed: {value}")
        return value

    def _call(self, command: str, payloads: list[tuple]) -> list[Any]:
        if not self.pipes:
            self._start()
        for (outbox, _), payload in zip(self.pipes, payloads, strict=True):
            outbox.send((command, payload))
        return [self._answer(inbox) for _, inbox in self.pipes]

    def step(self, actions: np.ndarray, next_seeds: list[int]) -> tuple[np.ndarray, ...]:
        parts = self._call("step", [(actions[a:b], next_seeds[a:b]) for a, b in self.chunks])
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))

    def _by_worker(self, items: dict[int, Any]) -> list[tuple]:
        return [({k - a: v for k, v in items.items() if a <= k < b},) for a, b in self.chunks]

    def _merge(self, parts: list[dict[int, Any]]) -> dict[int, Any]:
        return {
            k + a: v for (a, _), p in zip(self.chunks, parts, strict=True) for k, v in p.items()
        }

    def reset(self, seeds: dict[int, int]) -> dict[int, np.ndarray]:
        return self._merge(self._call("reset", self._by_worker(seeds)))

    def replay(self, episodes: dict[int, tuple[int, np.ndarray]]) -> dict[int, tuple]:
        return self._merge(self._call("replay", self._by_worker(episodes)))

    def close(self) -> None:
        for outbox, inbox in self.pipes:
            try:
                outbox.send(("close", ()))
            except OSError:  # that worker is gone already
                pass
            outbox.close()
            inbox.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
        self.pipes, self.procs = [], []


class VectorEnv:
    """``num_envs`` instances of one env id per seed, stepped as a batch with auto-reset.

    Instance ``k = i * num_envs + j`` is copy ``j`` of seed ``seeds[i]``; its episode ``e`` is
    reset with ``episode_seed(seeds[i], stream, e, j)``, and the actions of the running episode
    are recorded, so :meth:`state_dict` / :meth:`load_state_dict` restore the exact simulator
    state by re-simulating them. With ``workers > 0`` the instances live in that many worker
    processes (at most one per instance); ``env.step`` then runs in parallel there, and a
    resumed run re-simulates the running episodes there too.
    """

    def __init__(
        self,
        env_id: str,
        seeds: list[int],
        *,
        stream: int = 0,
        action_repeat: int | None = None,
        num_envs: int = 1,
        workers: int = 0,
        standard: bool = False,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id = env_id
        self.seeds = list(seeds)
        self.stream = stream
        self.num_envs = num_envs
        n = len(seeds) * num_envs
        self.instances = [(self.seeds[k // num_envs], k % num_envs) for k in range(n)]
        if workers > 0:  # one env here for the dimensions (and to check the id)
            probe = make_env(env_id, action_repeat, standard=standard)
            self.observation_dim, self.action_dim = probe.observation_dim, probe.action_dim
            probe.close()
            self.pool: _LocalEnvs | _WorkerEnvs = _WorkerEnvs(
                env_id, action_repeat, standard, n, workers
            )
            self.envs: list[DMCEnv | GymEnv] = []
        else:
            local = _LocalEnvs(lambda: make_env(env_id, action_repeat, standard=standard), n)
            self.pool, self.envs = local, local.envs
            self.observation_dim = self.envs[0].observation_dim
            self.action_dim = self.envs[0].action_dim
        self.episode = [0] * n
        self.actions: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.returns = np.zeros(n)
        self._obs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.instances)

    def _seed(self, k: int, episode: int) -> int:
        seed, copy = self.instances[k]
        return episode_seed(seed, self.stream, episode, copy)

    def reset(self) -> np.ndarray:
        n = len(self)
        self.episode = [0] * n
        self.actions = [[] for _ in range(n)]
        self.returns = np.zeros(n)
        obs = self.pool.reset({k: self._seed(k, 0) for k in range(n)})
        self._obs = np.stack([obs[k] for k in range(n)])
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        n = len(self)
        actions = np.asarray(actions, np.float64).reshape(n, self.action_dim)
        finite = np.isfinite(actions).all(axis=1)
        if not finite.all():
            bad = sorted({self.instances[k][0] for k in np.flatnonzero(~finite)})
            raise FloatingPointError(
                f"the policy returned a non-finite action for seed(s) {bad}: training diverged "
                "(NaN or inf in the network); the run directory keeps its last checkpoint"
            )
        next_seeds = [self._seed(k, self.episode[k] + 1) for k in range(n)]
        final, reward, term, trunc, obs = self.pool.step(actions, next_seeds)
        done = term | trunc
        ep_ret = np.full(n, np.nan)
        for k in range(n):
            self.actions[k].append(actions[k].copy())
            self.returns[k] += reward[k]
            if done[k]:
                ep_ret[k] = self.returns[k]
                self.episode[k] += 1
                self.actions[k], self.returns[k] = [], 0.0
        self._obs = obs.astype(np.float32)
        return StepResult(self._obs.copy(), final.astype(np.float32), reward, term, done, ep_ret)

    def state_dict(self) -> dict[str, Any]:
        return {
            "episode": list(self.episode),
            "actions": [np.array(a).reshape(-1, self.action_dim) for a in self.actions],
            "returns": self.returns.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> np.ndarray:
        """Restore the exact state (re-simulating the running episodes); returns the obs."""
        n = len(self)
        self.episode = [int(e) for e in state["episode"]]
        recorded = [
            np.asarray(a, np.float64).reshape(-1, self.action_dim) for a in state["actions"]
        ]
        replayed = self.pool.replay(
            {k: (self._seed(k, self.episode[k]), recorded[k]) for k in range(n)}
        )
        self.actions = [list(a) for a in recorded]
        self.returns = np.array([replayed[k][1] for k in range(n)], np.float64)
        if not np.allclose(self.returns, state["returns"], rtol=0, atol=1e-9):
            raise RuntimeError("re-simulating the running episodes did not reproduce their returns")
        self._obs = np.stack([replayed[k][0] for k in range(n)]).astype(np.float32)
        return self._obs.copy()

    def close(self) -> None:
        self.pool.close()
