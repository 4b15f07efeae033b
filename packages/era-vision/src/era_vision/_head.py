"""The ERA head for timm models (paper Eq. 15, docs/paper.md §2).

A timm classifier computes ``forward_head(forward_features(x))``. ERA only changes the very
last step: the logits ``z`` become ``z' = era_core.softmax_era(z, min_entropy, ...)``, whose
softmax has entropy ``>= min_entropy`` for every input. We apply it inside ``forward_head`` of
the model itself (through a subclass made on the fly), so that:

* the parameters and ``state_dict`` keys are exactly timm's: a plain timm checkpoint loads
  into the ERA model and back;
* ``forward_features``, ``forward_head(x, pre_logits=True)``, ``reset_classifier``,
  ``get_classifier``, feature extraction and ``pretrained`` weights behave as in timm;
* every timm architecture family works without a fork, as long as its ``forward`` ends in
  ``forward_head`` (all current timm classifiers do).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, cast

import timm
import torch
from torch import nn

import era_core

__all__ = ["ERAConfig", "check_model_name", "create_model", "era_config", "unwrap", "wrap"]

_MODES = ("paper", "exact")


@dataclass(frozen=True)
class ERAConfig:
    """Settings of the ERA head: the entropy floor ``min_entropy`` (nats), ``tau`` and ``mode``."""

    min_entropy: float
    tau: float = 4.0
    mode: str = "paper"

    def check(self, num_classes: int) -> None:
        """Raise ``ValueError`` unless the floor is feasible for ``num_classes`` classes."""
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if num_classes == 0:  # classifier removed: the model returns features, no head to floor
            return
        low, high = era_core.softmax_era_bounds(num_classes, self.tau)
        if not low < self.min_entropy <= high:
            raise ValueError(
                f"min_entropy must be in ({low:.4g}, {high:.4g}] for num_classes={num_classes} "
                f"and tau={self.tau}, got {self.min_entropy}"
            )


# Submodules that some timm models run as extra classifiers beside the main head; their
# outputs are logits too and get the same floor (inception_v3 with aux_logits=True).
_AUX_HEADS = ("AuxLogits",)


def _reduce_ex(self: nn.Module, protocol: Any) -> tuple[Any, ...]:
    """Pickle an ERA module as "rebuild the generated class from its parts, then set state".

    The ``ERA<Class>`` classes are made at run time and cannot be found by name, so pickle
    (``torch.save(model)``, ``copy.deepcopy``, multiprocessing) stores the mixin and the timm
    class, both importable, and :func:`_rebuild` makes the same generated class again.
    """
    cls = type(self)
    return _rebuild, (cls.__mro__[1], cls.__mro__[2]), self.__getstate__()


def _rebuild(mixin: type, base: type) -> nn.Module:
    return cast("nn.Module", object.__new__(_era_class(base, mixin)))


class _ERAMixin:
    """Overrides of the timm head contract; mixed in front of the model's own class."""

    _era: ERAConfig
    __reduce_ex__ = _reduce_ex

    # `super()` is the timm model class this mixin is put in front of (see `_era_class`).
    def forward_head(
        self, x: torch.Tensor, *args: Any, pre_logits: bool = False, **kwargs: Any
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = super().forward_head(x, *args, pre_logits=pre_logits, **kwargs)  # pyright: ignore[reportAttributeAccessIssue]
        if pre_logits or getattr(self, "num_classes", 1) == 0:
            return out
        if isinstance(out, (tuple, list)):
            # Distilled models in distilled training (deit_*_distilled, levit, ...): the class
            # and the distillation head, each floored; their loss sees both as logits.
            return tuple(era_logits(logits, self._era) for logits in out)
        return era_logits(out, self._era)

    def reset_classifier(self, num_classes: int, *args: Any, **kwargs: Any) -> None:
        self._era.check(num_classes)
        return super().reset_classifier(num_classes, *args, **kwargs)  # pyright: ignore[reportAttributeAccessIssue]


class _ERAAuxMixin:
    """An auxiliary classifier (a submodule whose forward returns logits), floored likewise."""

    _era: ERAConfig
    __reduce_ex__ = _reduce_ex

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return era_logits(super().forward(*args, **kwargs), self._era)  # pyright: ignore[reportAttributeAccessIssue]


_SUBCLASSES: dict[tuple[type, type], type] = {}


def _era_class(cls: type, mixin: type = _ERAMixin) -> type:
    if issubclass(cls, mixin):
        return cls
    if (mixin, cls) not in _SUBCLASSES:
        name = f"ERA{cls.__name__}"
        namespace = {"__module__": __name__, "__qualname__": name}
        _SUBCLASSES[mixin, cls] = type(name, (mixin, cls), namespace)
    return _SUBCLASSES[mixin, cls]


def era_logits(logits: torch.Tensor, config: ERAConfig) -> torch.Tensor:
    """``softmax_era`` of ``logits`` computed in float32 (autocast off), returned in float32.

    Half-precision logits under AMP would round the log-domain outputs coarsely; float32 is
    what cross-entropy uses under autocast anyway. Logits that overflowed to ``+-inf`` (a
    float16 classifier) give the one-hot limit: finite, with the floor held.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return era_core.softmax_era(
            logits.float(), config.min_entropy, tau=config.tau, mode=config.mode
        )


def _aux_heads(model: nn.Module) -> list[nn.Module]:
    return [m for name in _AUX_HEADS if isinstance(m := getattr(model, name, None), nn.Module)]


def wrap(
    model: nn.Module, min_entropy: float, *, tau: float = 4.0, mode: str = "paper"
) -> nn.Module:
    """Put the ERA head on an existing timm model, in place; returns the same object.

    The model's class becomes a subclass ``ERA<Class>`` whose ``forward_head`` applies
    :func:`era_core.softmax_era` to the logits; parameters, buffers and ``state_dict`` keys are
    unchanged. Wrapping an ERA model again only replaces its settings. Every classifier output
    is floored: both heads of a distilled model in distilled training (a tuple), and auxiliary
    classifiers (``inception_v3``'s ``AuxLogits``). Wrapped models pickle
    (``torch.save(model)``, ``copy.deepcopy``) and load back as ERA models.

    Raises:
      ValueError: ``min_entropy`` infeasible for the model's number of classes (the message
        gives the range), or an unknown ``mode``.
      TypeError: the model has no timm head contract (``forward_head``/``num_classes``).
    """
    if not hasattr(model, "forward_head") or not hasattr(model, "num_classes"):
        raise TypeError(
            f"model must follow timm's head contract (forward_head, num_classes); got {type(model).__name__}"
        )
    config = ERAConfig(float(min_entropy), float(tau), mode)
    config.check(cast("int", model.num_classes))
    model.__class__ = _era_class(type(model))
    cast("_ERAMixin", model)._era = config
    for aux in _aux_heads(model):
        aux.__class__ = _era_class(type(aux), _ERAAuxMixin)
        cast("_ERAAuxMixin", aux)._era = config
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """Remove the ERA head, in place (the plain timm model, same parameters)."""
    if isinstance(model, _ERAMixin):
        for module in (model, *_aux_heads(model)):
            if isinstance(module, (_ERAMixin, _ERAAuxMixin)):
                module.__class__ = type(module).__mro__[2]
                del module._era
    return model


def era_config(model: nn.Module) -> ERAConfig | None:
    """The ERA settings of a wrapped model, or ``None`` for a plain one."""
    return getattr(model, "_era", None) if isinstance(model, _ERAMixin) else None


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a timm model (or a hub / local-dir name); the
    message suggests close timm names."""
    if timm.is_model(name) or _is_hub_name(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
    raise ValueError(f"unknown timm model name {name!r}{hint}")


def create_model(
    name: str,
    *,
    num_classes: int,
    min_entropy: float | None,
    tau: float = 4.0,
    mode: str = "paper",
    pretrained: bool = False,
    img_size: int | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """``timm.create_model`` with the ERA head: outputs are the ERA logits ``z'``.

    Use them exactly like logits: ``cross_entropy`` (label smoothing, mixup targets) applies
    unchanged. The floor and the name are checked before the model is built.
    ``min_entropy=None`` returns the plain timm model (no head), for baselines built the same
    way. ``img_size`` is passed to the models that take it (ViTs and the like); models that
    take any input size (CNNs) are built without it.

    Example:
      >>> import torch, era_vision
      >>> model = era_vision.create_model("resnet18", num_classes=10, min_entropy=0.6)
      >>> z = model(50 * torch.randn(2, 3, 32, 32))
      >>> bool((era_core.categorical_entropy(z) >= 0.6).all())
      True
    """
    if min_entropy is not None:
        ERAConfig(float(min_entropy), float(tau), mode).check(num_classes)
    check_model_name(name)
    kwargs = {"pretrained": pretrained, "num_classes": num_classes, **timm_kwargs}
    if img_size is None:
        model = timm.create_model(name, **kwargs)
    else:
        try:
            model = timm.create_model(name, img_size=img_size, **kwargs)
        except TypeError as error:  # the model has no img_size argument: it takes any size
            if "img_size" not in str(error):
                raise
            model = timm.create_model(name, **kwargs)
    if timm_kwargs.get("features_only") or min_entropy is None:
        # timm's feature-map extractor has no classifier, so there is no head to floor: it is
        # returned exactly as timm builds it (as ``reset_classifier(0)`` returns features).
        return model
    return wrap(model, min_entropy, tau=tau, mode=mode)


def _is_hub_name(name: str) -> bool:
    return name.startswith(("hf-hub:", "hf_hub:", "local-dir:"))
