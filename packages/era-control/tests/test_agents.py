"""SAC and SAC-ERA: replay buffer, update structure, seed vmapping, and learning that works."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from era_control.replay import replay_add, replay_init, replay_sample
from era_control.sac import SAC, SACConfig
from era_control.sac_era import SACERA, SACERAConfig
from era_control.training import warmup_steps

SMALL = {"hidden": (32, 32), "batch_size": 16, "updates_per_step": 2, "warmup_steps": 0}


def test_replay_ring_buffer_matches_a_naive_list():
    buf = replay_init(5, 2, 1)
    ref = []
    for i in range(8):
        buf = replay_add(buf, [i, i], [i / 10], float(i), [i + 1, i + 1], 1.0)
        ref.append(i)
        ref = ref[-5:]
    assert int(buf["size"]) == 5 and int(buf["ptr"]) == 3
    assert sorted(np.asarray(buf["reward"]).astype(int).tolist()) == sorted(ref)
    batch = replay_sample(buf, jax.random.PRNGKey(0), 64)
    assert set(np.asarray(batch["reward"]).astype(int).tolist()) <= set(ref)
    np.testing.assert_array_equal(batch["next_obs"], batch["obs"] + 1)


def _agent(cls, cfg_cls, **kw):
    cfg = cfg_cls(**{**SMALL, **kw})
    return cls(cfg, obs_dim=4, action_dim=3, capacity=64)


def _filled(agent, n_seeds=2):
    fns = agent.compile()
    state = fns["init"](jax.vmap(jax.random.PRNGKey)(jnp.arange(n_seeds)))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2, 4)).astype(np.float32)[:n_seeds]  # seed i sees the same data
    state, _ = fns["start"](state, obs, random=True)
    for _ in range(20):
        nxt = rng.normal(size=(2, 4)).astype(np.float32)[:n_seeds]
        r = rng.normal(size=2).astype(np.float32)[:n_seeds]
        done = np.zeros(n_seeds, bool)
        state, act, m = fns["step"](state, nxt, r, done, nxt, update=True, random=False)
    return fns, state, act, m


@pytest.fixture(scope="module")
def era_agent():
    return _agent(SACERA, SACERAConfig)


@pytest.fixture(scope="module")
def era_two_seeds(era_agent):
    return _filled(era_agent)


def test_sac_era_has_no_temperature_and_keeps_the_gaussian_entropy_at_target(era_two_seeds):
    _, state, act, m = era_two_seeds
    assert "log_alpha" not in state["extra"] and "alpha" not in m
    np.testing.assert_allclose(m["gaussian_entropy"], -1.5, atol=1e-4)  # 3 dims x -0.5
    assert np.all(np.asarray(m["entropy"]) <= -1.5 + 1e-4)
    assert np.all(np.abs(np.asarray(act)) <= 1)
    for leaf in jax.tree.leaves(state):
        assert (
            bool(jnp.all(jnp.isfinite(leaf))) if jnp.issubdtype(leaf.dtype, jnp.floating) else True
        )


def test_sac_learns_alpha_and_sac_era_learned_delta_moves():
    _, state, _, m = _filled(_agent(SAC, SACConfig))
    assert "log_alpha" in state["extra"] and np.all(np.asarray(m["alpha"]) != 1.0)
    _, state, _, m = _filled(_agent(SACERA, SACERAConfig, compensation="learned", delta=0.1))
    # the truncated policy's entropy is below H0, so the learned delta grows
    assert np.all(np.asarray(m["delta"]) > 0.1)


def test_vmapped_seeds_equal_separate_runs(era_agent, era_two_seeds):
    _, both, _, _ = era_two_seeds
    _, one, _, _ = _filled(era_agent, n_seeds=1)
    for a, b in zip(jax.tree.leaves(both["actor"]), jax.tree.leaves(one["actor"]), strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=2e-4, atol=2e-5)


def test_warmup_never_exceeds_a_tenth_of_the_run():
    assert warmup_steps(5000, 3000) == 300
    assert warmup_steps(5000, 1_000_000) == 5000


def test_config_defaults_are_the_papers():
    cfg = SACERAConfig()
    assert cfg.hidden == (512, 512) and cfg.updates_per_step == 2 and cfg.batch_size == 256
    assert cfg.head == "truncated" and cfg.delta == 0.0 and cfg.log_std_min == -8.0
    assert dataclasses.fields(SACConfig)  # both are dataclasses
    assert SACConfig().init_temperature == 1.0 and SACConfig().tau == 0.005


def test_sac_era_learns_cartpole_swingup_with_entropy_at_target(learn_cartpole):
    rows, random = learn_cartpole("sac-era")
    final = rows[-1]["eval_return"]
    assert final > 2 * random.mean() and final > random.max()
    logged = [r for r in rows if "entropy" in r]
    assert len(logged) >= 9
    for r in logged:
        # ERA fixes the Gaussian's entropy at H0; truncation to [-1, 1] only lowers it
        assert r["gaussian_entropy"] == pytest.approx(r["target_entropy"], abs=1e-3)
        assert r["target_entropy"] - 1.5 < r["entropy"] <= r["target_entropy"] + 1e-4
