"""softmax_era on non-finite logits, every backend and dtype.

``+-inf`` logits (a half-precision classifier that overflowed) give the one-hot limit: the
output is finite and equals the output for the same row with ``+-inf`` replaced by logits far
enough apart that the softmax is exactly one-hot (``+-1e4``); the floor holds. A row holding a
NaN is NaN in every entry, and the other rows are unaffected.
"""

from __future__ import annotations

import numpy as np
import pytest

import era_core as ec

INF, NAN = np.inf, np.nan
MODES = ("paper", "exact")
MIN_ENTROPY = 0.6


def infinite_rows(c: int) -> np.ndarray:
    """One +inf; two +inf; +inf and -inf; -inf among finite; all -inf; all +inf."""
    rows = np.tile(np.linspace(-2.0, 3.0, c), (6, 1))
    rows[0, 1] = INF
    rows[1, [0, c - 1]] = INF
    rows[2, 0], rows[2, 2] = -INF, INF
    rows[3, [0, 1]] = -INF
    rows[4, :] = -INF
    rows[5, :] = INF
    return rows


def one_hot_equivalent(z: np.ndarray) -> np.ndarray:
    """+-inf -> +-1e4: the softmax of these rows is the limit the infinite rows must give."""
    out = np.where(np.isposinf(z), 1e4, np.where(np.isneginf(z), -1e4, z))
    out[np.isneginf(z).all(-1)] = 0.0  # all -inf: equal logits, uniform
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("c", [3, 10, 1000])
def test_infinite_logits_give_the_one_hot_limit(backend, like, entropy_f64, mode, dtype, c):
    z = infinite_rows(c)
    x = backend.asarray(z, dtype)
    out = ec.softmax_era(x, MIN_ENTROPY, mode=mode)
    like(out, x, shape=z.shape)
    got = backend.to_numpy(out)
    assert np.all(np.isfinite(got)), got
    expected = backend.to_numpy(
        ec.softmax_era(backend.asarray(one_hot_equivalent(z), dtype), MIN_ENTROPY, mode=mode)
    )
    np.testing.assert_array_equal(got, expected)
    h = entropy_f64(got)
    assert np.all(h >= MIN_ENTROPY - 1e-12), h
    if mode == "exact" and dtype in ("float32", "float64"):  # one +inf: the tight worst case
        assert h[0] <= MIN_ENTROPY * 1.001 and h[2] <= MIN_ENTROPY * 1.001
    np.testing.assert_allclose(h[[4, 5]], np.log(c), rtol=1e-3)  # all equal: uniform


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_nan_logits_give_nan_rows(backend, mode, dtype):
    z = np.tile(np.linspace(-1.0, 1.0, 10), (4, 1))
    z[1, 3] = NAN
    z[2, :] = NAN
    z[3, [0, 5]] = [NAN, INF]
    got = backend.to_numpy(ec.softmax_era(backend.asarray(z, dtype), MIN_ENTROPY, mode=mode))
    assert np.all(np.isnan(got[1:])), got
    clean = ec.softmax_era(backend.asarray(z[:1], dtype), MIN_ENTROPY, mode=mode)
    np.testing.assert_array_equal(got[:1], backend.to_numpy(clean))


@pytest.mark.parametrize("mode", MODES)
def test_gradients_at_infinite_logits_are_finite_torch(mode):
    torch = pytest.importorskip("torch")
    z = torch.tensor(infinite_rows(10), requires_grad=True)
    out = ec.softmax_era(z, MIN_ENTROPY, mode=mode)
    (grad,) = torch.autograd.grad((out * torch.linspace(-1.0, 1.0, 10)).sum(), z)
    assert torch.isfinite(grad).all()
    # Rows with one +inf (or only -inf among finite entries) have a one-hot or fixed softmax
    # direction: nothing moves it, so every entry's gradient is 0 there.
    assert torch.equal(grad[[0, 2]], torch.zeros(2, 10))
    assert torch.equal(grad[3, :2], torch.zeros(2))


@pytest.mark.parametrize("mode", MODES)
def test_gradients_at_infinite_logits_are_finite_jax(mode):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    weights = jnp.linspace(-1.0, 1.0, 10)
    grad = jax.grad(lambda z: jnp.sum(ec.softmax_era(z, MIN_ENTROPY, mode=mode) * weights))(
        jnp.asarray(infinite_rows(10))
    )
    assert bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_array_equal(np.asarray(grad)[[0, 2]], 0.0)
