"""Fixtures shared by era-llm's tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def compose_verl():
    """``compose(low, high, k, *extra)``: verl's own ``ppo_trainer`` Hydra config with our
    entry-point wiring (Ray's setup hook aside), ``loss_mode=era``, the band and ``extra``
    overrides."""
    import verl
    from hydra import compose, initialize_config_dir

    import era_llm.integrations.verl as era_verl

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")

    def build(low: float, high: float, k: float, *extra: str):
        overrides = [o for o in era_verl.ENTRY_OVERRIDES if "ray_kwargs" not in o] + [
            "actor_rollout_ref.actor.policy_loss.loss_mode=era",
            f"+actor_rollout_ref.actor.policy_loss.era_low={low}",
            f"+actor_rollout_ref.actor.policy_loss.era_high={high}",
            f"+actor_rollout_ref.actor.policy_loss.era_k={k}",
            *extra,
        ]
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            return compose("ppo_trainer", overrides=overrides)

    return build
