r"""Adaptive ERA for GRPO: per-response logit scales from the entropy band (docs/paper.md §3, Eq. 16-17).

For response ``i`` with token entropies :math:`H_{i,t}` of the **unmodified** policy:

.. math::

    \bar H_i = \text{mean of the top } \lfloor 0.2\,n_i \rfloor \text{ (at least 1) of } H_{i,t},
    \qquad
    c_i = \begin{cases} k & \bar H_i < \omega_{low},\ A_i > 0\\
                        1/k & \bar H_i > \omega_{high},\ A_i > 0\\
                        1 & \text{otherwise}\end{cases},
    \qquad A'_i = A_i / c_i \text{ (optional)}

The update then uses :math:`\log\pi'(a) = \log\mathrm{softmax}(c_i z)[a]` for every token of
response ``i`` (old log-probs recomputed the same way): see :func:`era_llm.ops.token_logprobs`
with ``scale=res.scale``. The arithmetic comes from ``era_core`` (`response_entropy`,
`logit_scale`, `scale_advantages`); this module adds the configuration and the statistics the
paper logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

import era_core

__all__ = ["ERAConfig", "ERAResult", "entropy_split", "era_scales", "stats_to_floats"]


@dataclass(frozen=True)
class ERAConfig:
    """ERA's hyper-parameters; defaults are the paper's (docs/paper.md §3).

    Attributes:
      low, high: the response-entropy band :math:`[\\omega_{low}, \\omega_{high}]` (nats),
        ``0 <= low < high``.
      k: the logit factor, ``k > 1`` (scales are ``k``, ``1`` or ``1/k``).
      topk_fraction: share of each response's highest token entropies averaged into its
        statistic, in ``(0, 1]`` (the paper: 0.2).
      adv_scale: divide advantages by the scale (Eq. 17; off in the paper).
      logit_topk: keep only this many largest logits when computing the update's log-probs
        (the paper's first stage uses 20), or ``None`` for the full softmax.
    """

    low: float = 0.45
    high: float = 3.0
    k: float = 2.0
    topk_fraction: float = 0.2
    adv_scale: bool = False
    logit_topk: int | None = None

    def __post_init__(self):
        _check({f.name: getattr(self, f.name) for f in fields(self)}, {})

    @classmethod
    def checked(cls, labels: Mapping[str, str], **values: Any) -> ERAConfig:
        """``ERAConfig(**values)``, whose ValueError names a bad field by ``labels[field]``.

        ``labels`` maps field names to what the caller's user typed, e.g. ``{"low":
        "--era-low"}``: the message then reads ``--era-low 3.0 must be < --era-high 0.45 ...``.
        Fields without a label are named ``ERAConfig.<field>``.

        >>> ERAConfig.checked({"k": "--era-k"}, k=3.0).k
        3.0
        """
        _check({**{f.name: f.default for f in fields(cls)}, **values}, labels)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def _check(values: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """Raise ValueError naming the field (or its label), the value and the valid range."""

    def arg(name: str) -> str:  # "--era-low 3.0" with a label, else "ERAConfig.low"
        return f"{labels[name]} {values[name]}" if name in labels else f"ERAConfig.{name}"

    def got(*names: str) -> str:  # a labelled argument already shows its value
        shown = [n for n in names if n not in labels]
        if len(shown) == 1 and len(names) == 1:
            return f", got {values[shown[0]]!r}"
        return ", got " + ", ".join(f"{n}={values[n]!r}" for n in shown) if shown else ""

    for name in ("low", "high", "k", "topk_fraction"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{arg(name)} must be a number{got(name)}")
        if not math.isfinite(value):
            raise ValueError(f"{arg(name)} must be finite{got(name)}")
    low, high = values["low"], values["high"]
    if low < 0:
        raise ValueError(f"{arg('low')} must be >= 0 (an entropy){got('low')}")
    if not low < high:
        raise ValueError(
            f"{arg('low')} must be < {arg('high')} (an entropy band needs low < high)"
            f"{got('low', 'high')}"
        )
    if not values["k"] > 1:
        raise ValueError(f"{arg('k')} must be > 1 (the scales are k, 1 and 1/k){got('k')}")
    if not 0 < values["topk_fraction"] <= 1:
        raise ValueError(f"{arg('topk_fraction')} must be in (0, 1]{got('topk_fraction')}")
    if not isinstance(values["adv_scale"], bool):
        raise ValueError(f"{arg('adv_scale')} must be a bool{got('adv_scale')}")
    lt = values["logit_topk"]
    if lt is not None and (isinstance(lt, bool) or not isinstance(lt, int) or lt < 1):
        raise ValueError(f"{arg('logit_topk')} must be None or an int >= 1{got('logit_topk')}")


@dataclass(frozen=True)
class ERAResult:
    """Output of :func:`era_scales`.

    Attributes:
      scale: ``[B]`` float32 factors :math:`c_i \\in \\{k, 1, 1/k\\}`.
      advantages: ``[B]`` advantages, divided by ``scale`` when ``adv_scale`` is on.
      response_entropy: ``[B]`` the banded statistic :math:`\\bar H_i`.
      stats: 0-d float32 tensors for logging (on the input's device; convert them once, where
        they are logged, e.g. with :func:`stats_to_floats`): ``frac_below``, ``frac_inside``, ``frac_above`` (shares of
        responses with at least one token), ``top_entropy_mean`` / ``rest_entropy_mean`` (token
        means over the top-20 % and the other 80 % of each response's tokens),
        ``response_entropy_mean``, ``token_entropy_mean``, ``scale_mean``, ``frac_sharpen``,
        ``frac_flatten``.
    """

    scale: torch.Tensor
    advantages: torch.Tensor
    response_entropy: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def entropy_split(
    token_entropy: torch.Tensor, mask: torch.Tensor, frac: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per response: (sum, count) of its top-``frac`` token entropies and of the rest.

    The top set of response ``i`` is its ``max(1, floor(frac * n_i))`` largest entropies, as in
    :func:`era_core.response_entropy`. Returns four ``[B]`` float32 tensors
    ``(top_sum, top_count, rest_sum, rest_count)``.
    """
    valid = mask.bool()
    ent = token_entropy.detach().float()
    ranked = torch.sort(torch.where(valid, ent, -math.inf), dim=1, descending=True).values
    count = valid.sum(1).float()
    k = torch.clamp(torch.floor(frac * count), min=1.0)
    pos = torch.arange(ent.shape[1], device=ent.device, dtype=torch.float32)
    take = (pos[None] < k[:, None]) & (pos[None] < count[:, None])
    top_sum = torch.where(take, ranked, 0.0).sum(1)
    top_count = take.sum(1).float()
    rest_sum = torch.where(valid, ent, 0.0).sum(1) - top_sum
    return top_sum, top_count, rest_sum, count - top_count


def era_scales(
    token_entropy: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    cfg: ERAConfig | None = None,
) -> ERAResult:
    """Per-response ERA scales, adjusted advantages and the band statistics (docs/paper.md §3).

    Args:
      token_entropy: ``[B, T]`` entropies of the unmodified policy (e.g. ``token_logprobs(...)
        .entropy``; detached here).
      mask: ``[B, T]`` response mask (prompt and padding 0).
      advantages: ``[B]`` response advantages, or ``[B, T]`` token advantages that are constant
        over each response (GRPO's): the value at the response's first masked token is used.
        Floating point (an integer tensor would have rounded ``0 < A < 1`` to 0, which the sign
        test ``A > 0`` then never scales; it raises ``ValueError``).
      cfg: :class:`ERAConfig` (defaults: the paper's).

    Returns:
      :class:`ERAResult`. ``advantages`` keeps the input's shape.

    Example:
      >>> import torch
      >>> ent = torch.tensor([[0.1, 0.2, 0.1, 0.0, 0.1], [5.0, 4.0, 1.0, 0.0, 0.0]])
      >>> res = era_scales(ent, torch.ones(2, 5), torch.tensor([1.0, 1.0]))
      >>> res.scale.tolist(), float(res.stats["frac_below"]), float(res.stats["frac_above"])
      ([2.0, 0.5], 0.5, 0.5)
    """
    cfg = ERAConfig() if cfg is None else cfg
    if token_entropy.ndim != 2 or mask.shape != token_entropy.shape:
        raise ValueError(
            "token_entropy and mask must both have shape (B, T), got "
            f"{tuple(token_entropy.shape)} and {tuple(mask.shape)}"
        )
    batch = token_entropy.shape[0]
    valid = mask.bool()
    if not advantages.is_floating_point():
        raise ValueError(
            f"advantages must be a floating-point tensor (0 < A < 1 must stay > 0), got dtype "
            f"{advantages.dtype}"
        )
    if advantages.shape == token_entropy.shape:
        first = torch.argmax(valid.to(torch.int8), dim=1)
        adv_resp = advantages.gather(1, first[:, None])[:, 0]
    elif advantages.shape == (batch,):
        adv_resp = advantages
    else:
        raise ValueError(
            f"advantages must have shape ({batch},) or {tuple(token_entropy.shape)}, "
            f"got {tuple(advantages.shape)}"
        )
    ent = token_entropy.detach().float()
    h = era_core.response_entropy(ent, valid, frac=cfg.topk_fraction)
    scale = era_core.logit_scale(
        h, adv_resp.detach().float(), low=cfg.low, high=cfg.high, k=cfg.k
    ).float()
    scale = torch.where(valid.any(1), scale, 1.0)  # a response without tokens keeps c = 1
    if cfg.adv_scale:
        shaped = scale if advantages.ndim == 1 else scale[:, None].expand(advantages.shape)
        new_adv = era_core.scale_advantages(advantages, shaped.to(advantages.dtype))
    else:
        new_adv = advantages
    return ERAResult(scale, new_adv, h, _stats(ent, valid, h, scale, cfg))


def _stats(
    ent: torch.Tensor, valid: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, cfg: ERAConfig
) -> dict[str, torch.Tensor]:
    has = valid.any(1)
    n_resp = has.sum().clamp(min=1)
    top_sum, top_cnt, rest_sum, rest_cnt = entropy_split(ent, valid, cfg.topk_fraction)
    below = has & (h < cfg.low)
    above = has & (h > cfg.high)
    inside = has & ~below & ~above
    n_tok = valid.sum().clamp(min=1)
    values = torch.stack(
        [
            below.sum() / n_resp,
            inside.sum() / n_resp,
            above.sum() / n_resp,
            top_sum.sum() / top_cnt.sum().clamp(min=1),
            rest_sum.sum() / rest_cnt.sum().clamp(min=1),
            torch.where(has, h, 0.0).sum() / n_resp,
            torch.where(valid, ent, 0.0).sum() / n_tok,
            torch.where(has, scale, 0.0).sum() / n_resp,
            (has & (scale > 1)).sum() / n_resp,
            (has & (scale < 1)).sum() / n_resp,
        ]
    )
    names = (
        "frac_below",
        "frac_inside",
        "frac_above",
        "top_entropy_mean",
        "rest_entropy_mean",
        "response_entropy_mean",
        "token_entropy_mean",
        "scale_mean",
        "frac_sharpen",
        "frac_flatten",
    )
    return dict(zip(names, values.unbind(), strict=True))


def stats_to_floats(stats: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Python floats of a stats dict of 0-d tensors (`ERAResult.stats`, `policy_loss`'s), read
    from the device in one transfer: call it once, where the metrics are logged.

    >>> stats_to_floats({"a": torch.tensor(0.5), "b": torch.tensor(2.0)})
    {'a': 0.5, 'b': 2.0}
    """
    if not stats:
        return {}
    values = [torch.as_tensor(v, dtype=torch.float32).detach() for v in stats.values()]
    device = values[0].device
    return dict(zip(stats, torch.stack([v.to(device) for v in values]).tolist(), strict=True))
