"""era_control — ERA for continuous control in JAX/Flax/Optax (see docs/control.md).

* :func:`list_algorithms` / :func:`get_algorithm`: the registered algorithms (names, config
  dataclasses, agents, trainer kinds); :mod:`era_control.algorithms` registers the built-in ones.
* `era_control.heads`: policy heads, one class per kind, built with `make_head(kind, ...)`.
* `era_control.sac`, `era_control.sac_era`, `era_control.ppo`: the agents.
* `era_control.envs`: `make_env` / `VectorEnv` for `dmc/...`, `gym/...` and `hb/...` ids.
* `era_control.training`: `make_trainer(RunConfig(...))`, the loop behind `era-control-train`.
"""

from importlib import metadata as _metadata

from . import algorithms as _algorithms  # noqa: F401  (registers the built-in algorithms)
from .registry import AlgorithmSpec, get_algorithm, list_algorithms, register_algorithm

__all__ = ["AlgorithmSpec", "get_algorithm", "list_algorithms", "register_algorithm"]
__version__ = _metadata.version("era-control")
