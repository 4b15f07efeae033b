"""era_control — ERA for continuous control in JAX/Flax/Optax (see docs/control.md).

* `era_control.heads`: policy heads (ERA truncated / tanh Gaussian, plain SAC and PPO heads).
* `era_control.sac`, `era_control.sac_era`, `era_control.ppo`: the agents.
* `era_control.envs`: `make_env` / `VectorEnv` for `dmc/...`, `gym/...` and `hb/...` ids.
* `era_control.training`: the training loop behind `era-control-train`.
"""

from importlib import metadata as _metadata

__version__ = _metadata.version("era-control")
