"""Gaussian ERA (docs/paper.md §1, paper Eq. 11): gaussian_log_std, gaussian_entropy,
max_gaussian_entropy.

References are plain float64 NumPy/SciPy, written here from the spec's formulas.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

import era_core as ec

C_GAUSS = 0.5 * math.log(2.0 * math.pi * math.e)  # entropy of N(0, 1) in nats


def ref_log_std(pre_std, target, *, log_std_min=-8.0, log_std_max=0.0, compensation=0.0):
    """Float64 reference of Eq. 11: max(log_std_max + K softmax(s), log_std_min)."""
    s = np.asarray(pre_std, dtype=np.float64)
    d = s.shape[-1]
    h0 = np.asarray(target, dtype=np.float64) + np.asarray(compensation, dtype=np.float64)
    k = h0 - d * C_GAUSS - d * log_std_max
    return np.maximum(log_std_max + k[..., None] * special.softmax(s, axis=-1), log_std_min)


def ref_unclamped(pre_std, target, *, log_std_max=0.0, compensation=0.0):
    """Eq. 11 without the lower clamp (to know where, and by how much, the clamp fires)."""
    return ref_log_std(
        pre_std, target, log_std_min=-np.inf, log_std_max=log_std_max, compensation=compensation
    )


def ref_entropy(log_std):
    """Diagonal-Gaussian entropy as a sum of SciPy's normal entropies (not the closed form)."""
    return stats.norm(scale=np.exp(np.asarray(log_std, dtype=np.float64))).entropy().sum(-1)


# ----------------------------------------------------------------------------------------------
# Values against the reference, on every backend
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 6, 64])
def test_log_std_matches_reference(backend, like, rng, d):
    """Eq. 11 on every backend equals the float64 reference for D = 1 .. 64."""
    pre = rng.normal(scale=2.0, size=(5, d))
    target = -0.5 * d
    x = backend.asarray(pre)
    out = ec.gaussian_log_std(x, target)
    like(out, x, shape=(5, d))
    np.testing.assert_allclose(
        backend.to_numpy(out), ref_log_std(pre, target), rtol=1e-12, atol=1e-12
    )


def test_entropy_equals_target_exactly_without_clamp(backend, rng):
    """Softmax weights sum to 1, so the entropy is H0' whatever the pre-std."""
    pre = rng.normal(size=(7, 6))
    target = -1.0
    log_std = ec.gaussian_log_std(backend.asarray(pre), target, compensation=0.25)
    assert np.all(ref_unclamped(pre, target, compensation=0.25) > -8.0)  # premise: no clamp
    ent = backend.to_numpy(ec.gaussian_entropy(log_std))
    np.testing.assert_allclose(ent, np.full(7, target + 0.25), rtol=0, atol=1e-12)
    assert np.ptp(backend.to_numpy(log_std), axis=-1).min() > 0.1  # allocation is non-uniform


def test_clamp_raises_entropy_above_target(backend, rng):
    """A low target makes the clamp fire; entropy is then strictly above H0'."""
    pre = rng.normal(size=(4, 6))
    target = -1e5  # K ~ -1e5: every unclamped log-std is far below -8
    assert np.all(ref_unclamped(pre, target) < -8.0)  # premise
    log_std = backend.to_numpy(ec.gaussian_log_std(backend.asarray(pre), target))
    np.testing.assert_array_equal(log_std, np.full((4, 6), -8.0))
    ent = backend.to_numpy(ec.gaussian_entropy(backend.asarray(log_std)))
    np.testing.assert_allclose(ent, 6 * (C_GAUSS - 8.0), rtol=1e-12)
    assert np.all(ent > target)


