"""The ``mjx/`` adapter (MuJoCo Playground on MJX) and the Fast* trainer on it: batched reset and
step against Playground's own one-environment step, determinism per seed and auto-reset,
exact resume with the environment state in the checkpoint, sharding over 4 (CPU) devices equal
to one device, and bad input."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mujoco_playground", reason="the mjx extra (era-control[mjx]) is not installed")

import era_core
from era_control.envs import make_env
from era_control.mjx_envs import TASKS, load_task, playground_name
from era_control.mjx_trainer import MJXParallelTrainer, env_keys
from era_control.training import RunConfig, make_trainer

ENV = "mjx/pendulum-swingup"  # the smallest MJX program to compile
REPEAT = 50  # 20 agent steps per episode: runs of a few dozen steps cross an auto-reset
TINY = {
    "actor_hidden": [32, 16],
    "critic_hidden": [32, 16],
    "batch_size": 32,
    "num_atoms": 11,
    "v_min": -20.0,
    "v_max": 20.0,
    "learning_starts": 2,
    "updates_per_step": 1,
}
TIMING = {"updates_per_s", "env_steps_per_s"}


def test_batched_step_is_playground_step_with_auto_reset():
    task = load_task(ENV, REPEAT)
    assert (task.observation_dim, task.action_dim, task.max_steps) == (3, 1, 20)
    keys = env_keys([3, 4], 3)
    state = jax.jit(task.init)(keys)
    assert task.observation(state).shape == (2, 3, 3)
    again = jax.jit(task.init)(env_keys([3, 4], 3))
    np.testing.assert_array_equal(task.observation(state), task.observation(again))
    obs = np.asarray(task.observation(state))
    assert not np.array_equal(obs[0, 0], obs[0, 1]) and not np.array_equal(obs[0, 0], obs[1, 0])

    # one environment stepped by Playground itself, REPEAT times per action, as the reference
    sim = task.env.reset(jax.random.fold_in(keys[1, 2], 0))
    np.testing.assert_allclose(sim.obs, obs[1, 2], atol=1e-6)
    env_step = jax.jit(task.env.step)
    step = jax.jit(task.step)
    rng = np.random.default_rng(0)
    for t in range(task.max_steps):
        action = rng.uniform(-1, 1, (2, 3, 1)).astype(np.float32)
        state, out = step(state, action)
        reward = 0.0
        for _ in range(REPEAT):
            sim = env_step(sim, jnp.asarray(action[1, 2]))
            reward += float(sim.reward)
        assert out.obs.shape == (2, 3, 3) and out.reward.shape == (2, 3)
        np.testing.assert_allclose(out.final_obs[1, 2], sim.obs, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out.reward[1, 2], reward, rtol=1e-4, atol=1e-4)
        if t < task.max_steps - 1:
            assert not np.any(out.done) and np.all(np.isnan(out.episode_return))
    # the 20th agent step ends every episode by truncation, and each restarts with episode 1
    assert np.all(out.done) and not np.any(out.terminated)
    assert np.all(np.isfinite(out.episode_return)) and np.all(np.asarray(state["t"]) == 0)
    fresh = task.env.reset(jax.random.fold_in(keys[0, 1], 1))
    np.testing.assert_allclose(out.obs[0, 1], fresh.obs, atol=1e-6)
    assert not np.allclose(out.obs[0, 1], out.final_obs[0, 1])


@pytest.mark.parametrize("env_id", [ENV, "mjx/cheetah-run"])
def test_a_step_keeps_the_state_types_of_a_reset(env_id):
    """A jitted loop given a fresh state and then a stepped one compiles once only if both have
    the same avals: cheetah's Playground reset leaves ``data.time`` weakly typed."""
    task = load_task(env_id)
    init = jax.eval_shape(task.init, env_keys([0], 2))
    stepped = jax.eval_shape(
        task.step, init, jax.ShapeDtypeStruct((1, 2, task.action_dim), jnp.float32)
    )[0]
    avals = lambda tree: [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(tree)]  # noqa: E731
    assert avals(init) == avals(stepped)
    assert not any(weak for *_, weak in avals(init))


def _run(algo, steps=96, **kw):
    base = {"log_interval": 32, "eval_interval": 96, "checkpoint_interval": 32}
    base |= {"eval_episodes": 2, "action_repeat": REPEAT, "agent": dict(TINY), "num_envs": 4}
    return RunConfig(algo, ENV, steps, seeds=2, **(base | kw))


def _train(run, resume=None, stop_at=None):
    rows, blobs = [], {}
    trainer = make_trainer(run)
    trainer.run(rows.append, save_checkpoint=blobs.__setitem__, resume=resume, stop_at=stop_at)
    return trainer, [{k: v for k, v in r.items() if k not in TIMING} for r in rows], blobs


