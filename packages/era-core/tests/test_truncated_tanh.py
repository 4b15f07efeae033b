"""Entropies of bounded Gaussian policies (docs/paper.md §1): truncated_gaussian_entropy,
tanh_log_det_jacobian, tanh_gaussian_entropy, tanh_gaussian_entropy_from_noise.

References: mpmath at 60 digits for the truncated normal (cross-checked against
scipy.stats.truncnorm where SciPy is accurate), mpmath / naive float64 for the tanh Jacobian,
and SciPy quadrature of -p log p of tanh(U) in y-space for the tanh-Gaussian entropy.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate, stats

import era_core as ec

C_GAUSS = 0.5 * math.log(2.0 * math.pi * math.e)

# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------


def ref_truncnorm_entropy(mean: float, sigma: float, low: float = -1.0, high: float = 1.0) -> float:
    """Entropy of N(mean, sigma^2) truncated to [low, high], in 60-digit mpmath.

    Z is taken from the lower tail when the interval lies right of the mean's reflection
    (alpha > 0), so no 1 - 1 cancellation occurs even for alpha ~ 3e6; mpmath's unbounded
    exponent range handles phi(3e6) ~ exp(-4.5e12).
    """
    with mp.workdps(60):
        mu, s, a, b = (mp.mpf(float(v)) for v in (mean, sigma, low, high))
        alpha, beta = (a - mu) / s, (b - mu) / s
        if alpha > 0:
            z = mp.ncdf(-alpha) - mp.ncdf(-beta)
        else:
            z = mp.ncdf(beta) - mp.ncdf(alpha)
        h = mp.log(mp.sqrt(2 * mp.pi * mp.e) * s * z)
        h += (alpha * mp.npdf(alpha) - beta * mp.npdf(beta)) / (2 * z)
        return float(h)


def ref_truncnorm_entropy_arrays(mean, log_std, low=-1.0, high=1.0) -> np.ndarray:
    """Per-element reference summed over the last axis."""
    mean, log_std = np.broadcast_arrays(
        np.asarray(mean, np.float64), np.asarray(log_std, np.float64)
    )
    per = np.vectorize(lambda m, ls: ref_truncnorm_entropy(m, math.exp(ls), low, high))(
        mean, log_std
    )
    return per.sum(-1)


def ref_log1m_tanh2(u) -> np.ndarray:
    """log(1 - tanh(u)^2) = -2 log cosh(u), elementwise, mpmath at 40 digits."""
    with mp.workdps(40):
        return np.vectorize(lambda x: float(-2 * mp.log(mp.cosh(mp.mpf(float(x))))))(u)


def ref_tanh_gaussian_entropy_1d(mean: float, sigma: float) -> float:
    """-int p_Y log p_Y over y in (-1, 1) for Y = tanh(U), U ~ N(mean, sigma^2) (quadrature).

    Never uses the Jacobian formula: p_Y(y) = N(atanh y; mean, sigma) / (1 - y^2) directly.
    """

    def integrand(y):
        p = stats.norm.pdf(np.arctanh(y), mean, sigma) / (1.0 - y * y)
        return -p * np.log(p) if p > 0 else 0.0

    val, err = integrate.quad(
        integrand, -1.0, 1.0, points=[math.tanh(mean)], limit=500, epsabs=1e-12
    )
    assert err < 1e-6
    return val


# ----------------------------------------------------------------------------------------------
# Truncated Gaussian entropy
# ----------------------------------------------------------------------------------------------

MEANS = [-1e3, -30.0, -3.0, -1.2, -1.0, -0.5, 0.0, 0.25, 0.99, 1.0, 1.5, 5.0, 1e3]
LOG_STDS = [-8.0, -5.0, -2.0, -0.5, 0.0, 1.0, 2.0]
GRID_MEAN, GRID_LOG_STD = (g.reshape(-1, 1) for g in np.meshgrid(MEANS, LOG_STDS, indexing="ij"))

# float64: the spec's rtol 1e-6; atol covers entropies that cross zero.
# float32: eps = 1.2e-7. The entropy is a sum of a few terms of size <= |H| <= 22 (log sigma,
# log Z, alpha phi / Z), each carrying a few ulps from float32 erfc/exp/log, and in the far
# tails terms of size ~|H| partly cancel. rtol 1e-5 (~84 eps) + atol 1e-4 (~840 eps at O(1))
# allows that while still catching a precision collapse (errors >= 1e-2, infs, NaNs).
TOLERANCES = {"float64": dict(rtol=1e-6, atol=1e-9), "float32": dict(rtol=1e-5, atol=1e-4)}


def test_reference_agrees_with_scipy_where_scipy_is_accurate():
    """Sanity of the mpmath reference on moderate cases (SciPy's closed form is fine there)."""
    for mean in (-1.0, -0.5, 0.0, 0.99, 1.5):
        for log_std in (-2.0, -0.5, 0.0, 1.0, 2.0):
            s = math.exp(log_std)
            scipy_h = stats.truncnorm((-1 - mean) / s, (1 - mean) / s, loc=mean, scale=s).entropy()
            assert ref_truncnorm_entropy(mean, s) == pytest.approx(scipy_h, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_truncated_entropy_grid_matches_mpmath(backend, like, dtype):
    """sigma in [e^-8, e^2] x mean in [-1e3, 1e3] (far outside [-1, 1]): finite and accurate."""
    mean = backend.asarray(GRID_MEAN, dtype)
    log_std = backend.asarray(GRID_LOG_STD, dtype)
    out = ec.truncated_gaussian_entropy(mean, log_std)
    like(out, mean, shape=(GRID_MEAN.shape[0],))
    got = backend.to_numpy(out)
    assert np.all(np.isfinite(got)), GRID_MEAN[~np.isfinite(got)]
    # reference from the inputs as rounded to `dtype`: only the computation's error is measured
    expected = ref_truncnorm_entropy_arrays(backend.to_numpy(mean), backend.to_numpy(log_std))
    np.testing.assert_allclose(got, expected, **TOLERANCES[dtype])


@pytest.mark.parametrize(
    ("mean", "log_std"),
    [
        pytest.param(-1e3, -8.0, id="far-left-narrowest"),
        pytest.param(1e3, -8.0, id="far-right-narrowest"),
        pytest.param(1e3, 2.0, id="far-right-widest"),
        pytest.param(0.0, -8.0, id="centre-narrowest"),
        pytest.param(0.0, 2.0, id="centre-widest"),
        pytest.param(1.0, -8.0, id="on-edge-narrowest"),
    ],
)
def test_truncated_entropy_named_extremes(backend, mean, log_std):
    """The corners of the accuracy box, float64, each as its own case."""
    out = ec.truncated_gaussian_entropy(backend.asarray([[mean]]), backend.asarray([[log_std]]))
    expected = ref_truncnorm_entropy(mean, math.exp(log_std))
    assert backend.to_numpy(out)[0] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_truncated_entropy_sums_dims_and_custom_interval(backend, rng):
    """(B, D) inputs reduce over D; low/high other than [-1, 1] are honoured."""
    mean = rng.uniform(-4.0, 4.0, size=(3, 4))
    log_std = rng.uniform(-3.0, 1.5, size=(3, 4))
    out = ec.truncated_gaussian_entropy(
        backend.asarray(mean), backend.asarray(log_std), low=-2.0, high=0.5
    )
    expected = ref_truncnorm_entropy_arrays(mean, log_std, -2.0, 0.5)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-6, atol=1e-9)


def test_truncated_entropy_below_uniform_bound():
    """No density on [low, high] beats the uniform's log(high - low); wide sigma approaches it."""
    out = ec.truncated_gaussian_entropy(GRID_MEAN, GRID_LOG_STD)
    assert np.all(out <= math.log(2.0) + 1e-12)
    wide = ec.truncated_gaussian_entropy(np.zeros((1, 1)), np.full((1, 1), 2.0))
    assert wide[0] == pytest.approx(math.log(2.0), abs=2e-3)


@pytest.mark.parametrize(("low", "high"), [(1.0, 1.0), (1.0, -1.0)])
def test_truncated_entropy_rejects_empty_interval(low, high):
    """low >= high is bad input: ValueError naming the arguments."""
    with pytest.raises(ValueError, match=r"low|high"):
        ec.truncated_gaussian_entropy(np.zeros((1, 2)), np.zeros((1, 2)), low=low, high=high)


# ----------------------------------------------------------------------------------------------
# tanh Jacobian
# ----------------------------------------------------------------------------------------------


def test_tanh_jacobian_moderate_matches_naive_float64(backend, like, rng):
    """|u| <= 3: the naive log(1 - tanh(u)^2) is accurate to ~1e-12, so compare with it."""
    u = rng.uniform(-3.0, 3.0, size=(5, 6))
    x = backend.asarray(u)
    out = ec.tanh_log_det_jacobian(x)
    like(out, x, shape=(5,))
    expected = np.log(1.0 - np.tanh(u) ** 2).sum(-1)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tanh_jacobian_large_arguments_match_mpmath(backend, dtype):
    """Up to |u| = 1e4 (naive 1 - tanh^2 is 0 there): finite, equal to -2 log cosh u."""
    u = np.array(
        [
            [-1e4],
            [-700.0],
            [-40.0],
            [-19.0],
            [-5.0],
            [0.0],
            [1e-8],
            [5.0],
            [19.0],
            [40.0],
            [700.0],
            [1e4],
        ]
    )
    x = backend.asarray(u, dtype)
    got = backend.to_numpy(ec.tanh_log_det_jacobian(x))
    assert np.all(np.isfinite(got))
    expected = ref_log1m_tanh2(backend.to_numpy(x)).sum(-1)
    # float32: a few ulps of values up to 2e4 (eps 1.2e-7), plus ~1e-6 near 0
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == "float64" else dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, expected, **tol)


