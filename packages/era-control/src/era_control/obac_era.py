"""OBAC-ERA: OBAC with the entropy constraint moved into the policy's last activation.

The same offline critic, expectile value and gated behaviour constraint as
:mod:`era_control.obac`, over SAC-ERA instead of SAC: the policy is SAC-ERA's bounded ERA head
(a truncated normal with location ``tanh(mu)`` by default), whose Gaussian entropy is
``H0 + delta`` in every state by construction (``era_core.gaussian_log_std``, Eq. 11), and
there is **no entropy term and no temperature alpha** anywhere:

* online critic target ``r + gamma m min(Q1', Q2')(s', a')``, ``a' ~ pi(.|s')``;
* actor loss ``-E[min(Q1, Q2)(s, a_pi)] - lambda E[g * clip(log pi(a|s), lo, hi)]`` with the
  buffer's actions ``a`` and OBAC's gate ``g``; ``log pi`` is the truncated normal's density
  (or the tanh-Gaussian's with ``head="tanh"``).

Defaults: SAC-ERA's (the ERA paper: OBAC shares SAC's base hyper-parameters) and OBAC's own
(:class:`~era_control.obac.OfflineBoostConfig`).
"""

from __future__ import annotations

import dataclasses

from .obac import OfflineBoostAgent, OfflineBoostConfig
from .sac_era import SACERA, SACERAConfig


@dataclasses.dataclass(frozen=True)
class OBACERAConfig(OfflineBoostConfig, SACERAConfig):
    """OBAC-ERA: SAC-ERA's hyper-parameters (its ERA head's included) plus OBAC's."""


class OBACERA(OfflineBoostAgent, SACERA):
    """OBAC-ERA: SAC-ERA's ERA head and losses with OBAC's offline value and constraint."""
