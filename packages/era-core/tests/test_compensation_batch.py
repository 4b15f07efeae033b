"""Learned compensation (paper Eq. 12) and batch-level Gaussian ERA (App. C.1.2):
compensation_loss, batch_gaussian_log_std, update_running_log_partition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import era_core as ec

C_GAUSS = 0.5 * math.log(2.0 * math.pi * math.e)

# ----------------------------------------------------------------------------------------------
# compensation_loss
# ----------------------------------------------------------------------------------------------

DELTA = {
    "log": lambda p: math.exp(p),
    "softplus": lambda p: math.log1p(math.exp(p)),
    "value": lambda p: p,
}
D_DELTA_DP = {
    "log": lambda p: math.exp(p),
    "softplus": lambda p: 1.0 / (1.0 + math.exp(-p)),
    "value": lambda p: 1.0,
}


@pytest.mark.parametrize("parameterization", list(DELTA))
def test_compensation_loss_value(backend, like, parameterization):
    """loss = mean(delta(p) * (H - H0)), a 0-d array of the entropy's type and dtype."""
    p = 0.3
    entropy = np.array([1.0, -2.0, 0.5, 4.0])
    target = 0.7
    h = backend.asarray(entropy)
    loss = ec.compensation_loss(backend.asarray(p), h, target, parameterization=parameterization)
    like(loss, h, shape=())
    expected = np.mean(DELTA[parameterization](p) * (entropy - target))
    assert float(backend.to_numpy(loss)) == pytest.approx(expected, rel=1e-14)


def test_compensation_loss_default_is_log_and_array_target(backend):
    """Default parameterisation is exp(p); a per-sample target array broadcasts."""
    entropy = np.array([[1.0, 2.0], [3.0, -1.0]])
    target = np.array([0.5, 1.5])
    loss = ec.compensation_loss(
        backend.asarray(-0.2), backend.asarray(entropy), backend.asarray(target)
    )
    expected = np.mean(math.exp(-0.2) * (entropy - target))
    assert float(backend.to_numpy(loss)) == pytest.approx(expected, rel=1e-14)


def test_compensation_loss_unknown_parameterization():
    """parameterization must be log / softplus / value."""
    with pytest.raises(ValueError, match="parameterization"):
        ec.compensation_loss(np.asarray(0.0), np.ones(3), 0.0, parameterization="exp")


def _torch_grads(p_value, entropy, target, parameterization):
    torch = pytest.importorskip("torch")
    p = torch.tensor(p_value, dtype=torch.float64, requires_grad=True)
    h = torch.tensor(entropy, dtype=torch.float64, requires_grad=True)
    ec.compensation_loss(p, h, target, parameterization=parameterization).backward()
    h_grad = None if h.grad is None else h.grad.numpy()
    return float(p.grad), h_grad


def _jax_grads(p_value, entropy, target, parameterization):
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    def loss(p, h):
        return ec.compensation_loss(p, h, target, parameterization=parameterization)

    gp, gh = jax.grad(loss, argnums=(0, 1))(jnp.asarray(p_value), jnp.asarray(entropy))
    return float(gp), np.asarray(gh)


@pytest.mark.parametrize("grads", [_torch_grads, _jax_grads], ids=["torch", "jax"])
@pytest.mark.parametrize("parameterization", list(DELTA))
@pytest.mark.parametrize("side", ["below", "above"])
def test_compensation_gradient_sign_and_stop_gradient(grads, parameterization, side):
    """Entropy below target -> d loss / d p < 0 (descent grows delta); no gradient into H."""
    p = -0.4
    target = 1.0
    entropy = np.array([0.2, 0.5, 0.9]) if side == "below" else np.array([1.2, 3.0, 1.5])
    gp, gh = grads(p, entropy, target, parameterization)
    assert (gp < 0) if side == "below" else (gp > 0)
    assert gp == pytest.approx(
        D_DELTA_DP[parameterization](p) * np.mean(entropy - target), rel=1e-12
    )
    assert gh is None or np.all(gh == 0.0)  # stop_gradient on (H - H0)


