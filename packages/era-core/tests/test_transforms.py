"""Function transformations: jax.jit / jax.vmap / jax.grad, torch autograd and torch.compile.

Eager NumPy results are the reference for the transformed results; gradients are checked for
finiteness at extreme inputs and against central finite differences at moderate ones.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import era_core as ec

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
torch = pytest.importorskip("torch")

C_GAUSS = 0.5 * math.log(2.0 * math.pi * math.e)
MODES = ("paper", "exact")


def central_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Gradient of scalar f at x by central differences (float64)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# ----------------------------------------------------------------------------------------------
# jax.jit
# ----------------------------------------------------------------------------------------------


def test_jit_gaussian_log_std_with_traced_compensation(rng):
    """jit over pre_std *and* a learned delta (traced array) matches eager NumPy."""
    pre = rng.normal(size=(5, 4))
    delta = np.array([0.0, 0.2, 0.5, 1.0, 2.0])
    f = jax.jit(lambda s, d: ec.gaussian_log_std(s, -6.0, compensation=d))
    out = f(jnp.asarray(pre), jnp.asarray(delta))
    np.testing.assert_allclose(
        out, ec.gaussian_log_std(pre, -6.0, compensation=delta), rtol=1e-13, atol=1e-14
    )
    np.testing.assert_allclose(np.asarray(ec.gaussian_entropy(out)), -6.0 + delta, atol=1e-12)


def test_jit_gaussian_log_std_with_traced_target(rng):
    """The target itself may be traced (e.g. a scheduled target inside a jitted update)."""
    pre = rng.normal(size=(3, 2))
    f = jax.jit(lambda s, t: ec.gaussian_log_std(s, t))
    out = f(jnp.asarray(pre), jnp.asarray(-1.5))
    np.testing.assert_allclose(out, ec.gaussian_log_std(pre, -1.5), rtol=1e-13)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jit_softmax_era(rng, mode, dtype):
    """jit(softmax_era) equals eager, and the floor still holds, incl. +-1e4 rows."""
    z = np.concatenate(
        [rng.normal(scale=3.0, size=(3, 10)), np.where(np.arange(10) == 2, 1e4, -1e4)[None]]
    )
    x = jnp.asarray(z, dtype=dtype)
    out = jax.jit(lambda v: ec.softmax_era(v, 0.6, mode=mode))(x)
    assert out.dtype == x.dtype
    eager = ec.softmax_era(x, 0.6, mode=mode)
    np.testing.assert_allclose(
        np.asarray(out, np.float64), np.asarray(eager, np.float64), rtol=1e-6, atol=1e-6
    )
    assert np.all(np.isfinite(np.asarray(out)))


def test_jit_other_functions(rng):
    """truncated / tanh / categorical entropies, response_entropy, logit_scale, compensation
    loss and both batch modes compile under jit and equal eager NumPy."""
    m = rng.normal(size=(4, 3))
    ls = rng.uniform(-8.0, 2.0, size=(4, 3))
    ent = rng.uniform(0.0, 4.0, size=(4, 10))
    mask = rng.random(size=(4, 10)) < 0.6
    adv = np.array([1.0, -1.0, 1.0, 0.0])
    pairs = [
        (lambda a, b: ec.truncated_gaussian_entropy(a, b), (m, ls)),
        (lambda a: ec.tanh_log_det_jacobian(a), (m * 100,)),
        (lambda a: ec.categorical_entropy(a), (ent,)),
        (lambda a, b: ec.response_entropy(a, b), (ent, mask)),
        (lambda a, b: ec.logit_scale(a, b), (ent[:, 0], adv)),
        (lambda p, h: ec.compensation_loss(p, h, 1.0), (np.asarray(0.3), ent[:, 0])),
        (lambda a: ec.batch_gaussian_log_std(a, -3.0)[0], (m,)),
        (lambda a, z: ec.batch_gaussian_log_std(a, -3.0, log_partition=z)[0], (m, np.asarray(1.3))),
        (
            lambda r, b: ec.update_running_log_partition(r, b, 0.05),
            (np.asarray(0.1), np.asarray(2.0)),
        ),
    ]
    for fn, args in pairs:
        got = jax.jit(fn)(*(jnp.asarray(a) for a in args))
        np.testing.assert_allclose(np.asarray(got), fn(*args), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# jax.vmap
# ----------------------------------------------------------------------------------------------


def test_vmap_gaussian_log_std_per_sample_delta(rng):
    """vmap over (state, delta) pairs equals the batched call."""
    pre = rng.normal(size=(6, 3))
    delta = rng.uniform(0.0, 1.0, size=6)
    f = jax.vmap(lambda s, d: ec.gaussian_log_std(s, -4.0, compensation=d))
    out = f(jnp.asarray(pre), jnp.asarray(delta))
    np.testing.assert_allclose(out, ec.gaussian_log_std(pre, -4.0, compensation=delta), rtol=1e-13)


@pytest.mark.parametrize("mode", MODES)
def test_vmap_softmax_era(rng, mode):
    """vmap over rows (and jit(vmap)) equals the batched call."""
    z = rng.normal(scale=4.0, size=(5, 7))
    f = jax.vmap(lambda r: ec.softmax_era(r, 1.0, mode=mode))
    np.testing.assert_allclose(f(jnp.asarray(z)), ec.softmax_era(z, 1.0, mode=mode), rtol=1e-12)
    np.testing.assert_allclose(
        jax.jit(f)(jnp.asarray(z)), ec.softmax_era(z, 1.0, mode=mode), rtol=1e-12
    )


# ----------------------------------------------------------------------------------------------
# Gradients: JAX and torch
# ----------------------------------------------------------------------------------------------

W_GAUSS = np.array([[0.3, -1.0, 2.0, 0.5], [1.0, 1.0, -0.5, 0.0]])


def _gauss_objective_np(pre):
    return float(np.sum(W_GAUSS * ec.gaussian_log_std(pre, -5.0)))


def test_grad_gaussian_log_std_matches_finite_differences(rng):
    """jax.grad and torch autograd of sum(w * log_std) equal central differences."""
    pre = rng.normal(size=(2, 4))
    fd = central_difference(_gauss_objective_np, pre)
    g_jax = jax.grad(lambda s: jnp.sum(jnp.asarray(W_GAUSS) * ec.gaussian_log_std(s, -5.0)))(
        jnp.asarray(pre)
    )
    np.testing.assert_allclose(np.asarray(g_jax), fd, rtol=1e-6, atol=1e-8)
    t = torch.tensor(pre, requires_grad=True)
    torch.sum(torch.tensor(W_GAUSS) * ec.gaussian_log_std(t, -5.0)).backward()
    np.testing.assert_allclose(t.grad.numpy(), fd, rtol=1e-6, atol=1e-8)


def test_grad_wrt_learned_delta_is_one_per_state(rng):
    """Without clamp, d(sum_i log_std_i)/d delta = 1: delta buys exactly one nat (JAX, torch)."""
    pre = rng.normal(size=(3, 4))
    delta = np.array([0.1, 0.4, 0.9])
    g = jax.grad(lambda d: jnp.sum(ec.gaussian_log_std(jnp.asarray(pre), -4.0, compensation=d)))(
        jnp.asarray(delta)
    )
    np.testing.assert_allclose(np.asarray(g), np.ones(3), rtol=1e-12)
    d = torch.tensor(delta, requires_grad=True)
    torch.sum(ec.gaussian_log_std(torch.tensor(pre), -4.0, compensation=d)).backward()
    np.testing.assert_allclose(d.grad.numpy(), np.ones(3), rtol=1e-12)


EXTREME_LOGITS = np.array(
    [
        [1e4, -1e4, 0.0, 0.0, -1e4],
        [-1e4, -1e4, -1e4, -1e4, 1e4],
        [1e4, 1e4, 1e4, 1e4, 1e4],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [3.0, -2.0, 0.5, 1e4, -1e4],
    ]
)
W_SOFT = np.linspace(-1.0, 1.0, 25).reshape(5, 5)


@pytest.mark.parametrize("mode", MODES)
def test_grad_softmax_era_finite_at_extremes(mode):
    """Gradients of a cross-entropy-like loss through z' are finite for +-1e4 logits."""

    def loss_jax(z):
        zp = ec.softmax_era(z, 0.6, mode=mode)
        return jnp.sum(jnp.asarray(W_SOFT) * jax.nn.log_softmax(zp, axis=-1))

    g = np.asarray(jax.grad(loss_jax)(jnp.asarray(EXTREME_LOGITS)))
    assert np.all(np.isfinite(g)), g
    t = torch.tensor(EXTREME_LOGITS, requires_grad=True)
    torch.sum(
        torch.tensor(W_SOFT) * torch.log_softmax(ec.softmax_era(t, 0.6, mode=mode), -1)
    ).backward()
    assert torch.all(torch.isfinite(t.grad)), t.grad


