"""The package imports, sees era-core and its own stack, and its environment lacks jax."""

import importlib.util

import era_core
import era_llm


def test_imports_with_era_core():
    assert era_llm.__version__ == "0.1.0"
    assert callable(era_core.gaussian_log_std)


def test_environment_has_own_stack_and_not_the_other():
    # nox installs only this package and its test extra: torch is there, jax is not.
    assert importlib.util.find_spec("torch") is not None
    assert importlib.util.find_spec("jax") is None


def test_integration_lower_bounds_have_the_api_used():
    """Guards defect 9 (packaging): the declared lower bounds are releases with the API the
    integrations import. TRL's fused head (``FusedCausalLMOutput``) first shipped in 1.15, so
    ``trl>=1.15``; the installed versions satisfy the bounds and have those names; the verl
    path's ``verl-core`` extra (TransferQueue, tensordict >= 0.10) is declared, so it locks."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in requires("era-llm") or []]

    def bound(name: str, extra: str) -> str:
        (req,) = [
            r for r in reqs if r.name == name and r.marker and r.marker.evaluate({"extra": extra})
        ]
        (spec,) = [s for s in req.specifier if s.operator == ">="]
        return spec.version

    assert bound("trl", "trl") == "1.15"
    assert bound("verl", "verl") == "0.9"
    core = {r.name for r in reqs if r.marker and r.marker.evaluate({"extra": "verl-core"})}
    assert {"verl", "transferqueue", "tensordict"} <= core
    from trl.trainer.utils import FusedCausalLMOutput  # noqa: F401
    from verl.trainer.ppo.core_algos import register_policy_loss  # noqa: F401

    for name, lower in (("trl", "1.15"), ("verl", "0.9")):
        installed = tuple(int(p) for p in version(name).split(".")[:2])
        assert installed >= tuple(int(p) for p in lower.split("."))
