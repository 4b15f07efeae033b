"""Softmax ERA (docs/paper.md §2, paper Eq. 15): softmax_era and softmax_era_bounds.

The float64 reference of mode="paper" is re-derived here from the spec's formula; mode="exact"
is checked through its defining properties (entropy floor, tightness at one-hot inputs, and
h(q) = -q log q being affine in p with sum H_tau and maximum log(tau)/tau).
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

import era_core as ec

MODES = ("paper", "exact")
ENTROPY_SLACK = 1e-12  # float64 evaluation noise of the reference entropy, nothing more


def ub_of(tau: float = 4.0) -> float:
    """h(1/tau) with h(q) = -q log q."""
    return math.log(tau) / tau


def ref_bounds(c: int, tau: float = 4.0) -> tuple[float, float]:
    """Feasible (low, high] for min_entropy: 1 + log(ub), 1 + log(C ub)."""
    return 1.0 + math.log(ub_of(tau)), 1.0 + math.log(c * ub_of(tau))


def ref_paper(logits, min_entropy: float, tau: float = 4.0) -> np.ndarray:
    """Float64 z' of mode="paper", straight from the spec's formula."""
    z = np.asarray(logits, dtype=np.float64)
    c = z.shape[-1]
    h_tau = math.exp(min_entropy - 1.0)
    ub = ub_of(tau)
    slope = (ub - h_tau / c) / (1.0 - 1.0 / c)
    b = (h_tau - slope) / c
    h = slope * special.softmax(z, axis=-1) + b
    u = -1.0 - np.log(h)
    return -1.0 - np.sqrt(2.0 * u) - 0.75 * u


def one_hot_logits(c: int, rows: int = 1, big: float = 1e4) -> np.ndarray:
    """Rows whose softmax is exactly one-hot in float64 (the worst case of the floor)."""
    z = np.zeros((rows, c))
    z[np.arange(rows), np.arange(rows) % c] = big
    return z


def feasible(c: int, t: float, tau: float = 4.0) -> float:
    """The min_entropy at fraction t in (0, 1] of the feasible range."""
    lo, hi = ref_bounds(c, tau)
    return lo + t * (hi - lo)


# ----------------------------------------------------------------------------------------------
# Bounds
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "tau"), [(2, 4.0), (10, 4.0), (1000, 4.0), (50_000, 4.0), (10, 8.0)])
def test_bounds_formula(c, tau):
    """softmax_era_bounds == (1 + log(ub), 1 + log(C ub)); spec: 2.24 (C=10), 6.85 (C=1000)."""
    lo, hi = ec.softmax_era_bounds(c, tau)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert (lo, hi) == pytest.approx(ref_bounds(c, tau), rel=1e-14)
    if (c, tau) == (10, 4.0):
        assert hi == pytest.approx(2.24, abs=0.01)
    if (c, tau) == (1000, 4.0):
        assert hi == pytest.approx(6.85, abs=0.01)


# ----------------------------------------------------------------------------------------------
# mode="paper": exact values
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [2, 10, 257])
def test_paper_mode_equals_reference(backend, like, rng, c):
    """mode="paper" returns exactly -1 - sqrt(2u) - 0.75u (float64, every backend)."""
    z = rng.normal(scale=3.0, size=(4, c))
    x = backend.asarray(z)
    out = ec.softmax_era(x, 0.6)
    like(out, x, shape=(4, c))
    np.testing.assert_allclose(backend.to_numpy(out), ref_paper(z, 0.6), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("c", "min_entropy", "expected"), [(10, 0.6, 0.98), (1000, 1.2, 2.91)], ids=["C10", "C1000"]
)
def test_paper_mode_floor_sanity_numbers(backend, entropy_f64, c, min_entropy, expected):
    """The loose floor the spec measured: one-hot input gives ~0.98 (C=10) and ~2.91 (C=1000)."""
    out = ec.softmax_era(backend.asarray(one_hot_logits(c)), min_entropy, mode="paper")
    assert entropy_f64(out)[0] == pytest.approx(expected, abs=0.02)


# ----------------------------------------------------------------------------------------------
# The floor and its tightness
# ----------------------------------------------------------------------------------------------

EXACT_PAIRS = [
    (2, 0.5),
    (2, 0.3),
    (10, 0.6),
    (10, 2.0),
    (1000, 1.2),
    (1000, 5.0),
    (50_000, 1.2),
    (50_000, 8.0),
]


@pytest.mark.parametrize(("c", "min_entropy"), EXACT_PAIRS)
def test_exact_mode_one_hot_is_tight(backend, entropy_f64, c, min_entropy):
    """Exact mode: the one-hot (worst-case) entropy is in [H_min, 1.01 H_min]."""
    out = ec.softmax_era(backend.asarray(one_hot_logits(c, rows=2)), min_entropy, mode="exact")
    h = entropy_f64(out)
    assert np.all(h >= min_entropy - ENTROPY_SLACK), h - min_entropy
    assert np.all(h <= 1.01 * min_entropy), h / min_entropy


INPUTS = {
    "one-hot-1e4": lambda c: one_hot_logits(c, rows=2),
    "plus-minus-1e4": lambda c: (
        np.where(np.arange(c) % 3 == 0, 1e4, -1e4)[None, :] * np.array([[1.0], [-1.0]])
    ),
    "all-equal": lambda c: np.full((2, c), 7.5),
    "all-equal-1e4": lambda c: np.full((2, c), -1e4),
    "random": lambda c: np.random.default_rng(c).normal(scale=5.0, size=(3, c)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", [2, 10, 50_000])
@pytest.mark.parametrize("kind", list(INPUTS))
def test_floor_on_named_inputs(backend, entropy_f64, mode, c, kind):
    """Floor holds and outputs are finite for +-1e4, all-equal, one-hot; C = 2, 10, 50k."""
    if c == 50_000 and kind == "random":
        pytest.skip("covered by one-hot / +-1e4 rows at 50k (kept fast)")
    min_entropy = {2: 0.5, 10: 0.6, 50_000: 1.2}[c]
    out = ec.softmax_era(backend.asarray(INPUTS[kind](c)), min_entropy, mode=mode)
    z = backend.to_numpy(out)
    assert np.all(np.isfinite(z))
    assert np.all(entropy_f64(z) >= min_entropy - ENTROPY_SLACK)


@pytest.mark.parametrize("mode", MODES)
def test_all_equal_logits_give_uniform(backend, entropy_f64, mode):
    """All-equal logits -> equal z' -> entropy log C."""
    out = backend.to_numpy(ec.softmax_era(backend.asarray(np.full((2, 10), 3.0)), 0.6, mode=mode))
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), rtol=1e-12)
    np.testing.assert_allclose(entropy_f64(out), math.log(10.0), rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("kind", ["one-hot-1e4", "plus-minus-1e4", "random"])
def test_floor_for_every_dtype(backend, like, entropy_f64, mode, dtype, kind):
    """The returned z', in its own (possibly half) precision, still has entropy >= H_min."""
    for c, min_entropy in [(10, 0.6), (1000, 1.2), (2, 0.05)]:
        x = backend.asarray(INPUTS[kind](c), dtype)
        out = ec.softmax_era(x, min_entropy, mode=mode)
        like(out, x, shape=x.shape)
        h = entropy_f64(backend.to_numpy(out))  # entropy of the *returned* logits, in float64
        assert np.all(np.isfinite(h))
        assert np.all(h >= min_entropy - ENTROPY_SLACK), (c, min_entropy, h - min_entropy)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("t", [0.005, 0.5, 1.0], ids=["near-low", "middle", "high"])
def test_floor_across_the_feasible_range(backend, entropy_f64, mode, dtype, t):
    """Near the lower end of the range (H_min < 0 there), mid-range, and at the inclusive top."""
    c = 10
    min_entropy = feasible(c, t)
    x = backend.asarray(one_hot_logits(c, rows=2), dtype)
    h = entropy_f64(backend.to_numpy(ec.softmax_era(x, min_entropy, mode=mode)))
    assert np.all(h >= min_entropy - ENTROPY_SLACK), (min_entropy, h - min_entropy)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_floor_dense_range_sweep_low_precision(backend, entropy_f64, mode, dtype):
    """One-hot input, 40 min_entropy values across the whole feasible range, C = 2, 10, 1000:
    rounding z' to a low-precision dtype must never push the entropy below min_entropy."""
    failures = []
    for c in (2, 10, 1000):
        x = backend.asarray(one_hot_logits(c), dtype)
        for min_entropy in feasible(c, np.linspace(0.0, 1.0, 41)[1:]):
            h = entropy_f64(backend.to_numpy(ec.softmax_era(x, float(min_entropy), mode=mode)))[0]
            if h < min_entropy - ENTROPY_SLACK:
                failures.append((c, round(float(min_entropy), 4), float(h - min_entropy)))
    assert not failures, f"(C, min_entropy, deficit): {failures}"


def test_top_of_range_gives_uniform_output(backend, entropy_f64):
    """min_entropy = 1 + log(C ub) (inclusive): slope 0, the output is uniform for any input."""
    c = 10
    out = ec.softmax_era(backend.asarray(one_hot_logits(c)), ref_bounds(c)[1])
    np.testing.assert_allclose(entropy_f64(out), math.log(c), rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# mode="exact": structure of the exact inverse
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "min_entropy"), [(2, 0.5), (10, 0.6), (10, 2.0), (1000, 1.2)])
def test_exact_mode_inverts_h(backend, rng, c, min_entropy):
    """q = exp(z') satisfies -q log q = slope p + b for one H_tau shared by all rows.

    H_tau is recovered from the output (sum_i h(q_i)), so this holds whatever the calibration.
    """
    z = np.concatenate([rng.normal(scale=4.0, size=(5, c)), one_hot_logits(c)])
    out = backend.to_numpy(ec.softmax_era(backend.asarray(z), min_entropy, mode="exact"))
    q = np.exp(out)
    assert np.all(q <= 0.25 * (1 + 1e-12))  # inverse taken on (0, 1/tau]
    hq = -q * out
    h_tau = hq.sum(-1)
    np.testing.assert_allclose(h_tau, h_tau[0], rtol=1e-10)  # same H_tau for every row
    slope = (ub_of() - h_tau[0] / c) / (1.0 - 1.0 / c)
    b = (h_tau[0] - slope) / c
    np.testing.assert_allclose(hq, slope * special.softmax(z, axis=-1) + b, rtol=1e-9, atol=1e-14)
    assert np.max(q[-1]) == pytest.approx(0.25, rel=1e-9)  # one-hot top class: h = ub