def test_partial_clamp_entropy_excess(backend):
    """Only the dims whose unclamped log-std is below log_std_min are lifted."""
    pre = np.array([[5.0, 0.0, 0.0, 0.0]])
    target = -12.0
    unclamped = ref_unclamped(pre, target)
    assert unclamped[0, 0] < -8.0 < unclamped[0, 1:].min()  # premise: exactly one clamp fires
    out = backend.to_numpy(ec.gaussian_log_std(backend.asarray(pre), target))
    np.testing.assert_allclose(out, ref_log_std(pre, target), rtol=1e-12)
    excess = -8.0 - unclamped[0, 0]
    np.testing.assert_allclose(ref_entropy(out), target + excess, rtol=1e-12)


@pytest.mark.parametrize("pre_value", [0.0, -1e4, 1e4, 123.4])
def test_single_action_dimension(backend, pre_value):
    """D = 1: softmax is 1, so log_std = target - log sqrt(2 pi e) whatever s is."""
    out = ec.gaussian_log_std(backend.asarray([[pre_value], [0.5]]), 0.3)
    np.testing.assert_allclose(backend.to_numpy(out), np.full((2, 1), 0.3 - C_GAUSS), rtol=1e-13)


def test_sixty_four_dims_with_extreme_pre_std(backend):
    """D = 64 with +-1e4 pre-stds: finite, inside the bounds, equal to the reference."""
    pre = np.zeros((3, 64))
    pre[0, 0] = 1e4
    pre[1, :] = -1e4
    pre[1, 5] = 1e4
    pre[2, ::2] = 1e4
    target = 64 * -1.0
    out = backend.to_numpy(ec.gaussian_log_std(backend.asarray(pre), target))
    assert np.all(np.isfinite(out))
    assert np.all((out >= -8.0) & (out <= 0.0))
    np.testing.assert_allclose(out, ref_log_std(pre, target), rtol=1e-12, atol=1e-12)


def test_largest_feasible_target_gives_log_std_max(backend, rng):
    """At the ceiling K = 0 and every log-std equals log_std_max."""
    d = 5
    for log_std_max in (0.0, 0.7, -1.5):
        ceiling = d * (C_GAUSS + log_std_max) - 1e-12  # K = -1e-12: immune to last-ulp rounding
        out = ec.gaussian_log_std(
            backend.asarray(rng.normal(size=(3, d))),
            ceiling,
            log_std_max=log_std_max,
            log_std_min=log_std_max - 10.0,
        )
        np.testing.assert_allclose(backend.to_numpy(out), log_std_max, rtol=0, atol=1e-12)


def test_custom_bounds_respected(backend, rng):
    """Non-default log_std_min / log_std_max follow the reference and bound the output."""
    pre = rng.normal(scale=4.0, size=(16, 3))
    kwargs = dict(log_std_min=-2.5, log_std_max=0.5)
    out = backend.to_numpy(ec.gaussian_log_std(backend.asarray(pre), -4.0, **kwargs))
    np.testing.assert_allclose(out, ref_log_std(pre, -4.0, **kwargs), rtol=1e-12, atol=1e-12)
    assert out.min() >= -2.5 and out.max() <= 0.5
    assert np.any(out == -2.5)  # the clamp fires somewhere in this batch


def test_array_target_and_compensation(backend, rng):
    """Per-row targets (NumPy) and a learned delta (backend array) broadcast over rows."""
    pre = rng.normal(size=(4, 3))
    target = np.array([-1.0, -2.0, -3.0, 0.5])
    delta = np.array([0.0, 0.1, 1.0, 2.0])
    out = ec.gaussian_log_std(
        backend.asarray(pre), backend.asarray(target), compensation=backend.asarray(delta)
    )
    expected = ref_log_std(pre, target, compensation=delta)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref_entropy(backend.to_numpy(out)), target + delta, atol=1e-12)


def test_target_broadcast_over_leading_axes(backend, rng):
    """A (4,) target broadcasts against pre_std of shape (2, 4, D)."""
    pre = rng.normal(size=(2, 4, 3))
    target = np.array([-1.0, -2.0, 0.0, 1.0])
    out = ec.gaussian_log_std(backend.asarray(pre), backend.asarray(target))
    np.testing.assert_allclose(
        backend.to_numpy(out), ref_log_std(pre, target), rtol=1e-12, atol=1e-12
    )


