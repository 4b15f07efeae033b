"""era_vision — Entropy Regularizing Activation for image classifiers (any timm model).

``create_model(name, num_classes=..., min_entropy=...)`` is ``timm.create_model`` whose outputs
are ERA logits (``min_entropy=None``: the plain timm model); ``wrap(model, min_entropy)`` does
the same to an existing timm model; ``check_model_name(name)`` is the name check they share.
"""

from importlib import metadata as _metadata

from . import metrics
from ._head import ERAConfig, check_model_name, create_model, era_config, era_logits, unwrap, wrap
from .metrics import ClassificationMetrics

__version__ = _metadata.version("era-vision")

__all__ = [
    "ClassificationMetrics",
    "ERAConfig",
    "check_model_name",
    "create_model",
    "era_config",
    "era_logits",
    "metrics",
    "unwrap",
    "wrap",
]