@pytest.mark.parametrize("mode", MODES)
def test_order_and_shift_invariance(rng, mode):
    """z' is a function of softmax(z): adding a row constant changes nothing; order is kept."""
    z = rng.normal(scale=2.0, size=(6, 12))
    a = ec.softmax_era(z, 1.0, mode=mode)
    b = ec.softmax_era(z + 50.0, 1.0, mode=mode)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.argsort(a, axis=-1), np.argsort(z, axis=-1))


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [2, 10, 1000])
@pytest.mark.parametrize("where", ["above", "at-low", "below"])
def test_infeasible_min_entropy_names_range(backend, mentions, c, where):
    """Outside (1 + log ub, 1 + log(C ub)] -> ValueError printing both ends."""
    lo, hi = ref_bounds(c)
    bad = {"above": hi + 0.01, "at-low": lo, "below": lo - 1.0}[where]
    with pytest.raises(ValueError, match="min_entropy") as info:
        ec.softmax_era(backend.asarray(np.zeros((1, c))), bad)
    msg = str(info.value)
    assert mentions(msg, lo) and mentions(msg, hi), msg


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_min_entropy(bad):
    """NaN / inf min_entropy is rejected."""
    with pytest.raises(ValueError, match="min_entropy"):
        ec.softmax_era(np.zeros((1, 10)), bad)