def test_zero_dim_compensation_array(backend, rng):
    """A 0-d backend array (e.g. exp(log_delta)) works like the Python float."""
    pre = rng.normal(size=(3, 4))
    a = ec.gaussian_log_std(backend.asarray(pre), -2.0, compensation=backend.asarray(0.4))
    b = ec.gaussian_log_std(backend.asarray(pre), -2.0, compensation=0.4)
    np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), rtol=1e-13)


# ----------------------------------------------------------------------------------------------
# gaussian_entropy, max_gaussian_entropy
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 5), (2, 3, 64)])
def test_gaussian_entropy_matches_scipy(backend, like, rng, shape):
    """Sum of per-dimension normal entropies, reduced over the last axis."""
    log_std = rng.uniform(-8.0, 2.0, size=shape)
    x = backend.asarray(log_std)
    out = ec.gaussian_entropy(x)
    like(out, x, shape=shape[:-1])
    np.testing.assert_allclose(backend.to_numpy(out), ref_entropy(log_std), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("d", "log_std_max"), [(1, 0.0), (6, 0.0), (17, -1.0), (64, 2.0)])
def test_max_gaussian_entropy(d, log_std_max):
    """A Python float: D * (log sqrt(2 pi e) + log_std_max)."""
    got = ec.max_gaussian_entropy(d, log_std_max)
    assert isinstance(got, float)
    assert got == pytest.approx(d * (C_GAUSS + log_std_max), rel=1e-14)
    assert ec.max_gaussian_entropy(d) == pytest.approx(d * C_GAUSS, rel=1e-14)


# ----------------------------------------------------------------------------------------------
# Low-precision inputs
# ----------------------------------------------------------------------------------------------

# Tolerances: |log_std| <= 8, so one rounding of the output costs 8 * eps / 2; allow 4 ulps of
# that magnitude for the float32-internal computation plus the final cast.
_LOWP_ATOL = {"float16": 4 * 8 * 2**-10, "bfloat16": 4 * 8 * 2**-7, "float32": 4 * 8 * 2**-23}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_inputs(backend, like, rng, dtype):
    """float16 / bfloat16 / float32 in, same dtype out, values close to the float64 reference."""
    x = backend.asarray(rng.normal(size=(6, 5)), dtype)
    out = ec.gaussian_log_std(x, -6.0)
    like(out, x, shape=(6, 5))
    # reference from the *rounded* input, so only the computation's error is measured
    expected = ref_log_std(backend.to_numpy(x), -6.0)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=0, atol=_LOWP_ATOL[dtype])
    assert np.all(backend.to_numpy(out) <= 0.0)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "log_std_max", "compensation"), [(1, 0.0, 0.0), (3, 0.0, 0.5), (6, -1.0, 0.0)]
)
def test_infeasible_target_names_largest_feasible(backend, mentions, d, log_std_max, compensation):
    """K > 0 raises, and the message prints D*(c + log_std_max) - compensation."""
    largest = d * (C_GAUSS + log_std_max) - compensation
    with pytest.raises(ValueError, match="target") as info:
        ec.gaussian_log_std(
            backend.asarray(np.zeros((2, d))),
            largest + 0.01,
            log_std_max=log_std_max,
            log_std_min=log_std_max - 8.0,
            compensation=compensation,
        )
    assert mentions(str(info.value), largest), str(info.value)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 0.0), (1.0, 0.0), (-8.0, -9.0)])
def test_log_std_bounds_must_be_ordered(backend, lo, hi):
    """log_std_min >= log_std_max is rejected, naming the arguments."""
    with pytest.raises(ValueError, match=r"log_std_m(in|ax)"):
        ec.gaussian_log_std(
            backend.asarray(np.zeros((2, 3))), -20.0, log_std_min=lo, log_std_max=hi
        )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_target_rejected(backend, bad):
    """NaN / +-inf targets raise ValueError naming target_entropy."""
    with pytest.raises(ValueError, match="target_entropy"):
        ec.gaussian_log_std(backend.asarray(np.zeros((2, 3))), bad)


