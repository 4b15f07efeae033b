"""categorical_entropy (docs/paper.md §2): stable for any finite logits, -inf means probability 0.

Reference: mpmath at 50 digits, -sum p log p with p = softmax(z), -inf entries skipped.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import era_core as ec


def ref_entropy(logits) -> np.ndarray:
    """Entropy of softmax over the last axis, row by row in 50-digit mpmath."""
    z = np.asarray(logits, dtype=np.float64)
    out = np.empty(z.shape[:-1])
    with mp.workdps(50):
        for idx in np.ndindex(*z.shape[:-1]):
            row = [mp.mpf(float(v)) for v in z[idx] if v != -np.inf]
            log_norm = mp.log(mp.fsum(mp.exp(v) for v in row))
            out[idx] = float(-mp.fsum(mp.exp(v - log_norm) * (v - log_norm) for v in row))
    return out


@pytest.mark.parametrize("shape", [(5, 2), (5, 7), (2, 3, 11)])
def test_matches_reference(backend, like, rng, shape):
    """Random logits, every backend, float64."""
    z = rng.normal(scale=3.0, size=shape)
    x = backend.asarray(z)
    out = ec.categorical_entropy(x)
    like(out, x, shape=shape[:-1])
    np.testing.assert_allclose(backend.to_numpy(out), ref_entropy(z), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_axis_argument(backend, rng, axis):
    """axis= reduces along that axis (same as moving it last)."""
    z = rng.normal(size=(6, 4, 5))
    out = ec.categorical_entropy(backend.asarray(z), axis=axis)
    expected = ref_entropy(np.moveaxis(z, axis, -1))
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-12, atol=1e-13)


NAMED = {
    "one-hot-1e4": ([1e4, 0.0, 0.0, -1e4], 0.0),
    "all-equal": ([3.0] * 6, math.log(6)),
    "all-minus-1e4": ([-1e4] * 5, math.log(5)),
    "two-tied-1e4": ([1e4, 1e4, -1e4], math.log(2)),
    "large-gap-30": ([30.0, 0.0, 0.0], None),  # tiny but nonzero entropy
    "neg-inf-entries": ([0.0, 0.0, -np.inf], math.log(2)),
    "only-one-finite": ([-np.inf, 5.0, -np.inf, -np.inf], 0.0),
    "inf-with-1e4": ([1e4, -np.inf, 1e4, -1e4], math.log(2)),
}


@pytest.mark.parametrize("kind", list(NAMED))
def test_named_extremes(backend, kind):
    """+-1e4, ties, -inf entries: finite, no NaN, equal to the exact value."""
    row, exact = NAMED[kind]
    out = backend.to_numpy(ec.categorical_entropy(backend.asarray([row, row[::-1]])))
    assert np.all(np.isfinite(out))
    expected = ref_entropy([row, row[::-1]])
    if exact is not None:
        np.testing.assert_allclose(expected, exact, atol=1e-15)  # reference sanity
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_fifty_thousand_classes(backend):
    """C = 50,000: uniform -> log C; one dominant class -> ~0."""
    z = np.zeros((2, 50_000))
    z[1, 123] = 1e4
    out = backend.to_numpy(ec.categorical_entropy(backend.asarray(z)))
    np.testing.assert_allclose(out, [math.log(50_000), 0.0], rtol=1e-12, atol=1e-12)


# float32: H <= log C ~ 2-11 and ~C terms of size p log p; allow ~50 eps relative + 1e-5 absolute.
# float16/bfloat16: the result is computed in float32 and rounded once: half an ulp of the value.
_LOWP = {
    "float32": dict(rtol=50 * 2**-23, atol=1e-5),
    "float16": dict(rtol=2**-10, atol=1e-4),
    "bfloat16": dict(rtol=2**-7, atol=1e-3),
}


@pytest.mark.parametrize("dtype", list(_LOWP))
def test_low_precision(backend, like, rng, dtype):
    """Half / single precision in, same dtype out, close to the reference of the rounded input."""
    x = backend.asarray(
        np.concatenate([rng.normal(scale=4.0, size=(4, 16)), [[1e4] + [0.0] * 15]]), dtype
    )
    out = ec.categorical_entropy(x)
    like(out, x, shape=(5,))
    np.testing.assert_allclose(
        backend.to_numpy(out), ref_entropy(backend.to_numpy(x)), **_LOWP[dtype]
    )


def test_integer_logits_rejected(backend):
    """Integer logits raise TypeError."""
    with pytest.raises(TypeError):
        ec.categorical_entropy(backend.asarray(np.ones((2, 3), dtype=np.int64), "int64"))


@st.composite
def _logits_with_masked_entries(draw):
    c = draw(st.integers(2, 32))
    rows = draw(st.integers(1, 4))
    base = draw(
        hnp.arrays(np.float64, (rows, c), elements=st.floats(-1.0, 1.0, allow_subnormal=False))
    )
    scale = draw(st.one_of(st.sampled_from([1e4, 0.0]), st.floats(1e-3, 1e4)))
    masked = draw(hnp.arrays(np.bool_, (rows, c)))
    masked[:, draw(st.integers(0, c - 1))] = False  # at least one finite logit per row
    return np.where(masked, -np.inf, base * scale)


@settings(max_examples=100, deadline=None)
@given(_logits_with_masked_entries())
def test_property_matches_reference_and_bounds(z):
    """Random logits up to 1e4 with random -inf entries: 0 <= H <= log(#finite), equals mpmath."""
    out = ec.categorical_entropy(z)
    assert np.all(np.isfinite(out))
    n_finite = np.isfinite(z).sum(-1)
    assert np.all(out >= -1e-12) and np.all(out <= np.log(n_finite) + 1e-12)
    np.testing.assert_allclose(out, ref_entropy(z), rtol=1e-10, atol=1e-11)
