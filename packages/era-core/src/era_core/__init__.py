"""era_core — Entropy Regularizing Activation, the math (arXiv 2510.08549).

Pure functions on any Python array-API array (NumPy, PyTorch, JAX, ...): they return the
caller's array type, device and dtype and run inside ``jax.jit``/``jax.grad``/``jax.vmap``
and under ``torch.compile``. No deep-learning framework is imported by ``import era_core``.

* Continuous (docs/paper.md §1): :func:`gaussian_log_std` (Eq. 11), :func:`gaussian_entropy`,
  :func:`truncated_gaussian_entropy` and :func:`tanh_gaussian_entropy` (Eqs. 4-5),
  :func:`compensation_loss` (Eq. 12), :func:`batch_gaussian_log_std` (App. C.1.2).
* Discrete (docs/paper.md §2): :func:`softmax_era` (Eq. 15), :func:`categorical_entropy`.
* LLM RL (docs/paper.md §3): :func:`response_entropy`, :func:`logit_scale` (Eq. 16),
  :func:`scale_advantages` (Eq. 17).
"""

from importlib import metadata as _metadata

from ._bounded import (
    tanh_gaussian_entropy,
    tanh_gaussian_entropy_from_noise,
    tanh_log_det_jacobian,
    truncated_gaussian_entropy,
)
from ._categorical import categorical_entropy
from ._compensation import compensation_loss, compensation_value
from ._gaussian import (
    GAUSSIAN_ENTROPY_PER_DIM,
    batch_gaussian_log_std,
    gaussian_entropy,
    gaussian_log_std,
    max_gaussian_entropy,
    update_running_log_partition,
)
from ._response_scale import logit_scale, response_entropy, scale_advantages
from ._softmax_era import softmax_era, softmax_era_bounds

__version__ = _metadata.version("era-core")

__all__ = [
    "GAUSSIAN_ENTROPY_PER_DIM",
    "batch_gaussian_log_std",
    "categorical_entropy",
    "compensation_loss",
    "compensation_value",
    "gaussian_entropy",
    "gaussian_log_std",
    "logit_scale",
    "max_gaussian_entropy",
    "response_entropy",
    "scale_advantages",
    "softmax_era",
    "softmax_era_bounds",
    "tanh_gaussian_entropy",
    "tanh_gaussian_entropy_from_noise",
    "tanh_log_det_jacobian",
    "truncated_gaussian_entropy",
    "update_running_log_partition",
]