@pytest.mark.parametrize("tau", [math.e, 2.0, 1.0, -4.0])
def test_tau_must_exceed_e(tau):
    """tau <= e breaks 1/tau < 1/e (rising branch): ValueError naming tau."""
    with pytest.raises(ValueError, match="tau"):
        ec.softmax_era(np.zeros((1, 10)), 0.6, tau=tau)
    with pytest.raises(ValueError, match="tau"):
        ec.softmax_era_bounds(10, tau)


def test_unknown_mode():
    """mode is 'paper' or 'exact'."""
    with pytest.raises(ValueError, match="mode"):
        ec.softmax_era(np.zeros((1, 10)), 0.6, mode="lambert")


def test_needs_two_classes(backend):
    """C = 1 has no feasible floor: ValueError."""
    with pytest.raises(ValueError, match="class"):
        ec.softmax_era(backend.asarray(np.zeros((3, 1))), 0.1)
    with pytest.raises(ValueError, match="num_classes"):
        ec.softmax_era_bounds(1)


def test_integer_logits_rejected(backend):
    """Integer logits raise TypeError."""
    with pytest.raises(TypeError):
        ec.softmax_era(backend.asarray(np.zeros((2, 10), dtype=np.int64), "int64"), 0.6)


# ----------------------------------------------------------------------------------------------
# Properties (NumPy)
# ----------------------------------------------------------------------------------------------


