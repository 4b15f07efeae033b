"""era_vision.metrics against independent NumPy formulas and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from era_vision import metrics
from era_vision.metrics import ClassificationMetrics


def _np_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _np_reference(z: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """A naive per-sample loop: no torch, no vectorised binning."""
    p = _np_softmax(z.astype(np.float64))
    n, c = p.shape
    top1 = top5 = 0
    nll = ent_sum = 0.0
    ent_min = math.inf
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = [[] for _ in range(n_bins)]
    for i in range(n):
        order = sorted(range(c), key=lambda j: -z[i, j])
        top1 += order[0] == y[i]
        top5 += y[i] in order[:5]
        nll += -math.log(p[i, y[i]])
        h = -sum(q * math.log(q) for q in p[i] if q > 0)
        ent_sum += h
        ent_min = min(ent_min, h)
        conf = p[i].max()
        for b in range(n_bins):
            if (edges[b] < conf <= edges[b + 1]) or (b == 0 and conf == 0.0):
                bins[b].append((conf, order[0] == y[i]))
    ece = sum(
        len(bb) / n * abs(np.mean([ok for _, ok in bb]) - np.mean([cf for cf, _ in bb]))
        for bb in bins
        if bb
    )
    return {
        "top1": top1 / n,
        "top5": top5 / n,
        "nll": nll / n,
        "ece": ece,
        "entropy_mean": ent_sum / n,
        "entropy_min": ent_min,
    }


def test_hand_computed_example():
    # two classes; probabilities 0.8/0.2 (confidence 0.8, correct) and 0.5/0.5 (0.5, label 1)
    z = torch.tensor([[math.log(4.0), 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    m = metrics.classification_metrics(z, y)
    # argmax of a tie is class 0 -> second sample wrong
    assert m["top1"] == 0.5 and m["top5"] == 1.0
    assert m["nll"] == pytest.approx((-math.log(0.8) - math.log(0.5)) / 2)
    # bins: 0.8 in (11/15, 12/15] with acc 1, 0.5 in (7/15, 8/15] with acc 0
    assert m["ece"] == pytest.approx(0.5 * abs(1 - 0.8) + 0.5 * abs(0 - 0.5))
    h08 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert m["entropy_mean"] == pytest.approx((h08 + math.log(2)) / 2)
    assert m["entropy_min"] == pytest.approx(h08)


def test_perfectly_calibrated_bins_give_zero_ece():
    # 10 samples at confidence 0.7, in bin 10 = (10/15, 11/15]; 7 of them correct
    p = 0.7
    z = torch.tensor([[math.log(p), math.log(1 - p)]] * 10, dtype=torch.float64)
    y = torch.tensor([0] * 7 + [1] * 3)
    assert metrics.expected_calibration_error(z, y) == pytest.approx(0.0, abs=1e-12)
    bins = metrics.reliability_bins(z, y)
    assert bins.count[10] == 10 and sum(bins.count) == 10
    assert bins.accuracy[10] == pytest.approx(0.7) and bins.confidence[10] == pytest.approx(0.7)
    assert math.isnan(bins.accuracy[0])


def test_top5_caps_k_at_num_classes_and_functions_agree():
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert metrics.topk_accuracy(z, y, k=5) == 1.0
    assert metrics.topk_accuracy(z, y, k=1) == metrics.classification_metrics(z, y)["top1"]
    torch.testing.assert_close(
        metrics.predictive_entropy(z),
        -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1),
    )


@st.composite
def _batches(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 12))
    z = draw(
        arrays(np.float32, (n, c), elements=st.floats(-30, 30, width=32, allow_subnormal=False))
    )
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    return z, y, cuts


@settings(max_examples=60, deadline=None)
@given(_batches())
def test_streaming_equals_pure_functions_equals_numpy_reference(batch):
    z, y, cuts = batch
    expected = _np_reference(z, y)
    acc = ClassificationMetrics()
    for lo, hi in zip([0, *cuts], [*cuts, len(y)], strict=True):
        acc.update(torch.from_numpy(z[lo:hi]), torch.from_numpy(y[lo:hi]))
    streamed = acc.compute()
    whole = metrics.classification_metrics(torch.from_numpy(z), torch.from_numpy(y))
    assert streamed["count"] == len(y)
    for key, value in expected.items():
        # top-5 order among exactly tied logits is torch.topk's choice
        if key == "top5" and _has_ties(z):
            continue
        assert streamed[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
        assert whole[key] == pytest.approx(streamed[key], rel=1e-9, abs=1e-9), key
    nll = metrics.nll(torch.from_numpy(z), torch.from_numpy(y))
    assert nll == pytest.approx(expected["nll"], rel=1e-5, abs=1e-6)


def _has_ties(z: np.ndarray) -> bool:
    return any(len(set(row.tolist())) < len(row) for row in z)


def test_merge_equals_one_accumulator():
    g = torch.Generator().manual_seed(1)
    z = 3 * torch.randn(50, 10, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    a, b = ClassificationMetrics(), ClassificationMetrics()
    a.update(z[:20], y[:20])
    b.update(z[20:], y[20:])
    merged = a.merge(b).compute()
    assert merged == pytest.approx(metrics.classification_metrics(z, y))


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        metrics.topk_accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        metrics.nll(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="no samples"):
        ClassificationMetrics().compute()
    with pytest.raises(ValueError, match="n_bins"):
        ClassificationMetrics(n_bins=0)