@pytest.mark.parametrize("algo", ["fasttd3", "fastsac", "fastsac-era"])
def test_resume_on_device_envs_is_exact(algo):
    run = _run(algo)
    full, rows, _ = _train(run)
    assert isinstance(full, MJXParallelTrainer)
    _, first, blobs = _train(run, stop_at=48)  # "killed" at 48: last checkpoint at 32
    assert sorted(blobs) == [32]
    part, rest, _ = _train(run, resume=blobs[32])
    assert [r for r in first if r["step"] <= 32] + rest == rows
    assert {r["step"] for r in rows} == {32, 64, 96} and {r["seed"] for r in rows} == {0, 1}
    assert "critic_loss" in rows[-1] and np.isfinite(rows[-1]["eval_return"])
    assert "episode_return" in rows[-1]  # 24 parallel steps: every episode ended once
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(part.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(full.state["env"]["episode"]).tolist() == [[1] * 4] * 2
    if algo == "fastsac-era":  # the ERA head: Gaussian entropy = H0 in every stored state
        agent, state = full.agent, full.state
        pick = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
        obs = agent.normalize(pick(state["norm"]), pick(state["buffer"])["obs"].reshape(-1, 3))
        _, log_std = agent.policy(pick(state["actor"]), obs)
        h = np.asarray(era_core.gaussian_entropy(log_std))
        np.testing.assert_allclose(h, agent.target_entropy, atol=1e-3)


def test_fastsac_era_learns_cartpole_swingup_on_mjx(learn_fast_cartpole):
    """FastSAC-ERA on MuJoCo Playground's cartpole swing-up, stepped inside the jitted program:
    the worker-process learning test's setting (the `cpu-fast` networks, batch 512, 4
    environments per seed, action repeat 8, 10,000 transitions, one seed) lifts the eval return
    well above a random policy's, with the Gaussian entropy at its target in every row. The
    random baseline is the uniform policy on the dm-control twin `dmc/cartpole-swingup` (the
    same task and reward; Playground's model is an MJX port of it, not bit-identical)."""
    trainer, _ = learn_fast_cartpole("mjx/cartpole-swingup")
    assert isinstance(trainer, MJXParallelTrainer)


def test_bad_mjx_input_is_a_one_line_value_error():
    assert playground_name("mjx/cheetah-run") == "CheetahRun" == playground_name("mjx/CheetahRun")
    assert len(TASKS) == 25
    with pytest.raises(ValueError, match=r"not a DM Control Suite task.*mjx/cheetah-run"):
        playground_name("mjx/cartpole-fly")
    with pytest.raises(ValueError, match=r"Menagerie.*not available offline"):
        playground_name("mjx/Go1JoystickFlatTerrain")
    with pytest.raises(ValueError, match=r"step on the device.*parallel off-policy"):
        make_env(ENV)
    with pytest.raises(ValueError, match="mjx/ environments step on the device"):
        make_trainer(RunConfig("sac", ENV, 10))
    with pytest.raises(ValueError, match=r"multiple of the number of devices \(2\), got 3"):
        MJXParallelTrainer(_run("fasttd3", num_envs=3), devices=jax.devices() * 2)


SHARDED = """
import json, sys
import jax, numpy as np
from era_control.mjx_trainer import MJXParallelTrainer
from era_control.training import RunConfig

run = RunConfig.from_dict(json.loads(sys.argv[1]))
out = {"devices": jax.device_count()}
try:
    MJXParallelTrainer(RunConfig.from_dict(dict(json.loads(sys.argv[1]), num_envs=6)))
except ValueError as err:
    out["error"] = str(err)
states, rows = [], []
for devices in (jax.devices(), jax.devices()[:1]):
    trainer, got = MJXParallelTrainer(run, devices=devices), []
    trainer.run(got.append)
    states.append([np.asarray(x) for x in jax.tree.leaves(trainer.state)])
    rows.append(got)
    if len(devices) > 1:
        buffer = trainer.state["buffer"]["obs"]
        out["buffer_shards"] = [list(s.data.shape) for s in buffer.addressable_shards]
        sim = jax.tree.leaves(trainer.state["env"])[0]
        out["env_shards"] = len({s.device for s in sim.addressable_shards})
out["max_state_diff"] = max(
    float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
    for a, b in zip(*states, strict=True)
)
keys = ("eval_return", "episode_return", "critic_loss")
out["rows"] = [[{k: r[k] for k in keys if k in r} for r in got] for got in rows]
print("RESULT" + json.dumps(out))
"""


@pytest.mark.skipif(
    os.environ.get("ERA_TEST_MJX_SHARDING") == "0",
    reason="ERA_TEST_MJX_SHARDING=0: the 4-device run (two more MJX compiles) is switched off",
)
def test_four_cpu_devices_shard_the_envs_and_equal_one_device(tmp_path):
    run = _run("fastsac-era", steps=64, log_interval=32, eval_interval=64, checkpoint_interval=64)
    # four host devices, then the caller's XLA flags (its thread settings); the device count
    # goes first because XLA stops reading at a token that is not a --flag
    flags = f"--xla_force_host_platform_device_count=4 {os.environ.get('XLA_FLAGS', '')}"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    env.pop("JAX_PLATFORMS", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SHARDED), json.dumps(run.to_dict())],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["devices"] == 4
    assert "multiple of the number of devices (4), got 6" in out["error"]
    # the replay buffer (seeds, capacity, num_envs, obs) holds one environment per device
    assert out["buffer_shards"] == [[2, 16, 1, 3]] * 4 and out["env_shards"] == 4
    sharded, single = out["rows"]
    assert len(sharded) == len(single) == 4
    for a, b in zip(sharded, single, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-3), k
    assert out["max_state_diff"] < 1e-3
