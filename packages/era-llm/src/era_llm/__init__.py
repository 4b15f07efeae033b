"""era_llm: adaptive ERA for LLM reinforcement learning (docs/paper.md §3).

* `era_llm.ops`: chunked per-token log-probs and entropies under a per-response logit scale.
* `era_llm.era`: the ERA band, per-response scales and logged statistics.
* `era_llm.losses`: GRPO, GSPO, clip-higher, KL-Cov, Clip-Cov and forking-token policy losses.
* `era_llm.advantages`: GRPO's group-normalised advantages and dynamic sampling.
* `era_llm.entropy_bonus`: the adaptive entropy-bonus baseline (a coefficient state and its
  update).
* `era_llm.rollout`: sampling responses with transformers or vLLM (imported only when used).
* `era_llm.integrations.trl` / `era_llm.integrations.verl`: ERA inside TRL and verl.
"""

from importlib import metadata as _metadata

from era_llm.era import ERAConfig, ERAResult, era_scales
from era_llm.losses import LOSS_NAMES, policy_loss
from era_llm.ops import TokenStats, token_logprobs, token_logprobs_from_hidden

__version__ = _metadata.version("era-llm")

__all__ = [
    "LOSS_NAMES",
    "ERAConfig",
    "ERAResult",
    "TokenStats",
    "__version__",
    "era_scales",
    "policy_loss",
    "token_logprobs",
    "token_logprobs_from_hidden",
]
