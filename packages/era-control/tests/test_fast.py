"""FastTD3, FastSAC, FastSAC-ERA and the parallel environments: the categorical projection
against a NumPy reference, worker-process environments against in-process ones, the ERA
entropy in a real run, exact resume with two environments per seed and on HumanoidBench in
worker processes, and bad input."""

import importlib.util
import os
import pickle
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_core
from era_control.distributional import categorical_projection, support
from era_control.envs import VectorEnv, make_env
from era_control.training import RunConfig, make_trainer

# one tiny config for every run below, so each algorithm compiles once in this module
TINY = {
    "actor_hidden": [32, 16],
    "critic_hidden": [32, 16],
    "batch_size": 32,
    "num_atoms": 11,
    "v_min": -20.0,
    "v_max": 20.0,
    "learning_starts": 0,
    "updates_per_step": 1,
}
ENV = "dmc/cartpole-swingup"
TIMING = {"updates_per_s", "env_steps_per_s"}


def _projection_reference(probs, reward, discount, atoms):
    """Bellemare et al. 2017, Alg. 1, one transition and atom at a time."""
    k, v_min, v_max = len(atoms), atoms[0], atoms[-1]
    dz = (v_max - v_min) / (k - 1)
    out = np.zeros_like(probs)
    for i in range(probs.shape[0]):
        for j in range(k):
            tz = min(max(reward[i] + discount[i] * atoms[j], v_min), v_max)
            b = (tz - v_min) / dz
            lo, hi = int(np.floor(b)), int(np.ceil(b))
            if lo == hi:
                out[i, lo] += probs[i, j]
            else:
                out[i, lo] += probs[i, j] * (hi - b)
                out[i, hi] += probs[i, j] * (b - lo)
    return out


def test_categorical_projection_matches_numpy_reference():
    rng = np.random.default_rng(0)
    atoms = np.asarray(support(-10.0, 10.0, 21), np.float64)
    probs = rng.dirichlet(np.ones(21), size=64)
    # ordinary, on-atom (reward 1.0 with discount 1 and spacing 1), clipped and terminal cases
    reward = np.concatenate([rng.normal(0, 3, 56), [1.0, -50.0, 50.0, 0.0, 10.0, -10.0, 3.0, 0.5]])
    discount = np.concatenate([rng.uniform(0, 1, 56), [1.0, 0.9, 0.9, 0.0, 0.0, 1.0, 0.0, 0.99]])
    got = categorical_projection(
        jnp.asarray(probs, jnp.float32),
        jnp.asarray(reward, jnp.float32),
        jnp.asarray(discount, jnp.float32),
        jnp.asarray(atoms, jnp.float32),
    )
    want = _projection_reference(probs, reward, discount, atoms)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    np.testing.assert_allclose(np.asarray(got).sum(1), 1.0, atol=1e-5)
    # no clipping: the mean moves exactly to r + d E[z]
    inside = np.abs(reward[:56]) + discount[:56] * 10 < 10
    mean = (np.asarray(got) * atoms).sum(1)
    np.testing.assert_allclose(
        mean[:56][inside], (reward + discount * (probs * atoms).sum(1))[:56][inside], atol=1e-4
    )


def test_worker_envs_equal_in_process_envs_and_restore_exactly():
    seeds = [3, 4]
    local = VectorEnv(ENV, seeds, num_envs=2, action_repeat=50)
    remote = VectorEnv(ENV, seeds, num_envs=2, action_repeat=50, workers=2)
    try:
        np.testing.assert_array_equal(local.reset(), remote.reset())
        rng = np.random.default_rng(1)
        for _ in range(23):  # 20 agent steps per episode: auto-reset crossed once
            a = rng.uniform(-1, 1, (4, 1))
            x, y = local.step(a), remote.step(a)
            for field in ("obs", "final_obs", "reward", "done", "episode_return"):
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
        assert sum(x.done) == 0 and local.episode == [1, 1, 1, 1]
        saved = pickle.loads(pickle.dumps(remote.state_dict()))
        # copies of one seed see different episodes; copy 0 the single-environment ones
        first = local.reset()
        assert not np.array_equal(first[0], first[1])
        np.testing.assert_array_equal(first[0], VectorEnv(ENV, [3]).reset()[0])
        after = [remote.step(a) for _ in range(2)]
        restored = remote.load_state_dict(saved)
        again = [remote.step(a) for _ in range(2)]
        assert restored.shape == (4, 5)
        for x, y in zip(after, again, strict=True):
            np.testing.assert_array_equal(x.obs, y.obs)
    finally:
        remote.close()


def _run(algo, steps=48, env=ENV, **kw):
    base = {"log_interval": 16, "eval_interval": 48, "checkpoint_interval": 16}
    base |= {"eval_episodes": 1, "action_repeat": 50, "agent": dict(TINY)}
    return RunConfig(algo, env, steps, seeds=2, num_envs=2, **(base | kw))