@pytest.mark.parametrize("mode", MODES)
def test_grad_softmax_era_matches_finite_differences(rng, mode):
    """At moderate logits, jax.grad and torch autograd equal central differences."""
    z = rng.normal(scale=2.0, size=(3, 5))
    w = W_SOFT[:3]

    def f_np(v):
        return float(np.sum(w * ec.softmax_era(v, 1.0, mode=mode)))

    fd = central_difference(f_np, z)
    g_jax = jax.grad(lambda v: jnp.sum(jnp.asarray(w) * ec.softmax_era(v, 1.0, mode=mode)))(
        jnp.asarray(z)
    )
    np.testing.assert_allclose(np.asarray(g_jax), fd, rtol=1e-5, atol=1e-8)
    t = torch.tensor(z, requires_grad=True)
    torch.sum(torch.tensor(w) * ec.softmax_era(t, 1.0, mode=mode)).backward()
    np.testing.assert_allclose(t.grad.numpy(), fd, rtol=1e-5, atol=1e-8)


def test_grad_truncated_entropy_finite_over_the_accuracy_box():
    """d H_trunc / d(mean, log_std) is finite for sigma in [e^-8, e^2], |mean| <= 1e3 (JAX, torch)."""
    means, log_stds = (
        g.reshape(-1, 1)
        for g in np.meshgrid([-1e3, -3.0, -1.0, 0.0, 0.9, 5.0, 1e3], [-8.0, -2.0, 0.0, 2.0])
    )
    for dtype in ("float32", "float64"):
        gm, gs = jax.grad(
            lambda m, s: jnp.sum(ec.truncated_gaussian_entropy(m, s)), argnums=(0, 1)
        )(jnp.asarray(means, dtype), jnp.asarray(log_stds, dtype))
        assert np.all(np.isfinite(np.asarray(gm))) and np.all(np.isfinite(np.asarray(gs))), dtype
        m = torch.tensor(means, dtype=getattr(torch, dtype), requires_grad=True)
        s = torch.tensor(log_stds, dtype=getattr(torch, dtype), requires_grad=True)
        torch.sum(ec.truncated_gaussian_entropy(m, s)).backward()
        assert torch.all(torch.isfinite(m.grad)) and torch.all(torch.isfinite(s.grad)), dtype


