"""TD-MPC2's building blocks in JAX/Flax (Hansen et al., 2024): the two-hot discrete
regression (:mod:`.twohot`), SimNorm and the decoder-free world model (:mod:`.world_model`),
and MPPI planning in its latent space (:mod:`.planning`). The TD-MPC2 / TD-MPC2-ERA agents
built from them are not registered yet (docs/control.md lists what remains)."""

from __future__ import annotations

from .planning import latent_value, mppi, warm_start
from .twohot import bin_centres, soft_ce, symexp, symlog, two_hot, two_hot_inv
from .world_model import NormedMLP, TDMPC2Config, WorldModel, simnorm

__all__ = [
    "NormedMLP",
    "TDMPC2Config",
    "WorldModel",
    "bin_centres",
    "latent_value",
    "mppi",
    "simnorm",
    "soft_ce",
    "symexp",
    "symlog",
    "two_hot",
    "two_hot_inv",
    "warm_start",
]
