"""GRPO's group advantages and dynamic sampling (era_llm.advantages)."""

from __future__ import annotations

import pytest
import torch

from era_llm.advantages import ADV_EPS, group_advantages


def test_group_advantages_and_dynamic_sampling_match_a_loop():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    adv, keep = group_advantages(rewards, 4)
    for g in range(3):
        r = rewards[4 * g : 4 * g + 4].tolist()
        mean = sum(r) / 4
        std = (sum((x - mean) ** 2 for x in r) / 3) ** 0.5
        for j in range(4):
            want = (r[j] - mean) / (std + 1e-6)
            assert adv[4 * g + j].item() == pytest.approx(want, abs=1e-5)
            assert bool(keep[4 * g + j]) == (max(r) > min(r))
    assert keep.tolist()[4:8] == [False] * 4  # the all-correct group is dropped


def test_a_zero_std_group_has_zero_advantages_and_is_dropped():
    adv, keep = group_advantages(torch.tensor([0.5, 0.5, 0.5]), 3)
    assert adv.tolist() == [0.0, 0.0, 0.0] and not keep.any()


def test_eps_is_added_to_the_std():
    rewards = torch.tensor([1.0, 0.0])
    adv, _ = group_advantages(rewards, 2, eps=1.0)
    std = rewards.std().item()
    assert adv.tolist() == pytest.approx([0.5 / (std + 1.0), -0.5 / (std + 1.0)])
    assert group_advantages(rewards, 2)[0][0].item() == pytest.approx(0.5 / (std + ADV_EPS))


@pytest.mark.parametrize(
    ("rewards", "group_size", "match"),
    [
        (torch.zeros(4), 1, "group_size must be an int >= 2"),
        (torch.zeros(5), 2, r"rewards must have shape \(groups \* group_size,\)"),
        (torch.zeros(2, 2), 2, "rewards must have shape"),
    ],
)
def test_bad_input(rewards, group_size, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, group_size)


def test_integer_rewards_give_floating_point_advantages():
    """Guards defect 11 (fractional advantages): integer rewards (a verifier's 0/1) give float
    advantages, so a response with 0 < A < 1 keeps its sign for ERA's ``A > 0`` test."""
    adv, keep = group_advantages(torch.tensor([0, 1, 1, 1, 1, 1]), 3)
    assert adv.is_floating_point()
    want, _ = group_advantages(torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 3)
    torch.testing.assert_close(adv, want)
    assert 0 < float(adv[1]) < 1 and keep.tolist() == [True] * 3 + [False] * 3