@st.composite
def _softmax_case(draw):
    c = draw(st.integers(2, 64))
    rows = draw(st.integers(1, 4))
    base = draw(
        hnp.arrays(np.float64, (rows, c), elements=st.floats(-1.0, 1.0, allow_subnormal=False))
    )
    scale = draw(st.one_of(st.sampled_from([1e4, 1e3, 0.0]), st.floats(1e-3, 1e4)))
    t = draw(st.floats(0.01, 1.0))
    return base * scale, feasible(c, t)


@settings(max_examples=100, deadline=None)
@given(_softmax_case(), st.sampled_from(MODES))
def test_property_entropy_floor(entropy_f64, case, mode):
    """Random logits (scaled up to 1e4), C in [2, 64], feasible H_min: finite and H >= H_min."""
    entropy = entropy_f64
    z, min_entropy = case
    out = ec.softmax_era(z, min_entropy, mode=mode)
    assert out.dtype == np.float64 and out.shape == z.shape
    assert np.all(np.isfinite(out))
    h = entropy(out)
    assert np.all(h >= min_entropy - ENTROPY_SLACK), (min_entropy, h - min_entropy)
    # the one-hot input is the worst case
    worst = entropy(ec.softmax_era(one_hot_logits(z.shape[-1]), min_entropy, mode=mode))[0]
    assert np.all(h >= worst - 1e-9)
    if mode == "paper":
        np.testing.assert_allclose(out, ref_paper(z, min_entropy), rtol=1e-10, atol=1e-12)


@settings(max_examples=15, deadline=None)  # JAX re-compiles per shape: keep this one short
@given(case=_softmax_case(), mode=st.sampled_from(MODES))
def test_property_entropy_floor_every_backend(xp, backend, entropy_f64, case, mode):
    """The same floor property on torch / JAX / array_api_strict arrays (float64)."""
    z, min_entropy = case
    x = xp.asarray(z, dtype=xp.float64)
    out = ec.softmax_era(x, min_entropy, mode=mode)
    assert array_api_compat.array_namespace(out) is xp and out.dtype == xp.float64
    got = backend.to_numpy(out)
    assert np.all(np.isfinite(got))
    assert np.all(entropy_f64(got) >= min_entropy - ENTROPY_SLACK)
    np.testing.assert_allclose(
        got, ec.softmax_era(z, min_entropy, mode=mode), rtol=1e-10, atol=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(
    c=st.sampled_from([2, 3, 10, 100, 1000]),
    t=st.floats(0.001, 1.0),
    scale=st.sampled_from([0.5, 3.0, 30.0, 1e4]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(["float16", "bfloat16", "float32"]),
    mode=st.sampled_from(MODES),
)
def test_property_floor_low_precision_torch(entropy_f64, c, t, scale, seed, dtype, mode):
    """Off-grid min_entropy, random and one-hot rows, half/single precision (torch has all):
    the entropy of the returned, rounded z' is still >= min_entropy."""
    torch = pytest.importorskip("torch")
    z = np.concatenate(
        [one_hot_logits(c), np.random.default_rng(seed).normal(scale=scale, size=(2, c))]
    )
    min_entropy = feasible(c, t)
    out = ec.softmax_era(torch.tensor(z).to(getattr(torch, dtype)), min_entropy, mode=mode)
    assert out.dtype == getattr(torch, dtype)
    h = entropy_f64(out)
    assert np.all(h >= min_entropy - ENTROPY_SLACK), (min_entropy, h - min_entropy)
