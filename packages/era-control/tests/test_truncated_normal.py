"""The reparameterised truncated normal of the ERA head: right distribution, right gradients,
finite gradients everywhere (including the uniform draw landing exactly on a bound)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from era_control.heads import standard_truncated_normal, truncated_normal_sample

jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize(
    ("loc", "scale"),
    [(0.0, 1.0), (0.7, 0.3), (-0.95, 0.05), (1.0, 0.5), (0.999, 3e-4), (-1.0, 1.0)],
)
def test_samples_follow_scipys_truncnorm(loc, scale):
    n = 40_000
    a = np.asarray(truncated_normal_sample(jax.random.PRNGKey(0), jnp.full(n, loc), scale))
    assert a.min() >= -1 and a.max() <= 1
    ref = stats.truncnorm((-1 - loc) / scale, (1 - loc) / scale, loc=loc, scale=scale)
    assert stats.kstest(a, ref.cdf).pvalue > 1e-3
    assert a.mean() == pytest.approx(ref.mean(), abs=4 * ref.std() / np.sqrt(n) + 1e-6)


def test_quantile_equals_scipy_at_fixed_draws():
    u = jnp.array([0.0, 1e-6, 0.1, 0.5, 0.9, 1 - 1e-6, 1.0])
    for alpha, beta in [(-2.0, 0.5), (-0.3, 6.0), (-40.0, 0.0), (0.0, 40.0), (-9.0, 9.0)]:
        z = np.asarray(standard_truncated_normal(jnp.float32(alpha), jnp.float32(beta), u))
        ref = stats.truncnorm.ppf(np.asarray(u, np.float64), alpha, beta)
        np.testing.assert_allclose(z, ref, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize(("alpha", "beta"), [(-1.5, 0.8), (-0.2, 2.5), (-3.0, 3.0)])
@pytest.mark.parametrize("u", [0.05, 0.4, 0.93])
def test_implicit_gradients_equal_finite_differences(alpha, beta, u):
    """The custom derivatives equal those of scipy's float64 quantile function."""
    g_alpha, g_beta = jax.grad(standard_truncated_normal, argnums=(0, 1))(
        jnp.float32(alpha), jnp.float32(beta), jnp.float32(u)
    )
    h = 1e-5
    fd_alpha = (
        stats.truncnorm.ppf(u, alpha + h, beta) - stats.truncnorm.ppf(u, alpha - h, beta)
    ) / (2 * h)
    fd_beta = (
        stats.truncnorm.ppf(u, alpha, beta + h) - stats.truncnorm.ppf(u, alpha, beta - h)
    ) / (2 * h)
    assert float(g_alpha) == pytest.approx(fd_alpha, abs=2e-4)
    assert float(g_beta) == pytest.approx(fd_beta, abs=2e-4)
    assert 0 <= float(g_alpha) <= 1 and 0 <= float(g_beta) <= 1


@settings(max_examples=300, deadline=None)
@given(
    loc=st.floats(-1.0, 1.0),
    log_scale=st.floats(-12.0, 2.0),
    u=st.one_of(st.sampled_from([0.0, 1.0, 1e-30, 1 - 2**-24]), st.floats(0.0, 1.0)),
)
def test_gradients_finite_for_any_draw(loc, log_scale, u):
    """Including the draws on a bound (u = 0 or 1), where differentiating through ``erf_inv``
    (``jax.random.truncated_normal``) gives NaN."""

    def action(loc, log_scale):
        scale = jnp.exp(log_scale)
        z = standard_truncated_normal((-1.0 - loc) / scale, (1.0 - loc) / scale, jnp.float32(u))
        return jnp.clip(loc + scale * z, -1.0, 1.0)

    a, grads = jax.value_and_grad(action, argnums=(0, 1))(jnp.float32(loc), jnp.float32(log_scale))
    assert -1.0 <= float(a) <= 1.0
    assert all(bool(jnp.isfinite(g)) for g in grads)


def test_erf_inv_path_is_nan_on_a_bound():
    """Why the custom derivative exists: the inverse-CDF through ``erf_inv`` (what
    ``jax.random.truncated_normal`` differentiates) has a NaN gradient when the draw sits on a
    bound of a saturated interval, while ours stays finite."""

    def via_erf_inv(alpha, beta, u):
        a, b = jax.lax.erf(alpha / jnp.sqrt(2.0)), jax.lax.erf(beta / jnp.sqrt(2.0))
        z = jnp.sqrt(2.0) * jax.lax.erf_inv(a + u * (b - a))
        return jnp.clip(z, alpha, beta)

    args = (jnp.float32(-5000.0), jnp.float32(3000.0), jnp.float32(0.0))
    assert not bool(jnp.isfinite(jax.grad(via_erf_inv)(*args)))
    assert bool(jnp.isfinite(jax.grad(standard_truncated_normal)(*args)))
