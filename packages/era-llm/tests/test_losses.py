"""era_llm.losses against per-token reference formulas, and the cases where each is GRPO."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from era_llm.losses import LOSS_NAMES, policy_loss


def batch(seed, b=4, t=6, spread=0.4):
    gen = torch.Generator().manual_seed(seed)
    lp = -3 * torch.rand(b, t, generator=gen)
    old = lp + spread * torch.randn(b, t, generator=gen)
    adv = torch.randn(b, generator=gen)
    mask = torch.rand(b, t, generator=gen) < 0.8
    mask[:, 0] = True
    ent = 3 * torch.rand(b, t, generator=gen)
    return lp.requires_grad_(True), old, adv, mask, ent


def ppo_reference(lp, old, adv, mask, eps_low, eps_high):
    """Python loop over tokens: max(-A r, -A clip(r)), mean over valid tokens."""
    terms = []
    for i in range(lp.shape[0]):
        for t in range(lp.shape[1]):
            if mask[i, t]:
                r = torch.exp(lp[i, t] - old[i, t])
                a = float(adv[i])
                clipped = min(max(r, torch.tensor(1 - eps_low)), torch.tensor(1 + eps_high))
                terms.append(torch.maximum(-a * r, -a * clipped))
    return torch.stack(terms).mean()


def grads(loss, lp):
    return torch.autograd.grad(loss, lp)[0]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), eps_high=st.sampled_from([0.2, 0.28, 0.5]))
def test_grpo_and_clip_higher_match_reference(seed, eps_high):
    lp, old, adv, mask, _ = batch(seed)
    name = "grpo" if eps_high == 0.2 else "clip-higher"
    loss, stats = policy_loss(name, lp, old, adv, mask, clip_high=eps_high)
    ref = ppo_reference(lp, old, adv, mask, 0.2, eps_high)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grads(loss, lp), grads(ref, lp))
    ratio = torch.exp(lp - old)[mask]
    a = adv[:, None].expand(mask.shape)[mask]
    clipped = ((a > 0) & (ratio > 1 + eps_high)) | ((a < 0) & (ratio < 0.8))
    assert stats["clip_frac"] == pytest.approx(clipped.float().mean().item())


def test_dual_clip_bounds_negative_advantages():
    lp = torch.tensor([[2.0]], requires_grad=True)  # ratio e^2 ~ 7.4, A < 0
    loss, stats = policy_loss(
        "grpo", lp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), clip_ratio_c=3.0
    )
    assert loss.item() == pytest.approx(3.0)
    assert grads(loss, lp).item() == 0.0 and stats["clip_frac"] == 1.0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_gspo_matches_sequence_level_reference(seed):
    lp, old, adv, mask, _ = batch(seed, spread=3e-4)
    loss, _ = policy_loss("gspo", lp, old, adv, mask)
    terms = []
    for i in range(lp.shape[0]):
        s = torch.exp((lp[i][mask[i]] - old[i][mask[i]]).mean())
        a = float(adv[i])
        terms.append(torch.maximum(-a * s, -a * torch.clamp(s, 1 - 3e-4, 1 + 4e-4)))
    ref = torch.stack(terms).mean()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grads(loss, lp), grads(ref, lp))


def test_kl_cov_penalises_the_top_covariance_tokens():
    lp, old, adv, mask, _ = batch(3, b=8, t=16)
    ratio_share = 0.05
    loss, stats = policy_loss("kl-cov", lp, old, adv, mask, kl_cov_ratio=ratio_share, kl_coef=2.0)
    # reference: centred covariance by hand, the top int(0.05 * n) tokens
    idx = mask.nonzero().tolist()
    lps = [lp[i, t].item() for i, t in idx]
    advs = [adv[i].item() for i, _ in idx]
    mlp, madv = sum(lps) / len(lps), sum(advs) / len(advs)
    cov = [(x - mlp) * (a - madv) for x, a in zip(lps, advs, strict=True)]
    k = max(1, int(ratio_share * len(idx)))
    top = set(sorted(range(len(idx)), key=lambda j: -cov[j])[:k])
    terms = []
    for j, (i, t) in enumerate(idx):
        term = -adv[i] * torch.exp(lp[i, t] - old[i, t])
        if j in top:
            term = term + 2.0 * (lp[i, t] - old[i, t]).abs()
        terms.append(term)
    ref = torch.stack(terms).mean()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grads(loss, lp), grads(ref, lp))
    assert stats["selected_frac"] == pytest.approx(k / len(idx))


def test_clip_cov_detaches_tokens_in_the_covariance_window():
    lp, old, adv, mask, _ = batch(4, b=8, t=16)
    adv = adv * 10  # covariances reach the [lb, ub] window
    g = torch.Generator().manual_seed(0)
    loss, stats = policy_loss(
        "clip-cov",
        lp,
        old,
        adv,
        mask,
        clip_cov_ratio=0.1,
        clip_cov_lb=0.5,
        clip_cov_ub=50.0,
        generator=g,
    )
    ref = ppo_reference(lp, old, adv, mask, 0.2, 0.2)
    torch.testing.assert_close(loss, ref)  # the value is unchanged
    got, full = grads(loss, lp), grads(ref, lp)
    dropped = (got == 0) & (full != 0)
    n_valid = int(mask.sum())
    m = mask.float()
    cov = (lp.detach() - (lp.detach() * m).sum() / m.sum()) * (
        adv[:, None] - (adv[:, None] * m).sum() / m.sum()
    )
    pool = mask & (cov >= 0.5) & (cov <= 50.0)
    n_selected = round(float(stats["selected_frac"]) * n_valid)
    assert n_selected == min(max(1, int(0.1 * n_valid)), int(pool.sum()))
    assert 0 < int(dropped.sum()) <= n_selected  # selected tokens already clipped had no gradient
    assert torch.all(pool[dropped])
    torch.testing.assert_close(got[~dropped], full[~dropped])


def test_forking_trains_only_the_high_entropy_tokens():
    lp, old, adv, mask, ent = batch(5, b=6, t=10)
    loss, stats = policy_loss("forking", lp, old, adv, mask, token_entropy=ent)
    n = int(mask.sum())
    k = max(1, int(0.2 * n))
    thresh = torch.sort(ent[mask], descending=True).values[k - 1]
    chosen = mask & (ent >= thresh)
    assert int(chosen.sum()) == k
    ref = ppo_reference(lp, old, adv, chosen, 0.2, 0.2) * k / n  # zeros for the others
    torch.testing.assert_close(loss, ref)
    g = grads(loss, lp)
    assert torch.all(g[~chosen] == 0)
    assert stats["selected_frac"] == pytest.approx(k / n)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("clip-higher", {"clip_high": 0.2}),
        ("clip-cov", {"clip_cov_ratio": 0.0}),
        ("forking", {"forking_fraction": 1.0}),
    ],
)
def test_reduces_to_grpo(name, kwargs):
    lp, old, adv, mask, ent = batch(6)
    loss, _ = policy_loss(name, lp, old, adv, mask, token_entropy=ent, **kwargs)
    ref, _ = policy_loss("grpo", lp, old, adv, mask)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grads(loss, lp), grads(ref, lp))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_on_policy_every_loss_is_the_policy_gradient(name):
    """With old == current (the paper's on-policy setting) and no token selection, every loss
    has GRPO's gradient -A * grad log pi (GSPO with one token per response)."""
    lp, _, adv, mask, ent = batch(7, t=1 if name == "gspo" else 6)
    extra = {
        "kl-cov": {"kl_cov_ratio": 0.0},
        "clip-cov": {"clip_cov_ratio": 0.0},
        "forking": {"forking_fraction": 1.0},
    }.get(name, {})
    loss, stats = policy_loss(name, lp, lp.detach(), adv, mask, token_entropy=ent, **extra)
    want = -(adv[:, None] * mask) / mask.sum()
    torch.testing.assert_close(grads(loss, lp), want.expand_as(lp))
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["approx_kl"] == 0.0


def test_era_scaled_logprobs_plug_in():
    """GSPO+ERA is GSPO on the scaled policy's log-probs: scaling changes the loss."""
    from era_llm.ops import token_logprobs

    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 5, 11, generator=gen, requires_grad=True)
    labels = torch.randint(0, 11, (2, 5), generator=gen)
    mask = torch.ones(2, 5, dtype=torch.bool)
    plain = token_logprobs(logits, labels).logprobs
    scaled = token_logprobs(logits, labels, scale=torch.tensor([2.0, 0.5])).logprobs
    adv = torch.tensor([1.0, 1.0])
    a, _ = policy_loss("gspo", plain, plain.detach(), adv, mask)
    b, _ = policy_loss("gspo", scaled, scaled.detach(), adv, mask)
    ga = torch.autograd.grad(a, logits)[0]
    gb = torch.autograd.grad(b, logits)[0]
    assert not torch.allclose(ga, gb)
    assert math.isfinite(b.item())


def test_bad_arguments():
    lp, old, adv, mask, _ = batch(0)
    with pytest.raises(ValueError, match="loss name must be one of"):
        policy_loss("ppo", lp, old, adv, mask)
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        policy_loss("grpo", lp, old, adv, mask, kl_coef=1.0)
    with pytest.raises(ValueError, match="needs token_entropy"):
        policy_loss("forking", lp, old, adv, mask)
    with pytest.raises(ValueError, match="advantages must have shape"):
        policy_loss("grpo", lp, old, adv[:2], mask)
    with pytest.raises(ValueError, match="agg must be one of"):
        policy_loss("grpo", lp, old, adv, mask, agg="sum")


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_stats_are_detached_0d_tensors(name):
    torch.manual_seed(0)
    lp = torch.randn(3, 4, requires_grad=True)
    mask, adv, ent = torch.ones(3, 4), torch.tensor([1.0, -1.0, 0.5]), torch.rand(3, 4)
    _, stats = policy_loss(name, lp, lp.detach() + 0.1, adv, mask, token_entropy=ent)
    for key, value in stats.items():
        assert isinstance(value, torch.Tensor) and value.ndim == 0, key
        assert value.dtype == torch.float32 and not value.requires_grad, key