def test_compensation_descent_grows_delta_when_entropy_is_low():
    """A few SGD steps on log_delta with entropy below target increase delta (torch)."""
    torch = pytest.importorskip("torch")
    log_delta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([log_delta], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        ec.compensation_loss(
            log_delta, torch.tensor([-1.0, -0.5], dtype=torch.float64), 0.0
        ).backward()
        opt.step()
    assert log_delta.item() > 0.2


# ----------------------------------------------------------------------------------------------
# batch_gaussian_log_std
# ----------------------------------------------------------------------------------------------


def ref_batch_log_partition(pre_std) -> float:
    """log(mean over all leading axes of sum_j exp(s_j)), via SciPy's logsumexp."""
    s = np.asarray(pre_std, dtype=np.float64)
    n_states = s.size // s.shape[-1]
    return float(special.logsumexp(s) - math.log(n_states))


def ref_batch_log_std(
    pre_std, target, log_partition, *, log_std_min=-8.0, log_std_max=0.0, compensation=0.0
):
    """max(log_std_max + K exp(s - log_partition), log_std_min)."""
    s = np.asarray(pre_std, dtype=np.float64)
    d = s.shape[-1]
    k = target + compensation - d * C_GAUSS - d * log_std_max
    return np.maximum(log_std_max + k * np.exp(s - log_partition), log_std_min)


@pytest.mark.parametrize("shape", [(8, 3), (4, 5, 2), (1, 6), (16, 1)])
def test_batch_matches_reference(backend, like, rng, shape):
    """Training mode (log_partition=None) equals the reference; the statistic is 0-d."""
    pre = rng.normal(size=shape)
    x = backend.asarray(pre)
    log_std, log_z = ec.batch_gaussian_log_std(x, -1.0 * shape[-1], compensation=0.1)
    like(log_std, x, shape=shape)
    assert tuple(log_z.shape) == ()
    expected_z = ref_batch_log_partition(pre)
    assert float(backend.to_numpy(log_z)) == pytest.approx(expected_z, rel=1e-12, abs=1e-12)
    expected = ref_batch_log_std(pre, -1.0 * shape[-1], expected_z, compensation=0.1)
    np.testing.assert_allclose(backend.to_numpy(log_std), expected, rtol=1e-12, atol=1e-12)


def test_batch_mean_entropy_is_target_and_states_differ(backend, rng):
    """No clamp: the batch-mean entropy is H0' exactly, while per-state entropies differ."""
    pre = rng.normal(scale=0.5, size=(32, 4))
    target, comp = -2.0, 0.3
    log_std, log_z = ec.batch_gaussian_log_std(backend.asarray(pre), target, compensation=comp)
    ls = backend.to_numpy(log_std)
    unclamped = ref_batch_log_std(
        pre, target, float(backend.to_numpy(log_z)), log_std_min=-np.inf, compensation=comp
    )
    assert unclamped.min() > -8.0  # premise: no clamp fires
    per_state = ls.sum(-1) + 4 * C_GAUSS
    assert per_state.mean() == pytest.approx(target + comp, abs=1e-12)
    assert per_state.std() > 0.05  # states get different entropies
    assert ls.max() <= 0.0  # every log-std <= log_std_max


def test_batch_every_log_std_within_bounds_with_clamp(backend, rng):
    """A batch with a dominant state: clamp fires there; bounds hold; mean entropy >= H0'."""
    pre = rng.normal(size=(10, 3))
    pre[0] += 6.0
    log_std, _ = ec.batch_gaussian_log_std(
        backend.asarray(pre), -3.0, log_std_min=-5.0, log_std_max=0.5
    )
    ls = backend.to_numpy(log_std)
    assert ls.min() == -5.0 and ls.max() <= 0.5
    assert (ls.sum(-1) + 3 * C_GAUSS).mean() > -3.0


def test_batch_eval_mode_uses_given_log_partition(backend, rng):
    """With log_partition given, the weights use it (not the batch's own statistic)."""
    pre = rng.normal(size=(6, 3))
    running = 2.5
    train, batch_z = ec.batch_gaussian_log_std(backend.asarray(pre), -3.0)
    ev, batch_z_eval = ec.batch_gaussian_log_std(
        backend.asarray(pre), -3.0, log_partition=backend.asarray(running)
    )
    np.testing.assert_allclose(
        backend.to_numpy(ev), ref_batch_log_std(pre, -3.0, running), rtol=1e-12
    )
    assert not np.allclose(backend.to_numpy(ev), backend.to_numpy(train))
    # the batch statistic is still reported in eval mode
    assert float(backend.to_numpy(batch_z_eval)) == pytest.approx(
        float(backend.to_numpy(batch_z)), rel=1e-14
    )


def test_batch_eval_single_state_is_deterministic(rng):
    """Eval on one state with the running statistic does not depend on other batch members."""
    pre = rng.normal(size=(5, 3))
    alone, _ = ec.batch_gaussian_log_std(pre[:1], -3.0, log_partition=1.7)
    inside, _ = ec.batch_gaussian_log_std(pre, -3.0, log_partition=1.7)
    np.testing.assert_allclose(alone[0], inside[0], rtol=1e-14)


def test_batch_large_pre_std_is_stable(backend):
    """pre-stds of +-1e3 (exp overflows) give a finite statistic and finite log-stds."""
    pre = np.array([[1e3, -1e3, 0.0], [999.0, 0.0, -5.0]])
    log_std, log_z = ec.batch_gaussian_log_std(backend.asarray(pre), -3.0)
    assert float(backend.to_numpy(log_z)) == pytest.approx(ref_batch_log_partition(pre), rel=1e-14)
    ls = backend.to_numpy(log_std)
    assert np.all(np.isfinite(ls)) and ls.max() <= 0.0 and ls.min() >= -8.0


def test_batch_validation(mentions):
    """Same argument checks as gaussian_log_std."""
    with pytest.raises(ValueError, match="target") as info:
        ec.batch_gaussian_log_std(np.zeros((4, 3)), 3 * C_GAUSS + 0.1)
    assert mentions(str(info.value), 3 * C_GAUSS)
    with pytest.raises(ValueError, match=r"log_std_m(in|ax)"):
        ec.batch_gaussian_log_std(np.zeros((4, 3)), -5.0, log_std_min=0.0, log_std_max=0.0)
    with pytest.raises(ValueError, match="target_entropy"):
        ec.batch_gaussian_log_std(np.zeros((4, 3)), math.nan)


# ----------------------------------------------------------------------------------------------
# update_running_log_partition
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "batch", "momentum"),
    [
        (0.0, 1.0, 0.01),
        (2.0, -3.0, 0.1),
        (1000.0, 1001.0, 0.01),
        (-800.0, 800.0, 0.5),
        (0.3, 0.7, 1.0),
    ],
)
def test_running_update_formula(backend, like, running, batch, momentum):
    """new = log((1 - m) e^r + m e^b), computed without overflow even for |values| ~ 1e3."""
    r = backend.asarray(running)
    new = ec.update_running_log_partition(r, backend.asarray(batch), momentum)
    like(new, r, shape=())
    expected = np.logaddexp(
        math.log1p(-momentum) + running if momentum < 1 else -np.inf, math.log(momentum) + batch
    )
    assert float(backend.to_numpy(new)) == pytest.approx(expected, rel=1e-13, abs=1e-13)


def test_running_update_converges_to_constant_batch_value():
    """Repeating the same batch statistic drives the running value to it."""
    running = np.asarray(5.0)
    for _ in range(2000):
        running = ec.update_running_log_partition(running, np.asarray(-1.0), 0.01)
    assert float(running) == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("momentum", [0.0, -0.1, 1.5, math.nan])
def test_running_update_momentum_range(momentum):
    """momentum outside (0, 1] -> ValueError naming momentum."""
    with pytest.raises(ValueError, match="momentum"):
        ec.update_running_log_partition(np.asarray(0.0), np.asarray(1.0), momentum)
