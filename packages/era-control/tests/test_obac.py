"""OBAC and OBAC-ERA: the expectile and value losses, the constraint gate and the behaviour
log-density against NumPy/SciPy references, ERA's entropy at its target, exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from era_control import heads
from era_control.obac import (
    OBAC,
    OBACConfig,
    bounded_log_prob,
    constraint_gate,
    expectile_loss,
)
from era_control.obac_era import OBACERA, OBACERAConfig
from era_control.replay import replay_sample
from era_control.training import OffPolicyTrainer, RunConfig

SMALL = {"hidden": (32, 32), "batch_size": 16, "updates_per_step": 1, "warmup_steps": 0}


def _np_expectile(diff, tau):
    return np.mean(np.where(diff < 0, 1 - tau, tau) * diff**2)


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9, 0.999])
def test_expectile_loss_matches_numpy_and_its_minimiser_is_the_expectile(tau):
    rng = np.random.default_rng(0)
    for diff in (rng.normal(size=257) * 3, np.zeros(4), np.array([1e4, -1e4, 0.0])):
        got = float(expectile_loss(jnp.asarray(diff, jnp.float32), tau))
        np.testing.assert_allclose(got, _np_expectile(diff, tau), rtol=1e-5)
    # its minimiser over v is the tau-expectile of x: tau E[(x-v)+] = (1-tau) E[(v-x)+]
    x = rng.exponential(size=2000)
    lo, hi = x.min(), x.max()
    for _ in range(100):  # bisection on the expectile's defining equation
        v = 0.5 * (lo + hi)
        excess = tau * np.maximum(x - v, 0).mean() - (1 - tau) * np.maximum(v - x, 0).mean()
        lo, hi = (v, hi) if excess > 0 else (lo, v)
    loss = jax.jit(lambda v: expectile_loss(jnp.asarray(x, jnp.float32) - v, tau))
    assert abs(float(jax.grad(loss)(jnp.float32(v)))) < 1e-3
    assert float(loss(v)) <= min(float(loss(v - 0.01)), float(loss(v + 0.01)))
    if tau > 0.5:
        assert v > x.mean()  # an upper expectile: the offline value is optimistic


def test_constraint_gate_matches_numpy_per_state_and_on_batch_means():
    rng = np.random.default_rng(1)
    for _ in range(20):
        off = rng.normal(size=64).astype(np.float32)
        on = (rng.normal(size=64) + rng.normal()).astype(np.float32)
        state = np.asarray(constraint_gate(jnp.asarray(off), jnp.asarray(on), "state"))
        np.testing.assert_array_equal(state, (off > on).astype(np.float32))
        batch = np.asarray(constraint_gate(jnp.asarray(off), jnp.asarray(on), "batch"))
        np.testing.assert_array_equal(batch, np.full(64, float(off.mean() > on.mean())))
    equal = np.ones(3, np.float32)  # ties: the online policy is kept free
    assert not np.any(np.asarray(constraint_gate(equal, equal, "state")))
    assert not np.any(np.asarray(constraint_gate(equal, equal, "batch")))
    grad = jax.grad(lambda o: jnp.sum(constraint_gate(o, jnp.zeros(3), "state") * o))(equal)
    np.testing.assert_array_equal(grad, np.ones(3))  # no gradient through the gate itself
    with pytest.raises(ValueError, match="gate must be one of"):
        constraint_gate(equal, equal, "always")


def test_behaviour_log_prob_is_the_bounded_policys_density():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(50, 3)).astype(np.float32)
    log_std = rng.uniform(-3, 0, size=(50, 3)).astype(np.float32)
    action = rng.uniform(-0.999, 0.999, size=(50, 3)).astype(np.float32)
    head = heads.make_head("truncated", 3, target_entropy=-1.5)
    got = np.asarray(bounded_log_prob(head, jnp.asarray(action), mu, log_std))
    loc, std = np.tanh(mu).astype(np.float64), np.exp(log_std.astype(np.float64))
    ref = stats.truncnorm.logpdf(action, (-1 - loc) / std, (1 - loc) / std, loc, std).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)
    for kind in ("sac", "tanh"):
        head = heads.make_head(kind, 3, **({"target_entropy": -1.5} if kind == "tanh" else {}))
        got = np.asarray(bounded_log_prob(head, jnp.asarray(action), mu, log_std))
        u = np.arctanh(action.astype(np.float64))
        ref = (stats.norm.logpdf(u, mu, np.exp(log_std)) - np.log1p(-(action**2))).sum(-1)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="bounded head"):
        bounded_log_prob(heads.make_head("gaussian", 3), jnp.asarray(action), mu, log_std)


def _filled(agent, steps=12, seeds=2):
    fns = agent.compile()
    state = fns["init"](jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds)))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(seeds, 4)).astype(np.float32)
    state, _ = fns["start"](state, obs, random=True)
    for _ in range(steps):
        nxt = rng.normal(size=(seeds, 4)).astype(np.float32)
        r = rng.normal(size=seeds).astype(np.float32)
        state, act, m = fns["step"](
            state, nxt, r, np.zeros(seeds, bool), nxt, update=True, random=False
        )
    return state, act, m


@pytest.fixture(scope="module")
def era():
    agent = OBACERA(OBACERAConfig(**SMALL), obs_dim=4, action_dim=3, capacity=64)
    return agent, *_filled(agent)


def test_obac_era_has_no_temperature_and_its_gaussian_entropy_is_the_target(era):
    _, state, act, m = era
    assert "log_alpha" not in state["extra"] and "alpha" not in m
    np.testing.assert_allclose(m["gaussian_entropy"], -1.5, atol=1e-4)  # 3 dims x -0.5
    np.testing.assert_allclose(m["target_entropy"], -1.5)
    assert np.all(np.asarray(m["entropy"]) <= -1.5 + 1e-4)  # truncation only lowers it
    assert np.all(np.abs(np.asarray(act)) <= 1)
    for name in ("value_loss", "offline_critic_loss", "bc_loss", "bc_gate", "critic_loss"):
        assert np.all(np.isfinite(np.asarray(m[name]))), name
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert bool(jnp.all(jnp.isfinite(leaf)))


def test_offline_losses_match_numpy_on_the_networks_outputs(era):
    """One offline step: the critic regresses on r + gamma m V(s') (never a policy action),
    the value on the expectile of min Q_mu'(s, a); both losses equal NumPy's."""
    agent, states, _, _ = era
    state = jax.tree.map(lambda x: x[0], states)
    batch = replay_sample(state["buffer"], jax.random.PRNGKey(3), 16)
    _, got = agent._offline_value(state, batch)
    cfg = agent.config
    v_next = np.asarray(agent.value.apply(state["value"], batch["next_obs"]))
    y = np.asarray(batch["reward"]) + cfg.gamma * np.asarray(batch["discount"]) * v_next
    q = np.asarray(agent.critic.apply(state["offline_critic"], batch["obs"], batch["action"]))
    np.testing.assert_allclose(got["offline_critic_loss"], ((q - y) ** 2).sum(0).mean(), rtol=1e-4)
    q_t = agent.critic.apply(state["offline_critic_target"], batch["obs"], batch["action"])
    v = np.asarray(agent.value.apply(state["value"], batch["obs"]))
    ref = _np_expectile(np.asarray(q_t).min(0) - v, cfg.expectile)
    np.testing.assert_allclose(got["value_loss"], ref, rtol=1e-4)


def test_obac_learns_alpha_and_bad_config_is_rejected():
    _, _, m = _filled(OBAC(OBACConfig(**SMALL), obs_dim=4, action_dim=3, capacity=64), steps=4)
    assert np.all(np.asarray(m["alpha"]) != 1.0) and "bc_gate" in m
    for bad, match in (
        ({"expectile": 1.0}, "expectile must be in"),
        ({"bc_weight": -1.0}, "bc_weight must be"),
        ({"gate": "always"}, "gate must be one of"),
        ({"bc_log_prob_min": 3.0}, "bc_log_prob_min"),
    ):
        with pytest.raises(ValueError, match=match):
            OBACERA(OBACERAConfig(**{**SMALL, **bad}), obs_dim=4, action_dim=3, capacity=64)


def test_obac_era_resumed_run_equals_the_uninterrupted_one():
    run = RunConfig(
        algo="obac-era",
        env="dmc/cartpole-swingup",
        steps=60,
        seeds=2,
        action_repeat=8,
        log_interval=20,
        eval_interval=60,
        checkpoint_interval=20,
        agent={**SMALL, "warmup_steps": 10},
    )
    rows, blobs = [], {}
    full = OffPolicyTrainer(run)
    full.run(rows.append, save_checkpoint=lambda step, blob: blobs.__setitem__(step, blob))
    resumed_rows = []
    resumed = OffPolicyTrainer(run)
    resumed.run(resumed_rows.append, resume=blobs[20])
    drop = ("updates_per_s", "env_steps_per_s")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]  # noqa: E731
    assert strip(resumed_rows) == strip(rows[2:])  # two seeds per row step, from step 40 on
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "value" in full.state and "offline_critic_target" in full.state


def test_obac_era_learns_cartpole_swingup_with_entropy_at_target(learn_cartpole):
    """The SAC-ERA learning test's setting (4,500 steps at action repeat 8, 2x128, 2 updates
    per step) with OBAC-ERA: well above a random policy, the Gaussian at the target."""
    rows, random = learn_cartpole("obac-era", checkpoint_interval=4500)
    final = rows[-1]["eval_return"]
    assert final > 2 * random.mean() and final > random.max()
    for r in (r for r in rows if "gaussian_entropy" in r):
        assert r["gaussian_entropy"] == pytest.approx(r["target_entropy"], abs=1e-3)
