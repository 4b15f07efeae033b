"""Environment adapters: dm-control, Gymnasium MuJoCo, HumanoidBench; batching and exact restore."""

import importlib.util

import numpy as np
import pytest

from era_control.envs import VectorEnv, make_env


def test_dmc_flat_observation_and_determinism():
    env = make_env("dmc/cartpole-swingup")
    assert (env.observation_dim, env.action_dim) == (5, 1)
    a = env.reset(3)
    b = env.reset(3)
    c = env.reset(4)
    assert a.dtype == np.float32 and a.shape == (5,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dmc_action_repeat_sums_rewards_of_single_steps():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (20, 1))
    one, two = make_env("dmc/cartpole-swingup"), make_env("dmc/cartpole-swingup", action_repeat=2)
    one.reset(7), two.reset(7)
    for i in range(10):
        o2, r2, *_ = two.step(actions[i])
        r1 = sum(one.step(actions[i])[1] for _ in range(2))
        o1 = one._env.physics.get_state()
        np.testing.assert_allclose(r2, r1, rtol=1e-12)
    np.testing.assert_array_equal(two._env.physics.get_state(), o1)
    assert isinstance(o2, np.ndarray)


def test_dmc_episode_ends_by_time_limit_as_truncation():
    env = make_env("dmc/cartpole-swingup", action_repeat=8)
    env.reset(0)
    steps, done = 0, False
    while not done:
        _, _, terminated, done = env.step(np.zeros(1))
        steps += 1
    assert steps == 125 and not terminated


def test_gym_rescales_actions_to_the_box():
    env = make_env("gym/Humanoid-v5")
    assert env._low.min() == pytest.approx(-0.4)
    env.reset(0)
    obs, reward, _terminated, _truncated = env.step(np.ones(env.action_dim))
    assert obs.shape == (env.observation_dim,) and np.isfinite(reward)
    np.testing.assert_allclose(env._env.unwrapped.data.ctrl, 0.4)


@pytest.mark.parametrize(
    ("env_id", "needle"),
    [
        ("atari/Pong", "unknown prefix"),
        ("cartpole-swingup", "expected '<prefix>/<name>'"),
        ("dmc/cartpole-fly", "no dm-control suite task"),
        ("gym/CartPole-v1", "not a Gymnasium MuJoCo id"),
    ],
)
def test_unknown_ids_list_prefixes_and_examples(env_id, needle):
    with pytest.raises(ValueError, match=needle) as err:
        make_env(env_id)
    msg = str(err.value)
    assert "dmc/, gym/, hb/" in msg and "dmc/cartpole-swingup" in msg


def test_vector_env_auto_resets_and_reports_returns():
    env = VectorEnv("dmc/cartpole-swingup", [0, 1], action_repeat=50)
    obs = env.reset()
    assert obs.shape == (2, 5)
    total = np.zeros(2)
    for t in range(20):
        res = env.step(np.zeros((2, 1)))
        total += res.reward
        if t < 19:
            assert not res.done.any()
    assert res.done.all() and not res.terminated.any()
    np.testing.assert_allclose(res.episode_return, total)
    # the next episode starts from a fresh reset with a new seed
    assert not np.array_equal(res.obs, res.final_obs)
    assert env.episode == [1, 1]


def test_vector_env_rejects_non_finite_actions_naming_the_seed():
    envs = VectorEnv("dmc/cartpole-swingup", [3, 4])
    envs.reset()
    actions = np.zeros((2, envs.action_dim))
    actions[1, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"seed\(s\) \[4\].*diverged"):
        envs.step(actions)


def test_vector_env_state_dict_restores_exactly():
    rng = np.random.default_rng(1)
    a = VectorEnv("dmc/walker-walk", [0, 5], action_repeat=2)
    a.reset()
    for _ in range(37):
        a.step(rng.uniform(-1, 1, (2, a.action_dim)))
    state = a.state_dict()
    b = VectorEnv("dmc/walker-walk", [0, 5], action_repeat=2)
    b.load_state_dict(state)
    for _ in range(5):
        act = rng.uniform(-1, 1, (2, a.action_dim))
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra.obs, rb.obs)
        np.testing.assert_array_equal(ra.reward, rb.reward)


HB = importlib.util.find_spec("humanoid_bench") is not None


@pytest.mark.skipif(
    not HB, reason="HumanoidBench is not installed (its wheel is not in ../shared/wheels)"
)
def test_humanoidbench_adapter_repeat_two_and_no_termination():
    env = make_env("hb/h1-walk-v0")
    assert env.action_repeat == 2 and env.terminate is False
    assert (env.observation_dim, env.action_dim) == (51, 19)
    env.reset(0)
    for _ in range(30):  # random flailing makes H1 fall; the episode must not end
        _, reward, terminated, _truncated = env.step(np.random.default_rng(0).uniform(-1, 1, 19))
        assert not terminated and np.isfinite(reward)
    with pytest.raises(ValueError, match="no HumanoidBench task"):
        make_env("hb/h1-fly-v0")


@pytest.mark.skipif(HB, reason="HumanoidBench is installed: the missing-package error cannot show")
def test_humanoidbench_missing_says_how_to_install():
    with pytest.raises(ImportError, match="uv pip install"):
        make_env("hb/h1hand-walk-v0")