def test_tanh_jacobian_is_nonpositive_and_zero_at_origin():
    """1 - tanh^2 <= 1 so the log-Jacobian is <= 0, with equality at u = 0."""
    u = np.linspace(-30.0, 30.0, 601).reshape(-1, 1)
    out = ec.tanh_log_det_jacobian(u)
    assert np.all(out <= 0.0)
    assert abs(ec.tanh_log_det_jacobian(np.zeros((1, 3)))[0]) < 1e-15


# ----------------------------------------------------------------------------------------------
# tanh-Gaussian entropy: from given noise (deterministic) and by sampling (Monte Carlo)
# ----------------------------------------------------------------------------------------------


def test_tanh_entropy_from_noise_matches_reference(backend, like, rng):
    """H_gauss + mean over samples of sum log sech^2(mean + sigma eps), on every backend."""
    mean = rng.normal(size=(2, 3))
    log_std = rng.uniform(-2.0, 0.5, size=(2, 3))
    noise = rng.normal(size=(64, 2, 3))
    x = backend.asarray(mean)
    out = ec.tanh_gaussian_entropy_from_noise(x, backend.asarray(log_std), backend.asarray(noise))
    like(out, x, shape=(2,))
    u = mean + np.exp(log_std) * noise
    log_sech2 = 2.0 * math.log(2.0) - 2.0 * np.logaddexp(u, -u)  # log(4 / (e^u + e^-u)^2)
    expected = (log_std + C_GAUSS).sum(-1) + log_sech2.sum(-1).mean(0)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-12, atol=1e-12)