def test_integer_pre_std_rejected(backend):
    """Integer arrays raise TypeError (a silent integer softmax would be wrong)."""
    with pytest.raises(TypeError):
        ec.gaussian_log_std(backend.asarray(np.zeros((2, 3), dtype=np.int64), "int64"), -1.0)


# ----------------------------------------------------------------------------------------------
# Properties (NumPy)
# ----------------------------------------------------------------------------------------------


@st.composite
def _gaussian_case(draw):
    d = draw(st.integers(1, 16))
    b = draw(st.integers(1, 4))
    pre = draw(
        hnp.arrays(np.float64, (b, d), elements=st.floats(-50.0, 50.0, allow_subnormal=False))
    )
    log_std_max = draw(st.sampled_from([0.0, 0.0, 1.0, -0.5]))
    log_std_min = log_std_max - draw(st.sampled_from([8.0, 3.0, 12.0]))
    per_dim = draw(st.floats(-12.0, C_GAUSS + log_std_max - 1e-9))
    compensation = draw(st.sampled_from([0.0, 0.0, 0.3]))
    target = d * per_dim - compensation
    return pre, target, log_std_min, log_std_max, compensation


@settings(max_examples=100, deadline=None)
@given(_gaussian_case())
def test_property_entropy_bounds_and_reference(case):
    """Entropy == H0' + (clamp lift), so == H0' without clamp and > H0' with one; bounds hold."""
    pre, target, lo, hi, comp = case
    out = ec.gaussian_log_std(pre, target, log_std_min=lo, log_std_max=hi, compensation=comp)
    assert out.dtype == np.float64 and out.shape == pre.shape
    assert np.all(np.isfinite(out))
    assert np.all(out <= hi) and np.all(out >= lo)
    np.testing.assert_allclose(
        out,
        ref_log_std(pre, target, log_std_min=lo, log_std_max=hi, compensation=comp),
        rtol=1e-12,
        atol=1e-11,
    )
    unclamped = ref_unclamped(pre, target, log_std_max=hi, compensation=comp)
    lift = np.maximum(lo - unclamped, 0.0).sum(-1)
    ent = ec.gaussian_entropy(out)
    h0 = target + comp
    scale = 1e-11 * (1.0 + abs(h0) + np.abs(unclamped).sum(-1))
    np.testing.assert_allclose(ent, h0 + lift, rtol=0, atol=scale.max())
    no_clamp = lift == 0.0
    np.testing.assert_allclose(ent[no_clamp], h0, rtol=0, atol=scale.max())
    assert np.all(ent[lift > 1e-6] > h0)


@settings(max_examples=25, deadline=None)
@given(_gaussian_case())
def test_property_entropy_and_bounds_every_backend(xp, backend, case):
    """The same entropy / bounds property on torch / JAX / array_api_strict arrays (float64)."""
    pre, target, lo, hi, comp = case
    out = ec.gaussian_log_std(
        xp.asarray(pre, dtype=xp.float64), target, log_std_min=lo, log_std_max=hi, compensation=comp
    )
    assert array_api_compat.array_namespace(out) is xp and out.dtype == xp.float64
    got = backend.to_numpy(out)
    assert np.all(got <= hi) and np.all(got >= lo)
    unclamped = ref_unclamped(pre, target, log_std_max=hi, compensation=comp)
    lift = np.maximum(lo - unclamped, 0.0).sum(-1)
    atol = 1e-11 * (1.0 + abs(target + comp) + np.abs(unclamped).sum(-1)).max()
    np.testing.assert_allclose(ref_entropy(got), target + comp + lift, rtol=0, atol=atol)
