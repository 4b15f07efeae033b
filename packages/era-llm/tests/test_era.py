"""era_llm.era: the band logic and statistics against a plain-Python reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from era_llm.era import ERAConfig, era_scales, stats_to_floats


def reference(ent, mask, adv, cfg):
    """One response at a time, in Python floats."""
    scales, hs, tops, rests = [], [], [], []
    for e_row, m_row, a in zip(ent.tolist(), mask.tolist(), adv.tolist(), strict=True):
        vals = sorted((e for e, m in zip(e_row, m_row, strict=True) if m), reverse=True)
        if not vals:
            scales.append(1.0 if not a > 0 else None)
            hs.append(None)
            continue
        k = max(1, math.floor(cfg.topk_fraction * len(vals)))
        h = sum(vals[:k]) / k
        tops += vals[:k]
        rests += vals[k:]
        c = 1.0
        if a > 0 and h < cfg.low:
            c = cfg.k
        elif a > 0 and h > cfg.high:
            c = 1 / cfg.k
        scales.append(c)
        hs.append(h)
    return scales, hs, tops, rests


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 8),
    seq=st.integers(1, 12),
    low=st.floats(0.0, 2.0),
    width=st.floats(0.1, 3.0),
    k=st.sampled_from([1.5, 2.0, 4.0]),
    frac=st.sampled_from([0.2, 0.5, 1.0]),
    adv_scale=st.booleans(),
)
def test_matches_reference(seed, batch, seq, low, width, k, frac, adv_scale):
    gen = torch.Generator().manual_seed(seed)
    ent = 4 * torch.rand(batch, seq, generator=gen) ** 2
    mask = torch.rand(batch, seq, generator=gen) < 0.8
    mask[0, 0] = True
    adv = torch.randn(batch, generator=gen)
    cfg = ERAConfig(low=low, high=low + width, k=k, topk_fraction=frac, adv_scale=adv_scale)
    res = era_scales(ent, mask, adv, cfg)
    scales, hs, tops, rests = reference(ent, mask, adv, cfg)
    has = mask.any(1)
    for i in range(batch):
        if has[i]:
            assert res.scale[i].item() == pytest.approx(scales[i])
            assert res.response_entropy[i].item() == pytest.approx(hs[i], rel=1e-5, abs=1e-6)
        else:
            assert res.scale[i].item() == 1.0
    want_adv = adv / res.scale if adv_scale else adv
    torch.testing.assert_close(res.advantages, want_adv)
    s = res.stats
    n = int(has.sum())
    below = sum(1 for h in hs if h is not None and h < low) / n
    above = sum(1 for h in hs if h is not None and h > low + width) / n
    assert s["frac_below"] == pytest.approx(below)
    assert s["frac_above"] == pytest.approx(above)
    assert s["frac_inside"] == pytest.approx(1 - below - above, abs=1e-6)
    assert s["top_entropy_mean"] == pytest.approx(sum(tops) / len(tops), rel=1e-5)
    if rests:
        assert s["rest_entropy_mean"] == pytest.approx(sum(rests) / len(rests), rel=1e-5)
    valid_scales = [c for c, h in zip(scales, hs, strict=True) if h is not None]
    assert s["scale_mean"] == pytest.approx(sum(valid_scales) / n, rel=1e-6)


def test_band_cases():
    # rows: low entropy & A>0 -> k; high & A>0 -> 1/k; low & A<0 -> 1; inside & A>0 -> 1
    ent = torch.tensor([[0.1] * 5, [4.0] * 5, [0.1] * 5, [1.0] * 5])
    adv = torch.tensor([1.0, 0.5, -1.0, 2.0])
    res = era_scales(ent, torch.ones(4, 5), adv, ERAConfig(k=3.0, adv_scale=True))
    assert res.scale.tolist() == pytest.approx([3.0, 1 / 3, 1.0, 1.0])
    assert res.advantages.tolist() == pytest.approx([1 / 3, 1.5, -1.0, 2.0])
    assert res.stats["frac_sharpen"] == 0.25 and res.stats["frac_flatten"] == 0.25


def test_token_level_advantages_keep_shape():
    ent = torch.tensor([[0.1, 0.1, 0.0], [4.0, 4.0, 0.0]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 0]])
    adv = torch.tensor([[0.0, 2.0, 2.0], [-1.0, -1.0, 0.0]])
    res = era_scales(ent, mask, adv, ERAConfig(adv_scale=True))
    assert res.scale.tolist() == [2.0, 1.0]
    torch.testing.assert_close(res.advantages, torch.tensor([[0.0, 1.0, 1.0], [-1.0, -1.0, 0.0]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low": 3.0, "high": 3.0}, "low < high"),
        ({"low": 4.0}, "low < high"),
        ({"k": 1.0}, "k must be > 1"),
        ({"k": 0.5}, "k must be > 1"),
        ({"topk_fraction": 0.0}, r"topk_fraction must be in \(0, 1\]"),
        ({"low": -0.1}, "low must be >= 0"),
        ({"high": float("nan")}, "must be finite"),
        ({"logit_topk": 0}, "logit_topk"),
        ({"adv_scale": 1}, "adv_scale must be a bool"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ERAConfig(**kwargs)


def test_shape_errors():
    with pytest.raises(ValueError, match="advantages must have shape"):
        era_scales(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="must both have shape"):
        era_scales(torch.zeros(2, 3), torch.ones(2, 4), torch.zeros(2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 3.0, "high": 0.45}, "--era-low 3.0 must be < --era-high 0.45"),
        ({"k": 1.0}, "--era-k 1.0 must be > 1"),
        ({"low": -0.5}, "--era-low -0.5 must be >= 0"),
        ({"topk_fraction": 2.0}, "ERAConfig.topk_fraction must be in (0, 1], got 2.0"),
    ],
)
def test_checked_names_fields_by_their_labels(kwargs, message):
    labels = {"low": "--era-low", "high": "--era-high", "k": "--era-k"}
    with pytest.raises(ValueError) as exc:
        ERAConfig.checked(labels, **kwargs)
    assert message in str(exc.value)


def test_checked_builds_the_same_config():
    assert ERAConfig.checked({"low": "--era-low"}, low=0.3, k=3.0) == ERAConfig(low=0.3, k=3.0)
    with pytest.raises(TypeError):
        ERAConfig.checked({}, band=1.0)


def test_stats_are_0d_tensors_on_the_input_device():
    ent = torch.tensor([[0.1, 0.2, 0.1], [5.0, 4.0, 1.0]])
    res = era_scales(ent, torch.ones(2, 3), torch.tensor([1.0, -1.0]))
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in res.stats.values())
    assert all(v.device == ent.device and v.dtype == torch.float32 for v in res.stats.values())
    floats = stats_to_floats(res.stats)
    assert list(floats) == list(res.stats)
    assert all(type(v) is float and v == res.stats[k].item() for k, v in floats.items())
    assert stats_to_floats({}) == {}


def test_stats_of_a_batch_without_tokens_are_zero():
    res = era_scales(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2))
    assert set(stats_to_floats(res.stats).values()) == {0.0}


@pytest.mark.parametrize("adv_scale", [False, True])
def test_fractional_advantages_are_scaled(adv_scale):
    """Guards defect 11: advantages in (0, 1) are positive for the sign test (sharpened below
    the band, flattened above it); integer advantages, which would have rounded them to 0, are
    refused with a ValueError."""
    ent = torch.tensor([[0.1, 0.2, 0.1, 0.1], [5.0, 4.0, 6.0, 5.0], [0.1, 0.1, 0.1, 0.1]])
    mask = torch.ones(3, 4)
    adv = torch.tensor([0.3, 0.7, -0.4])
    res = era_scales(ent, mask, adv, ERAConfig(adv_scale=adv_scale))
    assert res.scale.tolist() == [2.0, 0.5, 1.0]
    want = adv / res.scale if adv_scale else adv
    torch.testing.assert_close(res.advantages, want)
    token_adv = adv[:, None].expand(3, 4).contiguous()
    assert era_scales(ent, mask, token_adv).scale.tolist() == [2.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="advantages must be a floating-point tensor"):
        era_scales(ent, mask, torch.tensor([1, 1, 0]))
