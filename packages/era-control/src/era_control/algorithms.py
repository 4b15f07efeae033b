"""The built-in algorithms, registered by name (the one place the names are spelled).

A new algorithm is its own module (a config dataclass and an agent class with the interface of
:class:`~era_control.offpolicy.OffPolicyAgent`, :class:`~era_control.ppo.PPOAgent` or
:class:`~era_control.tdmpc2_agent.TDMPC2`) plus one
:func:`~era_control.registry.register_algorithm` call here.
"""

from __future__ import annotations

from .fast_offpolicy import FastTD3Config
from .fastsac import FastSAC, FastSACConfig
from .fastsac_era import FastSACERA, FastSACERAConfig
from .fasttd3 import FastTD3
from .obac import OBAC, OBACConfig
from .obac_era import OBACERA, OBACERAConfig
from .ppo import PPOERA, PPOAgent, PPOConfig, PPOERAConfig
from .registry import AlgorithmSpec, register_algorithm
from .sac import SAC, SACConfig
from .sac_era import SACERA, SACERAConfig
from .tdmpc2 import TDMPC2Config
from .tdmpc2_agent import TDMPC2
from .tdmpc2_era import TDMPC2ERA, TDMPC2ERAConfig

SAC_SPEC = register_algorithm(
    AlgorithmSpec(
        "sac",
        SACConfig,
        SAC,
        "off-policy",
        "SAC: tanh-squashed Gaussian policy, learned temperature alpha",
    )
)
SAC_ERA_SPEC = register_algorithm(
    AlgorithmSpec(
        "sac-era",
        SACERAConfig,
        SACERA,
        "off-policy",
        "SAC-ERA: the entropy constraint in the policy's last activation, no alpha",
        baseline=SAC_SPEC.name,
    )
)
PPO_SPEC = register_algorithm(
    AlgorithmSpec(
        "ppo",
        PPOConfig,
        PPOAgent,
        "on-policy",
        "PPO: clipped surrogate, GAE, Gaussian policy, entropy bonus 0.01",
    )
)
PPO_ERA_SPEC = register_algorithm(
    AlgorithmSpec(
        "ppo-era",
        PPOERAConfig,
        PPOERA,
        "on-policy",
        "PPO-ERA: the ERA Gaussian head, no entropy bonus",
        baseline=PPO_SPEC.name,
    )
)
OBAC_SPEC = register_algorithm(
    AlgorithmSpec(
        "obac",
        OBACConfig,
        OBAC,
        "off-policy",
        "OBAC: SAC plus an in-sample offline value and a gated behaviour constraint",
    )
)
OBAC_ERA_SPEC = register_algorithm(
    AlgorithmSpec(
        "obac-era",
        OBACERAConfig,
        OBACERA,
        "off-policy",
        "OBAC-ERA: OBAC with the ERA head, no entropy term, no alpha",
        baseline=OBAC_SPEC.name,
    )
)
FASTTD3_SPEC = register_algorithm(
    AlgorithmSpec(
        "fasttd3",
        FastTD3Config,
        FastTD3,
        "parallel off-policy",
        "FastTD3: TD3 with a categorical critic on --num-envs parallel envs, per-env noise",
    )
)
FASTSAC_SPEC = register_algorithm(
    AlgorithmSpec(
        "fastsac",
        FastSACConfig,
        FastSAC,
        "parallel off-policy",
        "FastSAC: the FastTD3 learner with SAC's entropy objective and learned alpha",
    )
)
FASTSAC_ERA_SPEC = register_algorithm(
    AlgorithmSpec(
        "fastsac-era",
        FastSACERAConfig,
        FastSACERA,
        "parallel off-policy",
        "FastSAC-ERA: FastTD3 with the ERA head on the actor, its noise kept, no delayed update",
        baseline=FASTTD3_SPEC.name,
    )
)
TDMPC2_SPEC = register_algorithm(
    AlgorithmSpec(
        "tdmpc2",
        TDMPC2Config,
        TDMPC2,
        "model-based",
        "TD-MPC2: latent world model, MPPI seeded by a tanh-Gaussian prior (--set mpc=false: no MPPI)",
    )
)
TDMPC2_ERA_SPEC = register_algorithm(
    AlgorithmSpec(
        "tdmpc2-era",
        TDMPC2ERAConfig,
        TDMPC2ERA,
        "model-based",
        "TD-MPC2-ERA: TD-MPC2 with the ERA head on the policy prior, no entropy term",
        baseline=TDMPC2_SPEC.name,
    )
)
