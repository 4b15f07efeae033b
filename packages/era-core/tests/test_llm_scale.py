"""Adaptive ERA for LLM RL (docs/paper.md §3, paper Eqs. 16-17): response_entropy, logit_scale,
scale_advantages. References are plain Python loops over rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import era_core as ec


def ref_response_entropy(token_entropy, mask, frac: float = 0.2) -> list[float]:
    """Per row: mean of the k = max(1, floor(frac n)) largest masked-in entropies; 0 if n = 0."""
    out = []
    for ents, keep in zip(
        np.asarray(token_entropy, np.float64).tolist(), np.asarray(mask).tolist(), strict=True
    ):
        chosen = sorted((e for e, m in zip(ents, keep, strict=True) if m), reverse=True)
        if not chosen:
            out.append(0.0)
            continue
        k = max(1, math.floor(frac * len(chosen)))
        out.append(sum(chosen[:k]) / k)
    return out


def ref_logit_scale(entropy, advantages, low=0.45, high=3.0, k=2.0) -> list[float]:
    """c = k (H < low, A > 0), 1/k (H > high, A > 0), else 1."""
    out = []
    for h, a in zip(np.asarray(entropy).tolist(), np.asarray(advantages).tolist(), strict=True):
        if a > 0 and h < low:
            out.append(k)
        elif a > 0 and h > high:
            out.append(1.0 / k)
        else:
            out.append(1.0)
    return out


# ----------------------------------------------------------------------------------------------
# response_entropy
# ----------------------------------------------------------------------------------------------


def test_response_entropy_worked_example(backend, like):
    """Hand-computed rows: k = floor(0.2 n), n = 0, n < 5 (k = 1), prompt/padding masked out."""
    ent = np.array(
        [
            [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 0.5],  # 9.0 and 0.5 masked out
            [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
            [0.3, 0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    mask = np.zeros_like(ent, dtype=bool)
    mask[0, 1:10] = True  # n = 9 -> k = 1 -> max = 10
    mask[1, :5] = True  # n = 5 -> k = 1 -> 5
    mask[3, :3] = True  # n = 3 -> k = max(1, 0) = 1 -> 0.3
    # row 2: n = 0 -> 0
    x = backend.asarray(ent)
    out = ec.response_entropy(x, backend.asarray(mask, "bool"))
    like(out, x, shape=(4,))
    np.testing.assert_allclose(backend.to_numpy(out), [10.0, 5.0, 0.0, 0.3], rtol=1e-15)


@pytest.mark.parametrize(
    ("n", "k"), [(1, 1), (4, 1), (5, 1), (9, 1), (10, 2), (14, 2), (15, 3), (100, 20)]
)
def test_response_entropy_k_is_floor_of_frac_n(backend, n, k):
    """k = max(1, floor(0.2 n)): entropies 1..n, so the answer is the mean of n, n-1, ..., n-k+1."""
    ent = np.zeros((1, 128))
    ent[0, :n] = np.arange(1.0, n + 1.0)
    mask = np.arange(128)[None, :] < n
    out = backend.to_numpy(ec.response_entropy(backend.asarray(ent), backend.asarray(mask, "bool")))
    assert out[0] == pytest.approx(np.mean(np.arange(n - k + 1.0, n + 1.0)), rel=1e-15)


@pytest.mark.parametrize("mask_dtype", ["bool", "int32", "int64", "float64"])
def test_response_entropy_mask_dtypes(backend, rng, mask_dtype):
    """mask may be bool or 0/1 of any numeric dtype: same result as the loop."""
    ent = rng.uniform(0.0, 4.0, size=(6, 23))
    mask = rng.random(size=(6, 23)) < 0.6
    out = ec.response_entropy(
        backend.asarray(ent), backend.asarray(mask.astype(mask_dtype), mask_dtype), 0.25
    )
    np.testing.assert_allclose(
        backend.to_numpy(out), ref_response_entropy(ent, mask, 0.25), rtol=1e-13
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_response_entropy_keeps_dtype(backend, like, rng, dtype):
    """The output has token_entropy's dtype; values are means of its (rounded) entries."""
    x = backend.asarray(rng.uniform(0.0, 4.0, size=(3, 40)), dtype)
    mask = backend.asarray(np.ones((3, 40), dtype=bool), "bool")
    out = ec.response_entropy(x, mask)
    like(out, x, shape=(3,))
    expected = ref_response_entropy(backend.to_numpy(x), np.ones((3, 40)), 0.2)
    rtol = 2**-23 * 8 if dtype == "float32" else 2**-8
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=rtol)


@pytest.mark.parametrize("frac", [0.0, -0.1, 1.0001, 2.0, math.nan])
def test_response_entropy_frac_range(backend, frac):
    """frac outside (0, 1] -> ValueError naming frac."""
    with pytest.raises(ValueError, match="frac"):
        ec.response_entropy(
            backend.asarray(np.ones((2, 3))), backend.asarray(np.ones((2, 3), bool), "bool"), frac
        )


def test_response_entropy_frac_one_is_plain_mean(rng):
    """frac = 1 averages every masked-in token."""
    ent = rng.uniform(size=(4, 9))
    mask = rng.random(size=(4, 9)) < 0.7
    mask[:, 0] = True
    out = ec.response_entropy(ent, mask, 1.0)
    np.testing.assert_allclose(
        out, [e[m].mean() for e, m in zip(ent, mask, strict=True)], rtol=1e-14
    )