def test_grad_truncated_entropy_matches_finite_differences(rng):
    """Moderate cases: jax.grad equals central differences of the NumPy implementation."""
    m = rng.uniform(-2.0, 2.0, size=(2, 3))
    s = rng.uniform(-2.0, 1.0, size=(2, 3))
    fd_m = central_difference(lambda v: float(np.sum(ec.truncated_gaussian_entropy(v, s))), m)
    fd_s = central_difference(lambda v: float(np.sum(ec.truncated_gaussian_entropy(m, v))), s)
    gm, gs = jax.grad(lambda a, b: jnp.sum(ec.truncated_gaussian_entropy(a, b)), argnums=(0, 1))(
        jnp.asarray(m), jnp.asarray(s)
    )
    np.testing.assert_allclose(np.asarray(gm), fd_m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gs), fd_s, rtol=1e-5, atol=1e-7)


def test_grad_tanh_jacobian_is_minus_two_tanh():
    """d/du log(1 - tanh^2 u) = -2 tanh u, finite up to |u| = 1e4 (JAX, torch)."""
    u = np.array([[-1e4, -30.0, -1.0, 0.0, 0.5, 20.0, 1e4]])
    g = np.asarray(jax.grad(lambda v: jnp.sum(ec.tanh_log_det_jacobian(v)))(jnp.asarray(u)))
    np.testing.assert_allclose(g, -2 * np.tanh(u), rtol=1e-12, atol=1e-15)
    t = torch.tensor(u, requires_grad=True)
    torch.sum(ec.tanh_log_det_jacobian(t)).backward()
    np.testing.assert_allclose(t.grad.numpy(), -2 * np.tanh(u), rtol=1e-12, atol=1e-15)


