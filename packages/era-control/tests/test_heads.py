"""Policy heads: entropy at/above the target for random and extreme inputs, sampling against
naive references, finite gradients, feasibility errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import era_core
from era_control.heads import Actor, PolicyHead, total_target_entropy

jax.config.update("jax_platforms", "cpu")

extreme = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def arrays(d):
    return st.lists(extreme, min_size=d, max_size=d).map(lambda v: jnp.asarray(v, jnp.float32))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8).flatmap(lambda d: st.tuples(arrays(d), st.floats(-3.0, 1.4))))
def test_era_gaussian_entropy_never_below_target(args):
    pre_std, per_dim = args
    d = pre_std.shape[0]
    target = total_target_entropy(per_dim, d)
    for kind in ("truncated", "tanh", "gaussian-era"):
        head = PolicyHead(kind, d, target_entropy=target)
        log_std, _ = head.log_std(pre_std)
        h = float(era_core.gaussian_entropy(log_std))
        assert h >= target - 1e-3 * max(1.0, abs(target))
        assert float(jnp.max(log_std)) <= 0.0 + 1e-6
        if kind == "gaussian-era":  # unbounded: the final policy's entropy is the Gaussian's
            assert float(head.entropy(jnp.zeros(d), log_std)) >= target - 1e-3 * max(1, abs(target))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6).flatmap(lambda d: st.tuples(arrays(d), arrays(d))))
def test_truncated_entropy_is_finite_and_at_most_the_gaussian(args):
    mu, pre_std = args
    d = mu.shape[0]
    head = PolicyHead("truncated", d, target_entropy=-0.5 * d)
    log_std, _ = head.log_std(pre_std)
    h = float(head.entropy(mu, log_std))
    assert math.isfinite(h)
    # truncation only removes entropy: the deficit the compensation delta is there for
    assert h <= float(era_core.gaussian_entropy(log_std)) + 1e-4


def test_batch_level_mean_entropy_is_the_target():
    pre_std = jax.random.normal(jax.random.PRNGKey(0), (256, 6)) * 0.3  # no clamp fires
    head = PolicyHead("truncated", 6, target_entropy=-3.0, batch_level=True)
    log_std, log_z = head.log_std(pre_std)
    per_state = era_core.gaussian_entropy(log_std)
    assert float(jnp.mean(per_state)) == pytest.approx(-3.0, abs=1e-3)
    assert float(jnp.std(per_state)) > 0.05  # states differ; only the mean is constrained
    log_std_eval, _ = head.log_std(pre_std, log_partition=log_z)
    np.testing.assert_allclose(log_std_eval, log_std, rtol=1e-5, atol=1e-5)


def _naive_truncated(rng, loc, std, n):
    out = []
    while len(out) < n:
        x = rng.normal(loc, std, 4 * n)
        out.extend(x[(x >= -1) & (x <= 1)].tolist())
    return np.array(out[:n])


@pytest.mark.parametrize(("mu", "log_std"), [(0.3, -0.5), (2.0, 0.0), (-1.5, -1.5)])
def test_truncated_samples_match_rejection_sampling(mu, log_std):
    head = PolicyHead("truncated", 1, target_entropy=-0.5)
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    mus, ls = jnp.full((n, 1), mu), jnp.full((n, 1), log_std)
    a = np.asarray(jax.vmap(head.sample)(keys, mus, ls)[0]).ravel()
    ref = _naive_truncated(np.random.default_rng(0), math.tanh(mu), math.exp(log_std), n)
    assert a.min() >= -1 and a.max() <= 1
    assert a.mean() == pytest.approx(ref.mean(), abs=0.02)
    assert a.std() == pytest.approx(ref.std(), abs=0.02)
    # and the analytic entropy (era_core) matches a histogram estimate of these samples
    hist, edges = np.histogram(a, bins=200, range=(-1, 1), density=True)
    p = hist * np.diff(edges)
    h_hist = -np.sum(p[p > 0] * np.log(hist[p > 0]))
    assert float(head.entropy(mus[:1], ls[:1])[0]) == pytest.approx(h_hist, abs=0.05)


def test_tanh_log_prob_matches_change_of_variables():
    head = PolicyHead("sac", 2, log_std_min=-5, log_std_max=2)
    mu, log_std = jnp.array([0.4, -1.0]), jnp.array([-0.3, 0.2])
    a, logp = head.sample(jax.random.PRNGKey(3), mu, log_std)
    u = np.arctanh(np.asarray(a, np.float64))
    s = np.exp(np.asarray(log_std, np.float64))
    dens = np.exp(-0.5 * ((u - np.asarray(mu)) / s) ** 2) / (s * np.sqrt(2 * np.pi))
    ref = np.sum(np.log(dens / (1 - np.tanh(u) ** 2)))
    assert float(logp) == pytest.approx(ref, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("kind", ["truncated", "tanh", "sac", "gaussian-era"])
def test_gradients_are_finite_through_samples(kind):
    actor = Actor(6, (32, 32), state_independent_std=False)
    obs = jax.random.normal(jax.random.PRNGKey(0), (64, 10)) * 100  # extreme inputs
    params = actor.init(jax.random.PRNGKey(1), obs)
    head = PolicyHead(kind, 6, target_entropy=-3.0, log_std_max=0.0 if kind != "sac" else 2.0)

    def loss(p):
        mu, pre = actor.apply(p, obs)
        log_std, _ = head.log_std(pre)
        a, _ = head.sample(jax.random.PRNGKey(2), mu * 50, log_std)
        return jnp.sum(a**2) + jnp.sum(head.entropy(mu, log_std, jax.random.PRNGKey(3)))

    grads = jax.jit(jax.grad(loss))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_learned_delta_grows_when_entropy_is_below_target():
    loss = lambda p: era_core.compensation_loss(p, jnp.array([-2.0, -1.5]), -1.0)  # noqa: E731
    assert float(jax.grad(loss)(jnp.log(0.1))) < 0  # descent increases log delta


def test_infeasible_target_names_the_bound():
    with pytest.raises(ValueError, match=r"infeasible for action_dim=6.*1\.4189"):
        total_target_entropy(1.5, 6)
    with pytest.raises(ValueError, match="infeasible"):
        PolicyHead("truncated", 3, target_entropy=5.0)
    assert total_target_entropy(-1.0, 38) == -38.0
