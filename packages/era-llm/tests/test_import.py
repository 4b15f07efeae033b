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