def test_grad_categorical_entropy_finite_with_extremes_and_masked_entries():
    """Entropy gradients stay finite for +-1e4 logits and for -inf (probability 0) entries."""
    z = np.array([[1e4, -1e4, 0.0], [0.0, 0.0, -np.inf], [-np.inf, 2.0, 1.0]])
    g = np.asarray(jax.grad(lambda v: jnp.sum(ec.categorical_entropy(v)))(jnp.asarray(z)))
    assert np.all(np.isfinite(g)), g
    t = torch.tensor(z, requires_grad=True)
    torch.sum(ec.categorical_entropy(t)).backward()
    assert torch.all(torch.isfinite(t.grad)), t.grad


def test_grad_batch_gaussian_log_std_finite(rng):
    """Training-mode batch ERA is differentiable through the batch statistic (JAX, torch)."""
    pre = rng.normal(size=(8, 3))
    g = jax.grad(lambda s: jnp.sum(ec.batch_gaussian_log_std(s, -3.0)[0] ** 2))(jnp.asarray(pre))
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)
    t = torch.tensor(pre, requires_grad=True)
    torch.sum(ec.batch_gaussian_log_std(t, -3.0)[0] ** 2).backward()
    np.testing.assert_allclose(t.grad.numpy(), np.asarray(g), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# torch.compile (CPU; a few small, static-shape cases: compiling is slow)
# ----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_gaussian_log_std(rng):
    """torch.compile(fullgraph=True: no graph break) of Gaussian ERA equals eager, and keeps the entropy."""
    pre = torch.tensor(rng.normal(size=(4, 3)))
    f = torch.compile(
        lambda s: ec.gaussian_log_std(s, -2.0, compensation=0.5), dynamic=False, fullgraph=True
    )
    out = f(pre)
    torch.testing.assert_close(
        out, ec.gaussian_log_std(pre, -2.0, compensation=0.5), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        ec.gaussian_entropy(out), torch.full((4,), -1.5, dtype=torch.float64)
    )


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
@pytest.mark.parametrize("mode", MODES)
def test_torch_compile_softmax_era(rng, mode):
    """torch.compile(fullgraph=True: no graph break) of softmax ERA equals eager; the floor holds."""
    z = torch.tensor(
        np.concatenate([rng.normal(scale=3.0, size=(2, 6)), [[1e4, -1e4, 0, 0, 0, 0]]])
    )
    f = torch.compile(lambda v: ec.softmax_era(v, 0.6, mode=mode), dynamic=False, fullgraph=True)
    out = f(z)
    torch.testing.assert_close(out, ec.softmax_era(z, 0.6, mode=mode), rtol=1e-10, atol=1e-10)
    p = torch.softmax(out, -1)
    assert torch.all(-(p * torch.log(p)).sum(-1) >= 0.6 - 1e-12)
