"""The adaptive entropy bonus (era_llm.entropy_bonus): dual ascent on the coefficient, the
differentiable masked entropy."""

from __future__ import annotations

import math

import pytest
import torch

import era_core
from era_llm import entropy_bonus
from era_llm.entropy_bonus import EntropyBonusState, masked_entropy_mean


def test_coefficient_rises_below_the_target_and_is_clipped_at_zero_above():
    state = entropy_bonus.init()
    assert state == EntropyBonusState(0.0)
    for _ in range(3):
        state = entropy_bonus.update(state, 0.25, target=0.45, lr=0.5)
    assert state.coef == pytest.approx(3 * 0.5 * 0.2)
    state = entropy_bonus.update(state, torch.tensor(10.0), target=0.45, lr=0.5)
    assert state.coef == 0.0


def test_update_is_the_projected_dual_ascent_step_in_python_floats():
    coef, lr, target = 0.125, 0.05, 0.8
    for measured in (0.3, 0.9, 1.7, 0.1):
        want = max(0.0, coef + lr * (target - measured))
        coef = entropy_bonus.update(EntropyBonusState(coef), measured, target=target, lr=lr).coef
        assert coef == want and isinstance(coef, float)


def test_apply_subtracts_the_weighted_entropy():
    loss = entropy_bonus.apply(torch.tensor(1.0), torch.tensor(2.0), EntropyBonusState(0.25))
    assert loss.item() == 0.5


def test_masked_entropy_mean_is_the_masked_mean_of_categorical_entropies():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    value = masked_entropy_mean(logits, mask)
    ent = era_core.categorical_entropy(logits.detach(), axis=-1)
    want = (ent[0, 0] + ent[0, 1] + ent[1, 0]) / 3
    assert value.item() == pytest.approx(want.item(), rel=1e-6)
    logp = torch.log_softmax(logits.detach(), -1)
    manual = -(logp.exp() * logp).sum(-1)
    assert value.item() == pytest.approx(((manual * mask).sum() / 3).item(), rel=1e-6)
    value.backward()
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[0, 0].abs().sum() > 0


def test_uniform_logits_give_log_v_and_an_empty_mask_gives_zero():
    logits = torch.zeros(1, 2, 5)
    assert masked_entropy_mean(logits, torch.ones(1, 2)).item() == pytest.approx(math.log(5))
    assert masked_entropy_mean(logits, torch.zeros(1, 2)).item() == 0.0


@pytest.mark.parametrize(("kwargs", "match"), [({"coef": -1.0}, "coef must be")])
def test_bad_init(kwargs, match):
    with pytest.raises(ValueError, match=match):
        entropy_bonus.init(**kwargs)


def test_bad_target():
    with pytest.raises(ValueError, match="target must be >= 0"):
        entropy_bonus.update(entropy_bonus.init(), 0.1, target=-1.0, lr=0.1)
