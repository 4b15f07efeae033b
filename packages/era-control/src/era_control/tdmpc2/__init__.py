"""TD-MPC2's building blocks in JAX/Flax (Hansen et al., 2024): the two-hot discrete
regression (:mod:`.twohot`), SimNorm and the decoder-free world model (:mod:`.world_model`),
MPPI planning in its latent space (:mod:`.planning`) and the subsequence replay
(:mod:`.buffer`). The agents built from them are :mod:`era_control.tdmpc2_agent` and
:mod:`era_control.tdmpc2_era`."""

from __future__ import annotations

from .planning import latent_value, mppi, two_q, warm_start
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
    "two_q",
    "warm_start",
]