@pytest.mark.parametrize(
    ("ent_shape", "mask_shape"), [((2, 5), (2, 4)), ((2, 5), (5, 2)), ((2, 5), (5,))]
)
def test_response_entropy_shape_mismatch(backend, ent_shape, mask_shape):
    """token_entropy and mask must have the same shape."""
    with pytest.raises(ValueError, match="shape"):
        ec.response_entropy(
            backend.asarray(np.ones(ent_shape)), backend.asarray(np.ones(mask_shape, bool), "bool")
        )


_FRACS = st.one_of(
    st.sampled_from([0.05, 0.1, 0.2, 0.25, 0.5, 1.0]), st.integers(1, 64).map(lambda i: i / 64)
)
"""fracs whose float products with n are never rounded across an integer (0.05/0.1/0.2 are
stored slightly above their decimal values; i/64 is exact), so floor(frac * n) is unambiguous."""


@settings(max_examples=100, deadline=None)
@given(
    ent=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 40)),
        elements=st.floats(0.0, 12.0, allow_subnormal=False),
    ),
    data=st.data(),
    frac=_FRACS,
)
def test_property_response_entropy_equals_loop(ent, data, frac):
    """Random entropies (with ties) and random masks (incl. empty rows): equals the loop."""
    mask = data.draw(hnp.arrays(np.bool_, ent.shape))
    out = ec.response_entropy(ent, mask, frac)
    np.testing.assert_allclose(out, ref_response_entropy(ent, mask, frac), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# logit_scale, scale_advantages
# ----------------------------------------------------------------------------------------------

NAMED_H = [0.0, 0.2, 0.45, 0.46, 1.0, 2.99, 3.0, 3.01, 10.0]
NAMED_A = [-1.0, 0.0, 1e-9, 1.0]


def test_logit_scale_named_boundaries(backend, like):
    """Every (H, A) combination at and around low = 0.45, high = 3 and A = 0: strict inequalities."""
    h, a = (g.ravel() for g in np.meshgrid(NAMED_H, NAMED_A, indexing="ij"))
    x = backend.asarray(h)
    out = ec.logit_scale(x, backend.asarray(a))
    like(out, x, shape=h.shape)
    np.testing.assert_array_equal(backend.to_numpy(out), ref_logit_scale(h, a))
    got = dict(
        zip(zip(h.tolist(), a.tolist(), strict=True), backend.to_numpy(out).tolist(), strict=True)
    )
    assert got[(0.2, 1.0)] == 2.0 and got[(10.0, 1.0)] == 0.5  # sharpen / flatten
    assert got[(0.45, 1.0)] == 1.0 and got[(3.0, 1.0)] == 1.0  # at the band edges: unchanged
    assert got[(0.2, 0.0)] == 1.0 and got[(10.0, -1.0)] == 1.0  # A <= 0: unchanged


@pytest.mark.parametrize(
    ("low", "high", "k"), [(0.1, 0.2, 3.0), (-1.0, 5.0, 1.5), (0.45, 3.0, 4.0)]
)
def test_logit_scale_custom_band(backend, rng, low, high, k):
    """Non-default low / high / k follow the loop."""
    h = rng.uniform(-2.0, 6.0, size=50)
    a = rng.normal(size=50)
    out = ec.logit_scale(backend.asarray(h), backend.asarray(a), low=low, high=high, k=k)
    np.testing.assert_allclose(
        backend.to_numpy(out), ref_logit_scale(h, a, low, high, k), rtol=1e-15
    )


@pytest.mark.parametrize(("low", "high"), [(3.0, 0.45), (1.0, 1.0)])
def test_logit_scale_band_must_be_ordered(backend, low, high):
    """low >= high -> ValueError naming low/high."""
    with pytest.raises(ValueError, match=r"low|high"):
        ec.logit_scale(backend.asarray([1.0]), backend.asarray([1.0]), low=low, high=high)


@pytest.mark.parametrize("k", [1.0, 0.5, 0.0, -2.0])
def test_logit_scale_k_must_exceed_one(backend, k):
    """k <= 1 -> ValueError naming k."""
    with pytest.raises(ValueError, match="k"):
        ec.logit_scale(backend.asarray([1.0]), backend.asarray([1.0]), k=k)


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.one_of(st.sampled_from([0.45, 3.0]), st.floats(-1.0, 8.0)),
            st.one_of(st.just(0.0), st.floats(-5.0, 5.0)),
        ),
        min_size=1,
        max_size=30,
    ),
    k=st.floats(1.01, 8.0),
)
def test_property_logit_scale_equals_loop(pairs, k):
    """Random H (incl. exactly at the band edges) and A (incl. 0) equal the loop, exactly."""
    h = np.array([p[0] for p in pairs])
    a = np.array([p[1] for p in pairs])
    np.testing.assert_array_equal(ec.logit_scale(h, a, k=k), ref_logit_scale(h, a, k=k))


def test_scale_advantages(backend, like):
    """A' = A / c: sharpened responses get A / k, flattened ones A * k."""
    h = np.array([0.1, 5.0, 1.0, 0.1])
    a = np.array([2.0, 2.0, 2.0, -2.0])
    x_a = backend.asarray(a)
    c = ec.logit_scale(backend.asarray(h), x_a)
    out = ec.scale_advantages(x_a, c)
    like(out, x_a, shape=(4,))
    np.testing.assert_allclose(backend.to_numpy(out), [1.0, 4.0, 2.0, -2.0], rtol=1e-15)