def test_tanh_entropy_from_noise_below_gaussian_entropy(rng):
    """Squashing never adds entropy: every Jacobian term is <= 0."""
    mean = rng.normal(size=(8, 4))
    log_std = rng.uniform(-3.0, 1.0, size=(8, 4))
    out = ec.tanh_gaussian_entropy_from_noise(mean, log_std, rng.normal(size=(16, 8, 4)))
    assert np.all(out < (log_std + C_GAUSS).sum(-1))


def _sampling_key(backend, seed):
    """The per-backend randomness argument of tanh_gaussian_entropy."""
    if backend.name == "numpy":
        return np.random.default_rng(seed)
    if backend.name == "torch":
        return backend.module.Generator().manual_seed(seed)
    if backend.name == "jax":
        import jax

        return jax.random.key(seed)
    pytest.skip("the spec defines no randomness argument for array_api_strict")


# (mean, sigma) per dimension. Standard errors of the 100k-sample estimate (measured with 1e6
# samples): 0.0012, 0.0048, 0.0050. The tolerance is 5 standard errors.
MC_CASES = [
    pytest.param([0.3], [0.5], 5 * 0.0012, id="1d-narrow"),
    pytest.param([-1.0], [1.2], 5 * 0.0048, id="1d-wide-off-centre"),
    pytest.param([0.3, -1.0, 2.0], [0.5, 1.2, math.exp(-2.0)], 5 * 0.0050, id="3d"),
]


@pytest.mark.parametrize(("mean", "sigma", "tol"), MC_CASES)
def test_tanh_entropy_monte_carlo_matches_quadrature(backend, like, mean, sigma, tol):
    """The sampled estimate agrees with an independent y-space quadrature within 5 SE."""
    key = _sampling_key(backend, 0)
    m = backend.asarray([mean])
    ls = backend.asarray([np.log(sigma)])
    out = ec.tanh_gaussian_entropy(m, ls, 100_000, key)
    like(out, m, shape=(1,))
    expected = sum(ref_tanh_gaussian_entropy_1d(mi, si) for mi, si in zip(mean, sigma, strict=True))
    assert backend.to_numpy(out)[0] == pytest.approx(expected, abs=tol)


def test_tanh_entropy_sampling_is_seeded(backend):
    """Same seed -> identical estimate; another seed -> a (slightly) different one."""
    m = backend.asarray([[0.2, -0.4], [1.0, 0.0]])
    ls = backend.asarray([[-0.5, 0.1], [0.0, -1.0]])
    a = backend.to_numpy(ec.tanh_gaussian_entropy(m, ls, 256, _sampling_key(backend, 7)))
    b = backend.to_numpy(ec.tanh_gaussian_entropy(m, ls, 256, _sampling_key(backend, 7)))
    c = backend.to_numpy(ec.tanh_gaussian_entropy(m, ls, 256, _sampling_key(backend, 8)))
    assert a.shape == (2,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("key", [0, None], ids=["int-seed", "none"])
def test_tanh_entropy_numpy_accepts_int_seed_and_none(key):
    """NumPy also takes an int seed or None; the estimate is finite and below H_gauss."""
    mean, log_std = np.zeros((3, 2)), np.full((3, 2), -0.5)
    out = ec.tanh_gaussian_entropy(mean, log_std, 128, key)
    assert out.shape == (3,) and np.all(np.isfinite(out))
    assert np.all(out < 2 * (C_GAUSS - 0.5))


def test_tanh_entropy_torch_default_generator():
    """torch accepts generator None (the global RNG)."""
    torch = pytest.importorskip("torch")
    out = ec.tanh_gaussian_entropy(torch.zeros(2, 3), torch.zeros(2, 3), 64, None)
    assert isinstance(out, torch.Tensor) and out.shape == (2,)
    assert torch.all(torch.isfinite(out))