def _train(run, resume=None, stop_at=None):
    rows, blobs = [], {}
    trainer = make_trainer(run)
    trainer.run(rows.append, save_checkpoint=blobs.__setitem__, resume=resume, stop_at=stop_at)
    return trainer, [{k: v for k, v in r.items() if k not in TIMING} for r in rows], blobs


_FULL: dict[str, tuple] = {}


def _full(algo):
    """The uninterrupted run of ``algo`` (trained once per module)."""
    if algo not in _FULL:
        _FULL[algo] = _train(_run(algo))
    return _FULL[algo]


@pytest.mark.parametrize("algo", ["fasttd3", "fastsac", "fastsac-era"])
def test_resume_with_two_envs_per_seed_is_exact(algo):
    run = _run(algo)
    full, rows, _ = _full(algo)
    _, first, blobs = _train(run, stop_at=24)  # "killed" at 24: last checkpoint at 16
    part, rest, _ = _train(run, resume=blobs[16])
    assert [r for r in first if r["step"] <= 16] + rest == rows
    assert {r["step"] for r in rows} == {16, 32, 48} and {r["seed"] for r in rows} == {0, 1}
    assert "critic_loss" in rows[-1] and "eval_return" in rows[-1]
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(part.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


HB = "hb/h1-walk-v0"


@pytest.mark.skipif(
    importlib.util.find_spec("humanoid_bench") is None,
    reason="HumanoidBench is not installed (its wheel is not in ../shared/wheels)",
)
@pytest.mark.parametrize("algo", ["fasttd3", "fastsac", "fastsac-era"])
def test_resume_on_humanoidbench_in_worker_processes_is_exact(algo):
    """The standard HumanoidBench task (no action repeat, with termination) in worker
    processes: killed after its first checkpoint and resumed, a run equals the uninterrupted
    one row for row and in its final state (environments restored from the checkpoint)."""
    run = _run(algo, 32, HB, action_repeat=None, log_interval=8, eval_interval=32)
    full, rows, _ = _train(run)
    assert type(full.envs.pool).__name__ == "_WorkerEnvs"  # the environments ran in workers
    standard = make_env(HB, None, standard=True)
    assert (standard.action_repeat, standard.terminate) == (1, True)
    _, first, blobs = _train(run, stop_at=20)  # "killed" at 20: last checkpoint at 16
    part, rest, _ = _train(run, resume=blobs[16])
    assert [r for r in first if r["step"] <= 16] + rest == rows
    assert {r["step"] for r in rows} == {8, 16, 24, 32} and "eval_return" in rows[-1]
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(part.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fastsac_era_gaussian_entropy_is_the_target_in_every_state():
    trainer, rows, _ = _full("fastsac-era")
    agent, state = trainer.agent, trainer.state
    h0 = agent.target_entropy
    assert h0 == pytest.approx(-0.5) and rows[-1]["target_entropy"] == pytest.approx(h0)
    assert "alpha" not in rows[-1]  # no temperature anywhere
    buffer = jax.tree.map(lambda x: x[0], state["buffer"])  # seed 0's stored observations
    obs = agent.normalize(jax.tree.map(lambda x: x[0], state["norm"]), buffer["obs"].reshape(-1, 5))
    actor = jax.tree.map(lambda x: x[0], state["actor"])
    _, log_std = agent.policy(actor, obs)
    entropy = np.asarray(era_core.gaussian_entropy(log_std))
    assert entropy.shape == (obs.shape[0],) and np.ptp(np.asarray(log_std)) >= 0
    np.testing.assert_allclose(entropy, h0, atol=1e-3)


def test_num_envs_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match=r"num_envs \(--num-envs\) must be >= 1, got 0"):
        RunConfig("fasttd3", ENV, 10, num_envs=0).validate()
    with pytest.raises(ValueError, match=r"fasttd3 needs parallel environments.*got 1"):
        RunConfig("fasttd3", ENV, 10).validate()
    with pytest.raises(ValueError, match=r"sac steps one environment per seed.*got 4"):
        RunConfig("sac", ENV, 10, num_envs=4).validate()
    assert "num_envs" not in RunConfig("sac", ENV, 10).to_dict()  # one-env configs unchanged
    assert RunConfig("fasttd3", ENV, 10, num_envs=2).to_dict()["num_envs"] == 2


def test_fastsac_era_learns_cartpole_swingup_in_worker_processes(learn_fast_cartpole):
    """FastSAC-ERA at the `cpu-fast` preset's network sizes, 4 environments per seed in worker
    processes, action repeat 8: 10,000 transitions (2,500 parallel steps, 2 updates each) lift
    the eval return well above a random policy's. A calibration run of the same setting
    (era-control-train, one thread) evaluated 151, 433, 667 and 687 at 4k, 8k, 12k, 16k."""
    learn_fast_cartpole(ENV)
