"""TD-MPC2's building blocks: two-hot round trip, SimNorm, the world model's shapes and ERA
policy prior, MPPI on toy problems with a known optimum."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_core
from era_control import heads
from era_control.tdmpc2 import (
    TDMPC2Config,
    WorldModel,
    latent_value,
    mppi,
    simnorm,
    soft_ce,
    symexp,
    symlog,
    two_hot,
    two_hot_inv,
    warm_start,
)

BINS, VMIN, VMAX = 101, -10.0, 10.0
TINY = TDMPC2Config(enc_dim=16, mlp_dim=32, latent_dim=16, simnorm_dim=8, num_q=3)


def test_symlog_symexp_are_inverse_and_two_hot_round_trips():
    x = np.concatenate([np.linspace(-2e4, 2e4, 1001), [0.0, 1e-6, -1e-6, 0.5, -3.0]])
    x = x.astype(np.float32)
    np.testing.assert_allclose(symexp(symlog(jnp.asarray(x))), x, rtol=1e-5, atol=1e-5)
    enc = np.asarray(two_hot(jnp.asarray(x), BINS, VMIN, VMAX))
    assert enc.shape == (x.size, BINS)
    np.testing.assert_allclose(enc.sum(-1), 1.0, atol=1e-6)
    assert np.all(enc >= 0) and np.all((enc > 0).sum(-1) <= 2)
    centres = np.linspace(VMIN, VMAX, BINS)
    np.testing.assert_allclose(enc @ centres, np.sign(x) * np.log1p(np.abs(x)), atol=1e-4)
    # decoding the encoding's log-probabilities gives x back (inside the symlog range)
    back = np.asarray(two_hot_inv(jnp.log(jnp.asarray(enc) + 1e-30), VMIN, VMAX))
    np.testing.assert_allclose(back, x, rtol=2e-4, atol=1e-4)
    # outside the range it saturates at symexp(vmax)
    out = np.asarray(two_hot(jnp.asarray([1e9, -1e9]), BINS, VMIN, VMAX))
    assert out[0, -1] == 1.0 and out[1, 0] == 1.0
    with pytest.raises(ValueError, match="num_bins"):
        two_hot(jnp.zeros(2), 1, VMIN, VMAX)


def test_soft_ce_is_minimal_at_the_encoding():
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.normal(size=8) * 30, jnp.float32)
    enc = two_hot(target, BINS, VMIN, VMAX)
    best = soft_ce(jnp.log(enc + 1e-30), target, VMIN, VMAX)
    entropy = -jnp.sum(jnp.where(enc > 0, enc * jnp.log(enc), 0.0), -1)
    np.testing.assert_allclose(best, entropy, atol=1e-5)  # CE(p, p) = H(p)
    other = soft_ce(jnp.asarray(rng.normal(size=(8, BINS)), jnp.float32), target, VMIN, VMAX)
    assert np.all(np.asarray(other) > np.asarray(best))


def test_simnorm_groups_are_distributions():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 64)) * 50
    y = np.asarray(simnorm(x, 8)).reshape(5, 8, 8)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert np.all(y >= 0)
    with pytest.raises(ValueError, match="simnorm_dim"):
        simnorm(x, 7)


def _model(action_dim=2):
    model = WorldModel(TINY, action_dim)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)), jnp.zeros((1, action_dim)))
    return model, params


def test_world_model_latents_are_simplices_and_heads_start_at_zero():
    model, params = _model()
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    act = jnp.zeros((4, 2))
    z = model.apply(params, obs, method="encode")
    nxt = model.apply(params, z, act, method="next")
    for latent in (z, nxt):
        np.testing.assert_allclose(np.asarray(latent).reshape(4, 2, 8).sum(-1), 1.0, atol=1e-5)
    q = model.apply(params, z, act, method="qs")
    assert q.shape == (3, 4, BINS)
    # zero-initialised outputs: every Q and reward starts at exactly 0
    np.testing.assert_allclose(two_hot_inv(q, VMIN, VMAX), 0.0, atol=1e-5)
    reward = model.apply(params, z, act, method="reward")
    np.testing.assert_allclose(two_hot_inv(reward, VMIN, VMAX), 0.0, atol=1e-5)
    # the ensemble members differ (separately initialised hidden layers)
    first = params["params"]["_qs"]["Dense_0"]["kernel"]
    assert first.shape[0] == 3 and not np.allclose(first[0], first[1])


def test_era_policy_prior_gaussian_entropy_is_the_target():
    model, params = _model(action_dim=2)
    z = model.apply(params, jax.random.normal(jax.random.PRNGKey(2), (16, 5)), method="encode")
    mu, pre_std = model.apply(params, z, method="pi")
    head = heads.make_head("tanh", 2, target_entropy=-1.0, log_std_min=-10.0, log_std_max=2.0)
    log_std, _ = head.log_std(pre_std * 30)  # extreme raw outputs too
    np.testing.assert_allclose(era_core.gaussian_entropy(log_std), -1.0, atol=1e-4)
    action, log_prob = head.sample(jax.random.PRNGKey(3), mu, log_std)
    assert np.all(np.abs(np.asarray(action)) <= 1) and np.all(np.isfinite(log_prob))


def test_mppi_finds_the_optimum_of_a_quadratic_sequence_cost():
    cfg = dataclasses.replace(TINY, iterations=8, num_pi_trajs=0)
    target = jnp.asarray([[0.5, -0.3], [-0.7, 0.2], [0.1, 0.9]])

    def value(actions):  # (H, N, A) -> (N,)
        return -jnp.sum((actions - target[:, None]) ** 2, (0, 2))

    plan = jax.jit(lambda k, m: mppi(k, value, m, cfg, explore=False))
    action, mean, std = plan(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
    np.testing.assert_allclose(mean, target, atol=0.05)
    np.testing.assert_allclose(action, target[0], atol=0.15)
    assert np.all(np.asarray(std) >= cfg.min_std - 1e-6)


def test_mppi_plans_through_linear_dynamics_and_keeps_the_best_prior_sequence():
    # x' = x + a, reward -x'^2 from x0 = 0.8: the optimum is a = (-0.8, 0, 0)
    cfg = dataclasses.replace(TINY, iterations=6, num_pi_trajs=4, temperature=50.0)

    def value(actions):
        x = 0.8 + jnp.cumsum(actions[..., 0], 0)
        return -jnp.sum(x**2, 0)

    optimum = jnp.asarray([-0.8, 0.0, 0.0])[:, None, None]
    prior = jnp.concatenate([optimum, jnp.ones((3, 3, 1))], 1)  # one perfect prior sequence
    action, mean, _ = mppi(jax.random.PRNGKey(1), value, jnp.zeros((3, 1)), cfg, prior, False)
    np.testing.assert_allclose(mean[:, 0], optimum[:, 0, 0], atol=0.02)
    np.testing.assert_allclose(action, [-0.8], atol=0.05)
    # without the prior MPPI still moves to the optimum's first action
    action, _, _ = mppi(jax.random.PRNGKey(1), value, jnp.zeros((3, 1)), cfg, None, False)
    np.testing.assert_allclose(action, [-0.8], atol=0.15)


def test_warm_start_shifts_the_previous_mean():
    prev = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(warm_start(prev, False), [[2, 3], [4, 5], [0, 0]])
    np.testing.assert_array_equal(warm_start(prev, True), np.zeros((3, 2)))


def test_latent_value_plans_with_the_world_model():
    model, params = _model(action_dim=2)
    head = heads.make_head("sac", 2, log_std_min=-10.0, log_std_max=2.0)
    z = model.apply(params, jnp.zeros((1, 5)), method="encode")
    cfg = dataclasses.replace(TINY, num_samples=32, num_elites=4, num_pi_trajs=0, iterations=2)

    def value(actions):
        zs = jnp.broadcast_to(z, (actions.shape[1], z.shape[-1]))
        return latent_value(model, params, head, zs, actions, 0.99, jax.random.PRNGKey(0))

    action, mean, std = jax.jit(lambda k: mppi(k, value, jnp.zeros((3, 2)), cfg))(
        jax.random.PRNGKey(4)
    )
    assert action.shape == (2,) and mean.shape == (3, 2) and std.shape == (3, 2)
    assert np.all(np.isfinite(np.asarray(action))) and np.all(np.abs(np.asarray(action)) <= 1)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("horizon", 0, "horizon must be >= 1"),
        ("num_q", 1, "num_q must be >= 2"),
        ("num_elites", 10_000, "num_elites must be in"),
        ("num_pi_trajs", 512, "num_pi_trajs must be in"),
        ("latent_dim", 20, "multiple of simnorm_dim"),
    ],
)
def test_config_rejects_bad_planning_and_model_sizes(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TDMPC2Config(), **{field: value}).validate(action_dim=2)


def test_config_defaults_are_the_official_5m_model_and_discount_heuristic():
    cfg = TDMPC2Config()
    cfg.validate(action_dim=6)
    assert (cfg.latent_dim, cfg.mlp_dim, cfg.enc_dim, cfg.num_q, cfg.simnorm_dim) == (
        512,
        512,
        256,
        5,
        8,
    )
    assert (cfg.iterations, cfg.num_samples, cfg.num_elites, cfg.horizon) == (6, 512, 64, 3)
    # DMC: 1000 env steps at action repeat 2 = 500 agent steps -> 0.99
    assert cfg.discount(500) == pytest.approx(0.99)
    assert cfg.discount(10) == 0.95 and cfg.discount(10_000) == 0.995
