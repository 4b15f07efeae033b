r"""Policy losses of GRPO and the entropy-control baselines of the paper's Table 2.

Every loss takes per-token log-probs of the current policy ``logprobs`` (differentiable), the
behaviour policy's ``old_logprobs``, advantages (``[B]`` per response or ``[B, T]`` per token)
and the response ``mask``, and returns ``(loss, stats)``. With ERA the log-probs (old and new)
are simply those of the scaled policy (:func:`era_llm.ops.token_logprobs` with
``scale=era_scales(...).scale``), so any loss here combines with ERA (GSPO+ERA included).

With :math:`r_t = \exp(\log\pi_\theta - \log\pi_{old})` and advantage :math:`A`:

* ``grpo``: PPO's clipped surrogate, :math:`\max(-A r_t, -A\,\mathrm{clip}(r_t, 1-\epsilon_l,
  1+\epsilon_h))` with :math:`\epsilon_l=\epsilon_h=0.2`; optional dual clip ``clip_ratio_c``
  (a bound of :math:`-A c` for :math:`A<0`).
* ``clip-higher`` (DAPO, arXiv 2503.14476): the same with :math:`\epsilon_h = 0.28`.
* ``gspo`` (arXiv 2507.18071): the sequence ratio :math:`s_i = \exp(\frac1{|y_i|}\sum_t
  \log r_{i,t})`, token-wise :math:`s_{i,t} = \mathrm{sg}[s_i]\,\pi_\theta/\mathrm{sg}[\pi_\theta]`
  clipped with :math:`\epsilon_l = 3\cdot10^{-4}`, :math:`\epsilon_h = 4\cdot10^{-4}`; averaged per
  sequence then over sequences.
* ``kl-cov`` and ``clip-cov`` (Cui et al., arXiv 2505.22617): per token the centred covariance
  :math:`\mathrm{cov}_t = (\log\pi_t - \overline{\log\pi})(A_t - \bar A)` over the batch's
  tokens. KL-Cov: the unclipped :math:`-A r_t`, plus :math:`\beta\,|\log\pi_t - \log\pi_{old,t}|`
  on the ``kl_cov_ratio`` share of tokens with the largest covariance. Clip-Cov: the clipped
  surrogate, with the gradient detached on ``clip_cov_ratio`` of the tokens, drawn uniformly
  among those with covariance in ``[clip_cov_lb, clip_cov_ub]``.
* ``forking`` (Wang et al., arXiv 2506.01939): the clipped surrogate on the 20 % highest-entropy
  tokens of the batch only (``token_entropy`` required); the others contribute 0 (they still
  count in the token mean, as in the paper's code) and get no gradient.

Aggregation (``agg``): ``"token-mean"`` (DAPO: every valid token of the batch weighs the same;
the default, as in the spec) or ``"seq-mean-token-mean"`` (mean per response, then over
responses; GSPO's default).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["LOSS_DEFAULTS", "LOSS_NAMES", "aggregate", "policy_loss"]

LOSS_NAMES = ("grpo", "gspo", "clip-higher", "kl-cov", "clip-cov", "forking")

LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "grpo": {"clip_low": 0.2, "clip_high": 0.2, "clip_ratio_c": None, "agg": "token-mean"},
    "clip-higher": {"clip_low": 0.2, "clip_high": 0.28, "clip_ratio_c": None, "agg": "token-mean"},
    "gspo": {"clip_low": 3e-4, "clip_high": 4e-4, "agg": "seq-mean-token-mean"},
    "kl-cov": {"kl_cov_ratio": 2e-3, "kl_coef": 1.0, "agg": "token-mean"},
    "clip-cov": {
        "clip_low": 0.2,
        "clip_high": 0.2,
        "clip_ratio_c": None,
        "clip_cov_ratio": 2e-4,
        "clip_cov_lb": 1.0,
        "clip_cov_ub": 5.0,
        "generator": None,
        "agg": "token-mean",
    },
    "forking": {
        "clip_low": 0.2,
        "clip_high": 0.2,
        "clip_ratio_c": None,
        "forking_fraction": 0.2,
        "agg": "token-mean",
    },
}

AGG_MODES = ("token-mean", "seq-mean-token-mean")


def aggregate(values: torch.Tensor, mask: torch.Tensor, agg: str = "token-mean") -> torch.Tensor:
    """Masked mean of ``[B, T]`` values: over all valid tokens, or per response then over
    responses that have at least one token."""
    m = mask.to(values.dtype)
    if agg == "token-mean":
        return (values * m).sum() / m.sum().clamp(min=1)
    if agg == "seq-mean-token-mean":
        count = m.sum(1)
        per_seq = (values * m).sum(1) / count.clamp(min=1)
        has = (count > 0).to(values.dtype)
        return (per_seq * has).sum() / has.sum().clamp(min=1)
    raise ValueError(f"agg must be one of {AGG_MODES}, got {agg!r}")


def _clipped(
    neg_adv: torch.Tensor,
    ratio: torch.Tensor,
    clip_low: float,
    clip_high: float,
    clip_ratio_c: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO surrogate per token and where clipping is active (no gradient through ratio)."""
    unclipped = neg_adv * ratio
    clipped = neg_adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if clip_ratio_c is not None:
        # dual clip (Ye et al. 2020): for A < 0, bound the loss by -A * c
        bound = neg_adv * clip_ratio_c
        lower = (neg_adv > 0) & (loss > bound)
        loss = torch.where(lower, bound, loss)
        was_clipped = was_clipped | lower
    return loss, was_clipped


def _check(
    name: str,
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    token_entropy: torch.Tensor | None,
) -> torch.Tensor:
    if name not in LOSS_NAMES:
        raise ValueError(f"loss name must be one of {LOSS_NAMES}, got {name!r}")
    if logprobs.ndim != 2:
        raise ValueError(f"logprobs must have shape (B, T), got {tuple(logprobs.shape)}")
    shape = tuple(logprobs.shape)
    for what, t in (("old_logprobs", old_logprobs), ("mask", mask)):
        if tuple(t.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(t.shape)}")
    if advantages.shape == (shape[0],):
        advantages = advantages[:, None].expand(shape)
    elif tuple(advantages.shape) != shape:
        raise ValueError(
            f"advantages must have shape ({shape[0]},) or {shape}, got {tuple(advantages.shape)}"
        )
    if name == "forking":
        if token_entropy is None:
            raise ValueError("the forking loss needs token_entropy (B, T)")
        if tuple(token_entropy.shape) != shape:
            raise ValueError(
                f"token_entropy must have shape {shape}, got {tuple(token_entropy.shape)}"
            )
    return advantages


def policy_loss(
    name: str,
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    token_entropy: torch.Tensor | None = None,
    **hyper: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One of :data:`LOSS_NAMES`; hyper-parameters default to :data:`LOSS_DEFAULTS` [name].

    Returns:
      ``(loss, stats)``: a scalar to minimise, and detached 0-d float32 tensors (no host sync;
      :func:`era_llm.era.stats_to_floats` converts them where they are logged) ``clip_frac`` (share of valid tokens
      whose ratio was clipped or whose gradient was removed by the method), ``ratio_mean``,
      ``approx_kl`` (mean of :math:`\\log\\pi_{old}-\\log\\pi_\\theta`), ``pg_loss`` and, for
      KL-Cov/Clip-Cov/forking, ``selected_frac`` (share of tokens the method singled out).
      ``grpo``, ``clip-higher`` and ``gspo`` never wait for the device; the token selections of
      KL-Cov, Clip-Cov and forking read the number of valid tokens (their top-k size) from it.

    Example:
      >>> import torch
      >>> lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
      >>> loss, stats = policy_loss("grpo", lp, lp.detach(), torch.tensor([1.0]), torch.ones(1, 2))
      >>> round(loss.item(), 4), float(stats["clip_frac"])
      (-1.0, 0.0)
    """
    adv = _check(name, logprobs, old_logprobs, advantages, mask, token_entropy).float()
    unknown = set(hyper) - set(LOSS_DEFAULTS[name])
    if unknown:
        raise ValueError(
            f"unknown hyper-parameters for loss {name!r}: {sorted(unknown)}; "
            f"valid: {sorted(LOSS_DEFAULTS[name])}"
        )
    hp = {**LOSS_DEFAULTS[name], **hyper}
    valid = mask.bool()
    lp = logprobs.float()
    old = old_logprobs.detach().float()
    log_ratio = torch.where(valid, lp - old, 0.0)
    per_token, ratio, was_clipped, selected = _per_token_loss(
        name, hp, lp, old, log_ratio, adv, valid, token_entropy
    )
    loss = aggregate(per_token, valid, hp["agg"])
    m = valid.float()
    n = m.sum().clamp(min=1)
    n_all = mask.bool().float().sum().clamp(min=1)
    values = [
        (was_clipped.float() * m).sum() / n,
        (ratio.detach() * m).sum() / n,
        (-log_ratio.detach() * m).sum() / n,
        loss.detach(),
    ]
    names = ["clip_frac", "ratio_mean", "approx_kl", "pg_loss"]
    if selected is not None:
        values.append((selected & mask.bool()).float().sum() / n_all)
        names.append("selected_frac")
    return loss, dict(zip(names, torch.stack(values).unbind(), strict=True))


def _per_token_loss(
    name: str,
    hp: dict[str, Any],
    lp: torch.Tensor,
    old: torch.Tensor,
    log_ratio: torch.Tensor,
    adv: torch.Tensor,
    valid: torch.Tensor,
    token_entropy: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(per_token, ratio, was_clipped, selected)`` of loss ``name`` (``selected``: the tokens
    KL-Cov, Clip-Cov or forking singled out, else None)."""
    m = valid.float()
    selected: torch.Tensor | None = None

    if name == "gspo":
        count = m.sum(1, keepdim=True).clamp(min=1)
        seq_log_ratio = (log_ratio * m).sum(1, keepdim=True) / count
        # value: the sequence ratio; gradient: that of the token's own log-prob (GSPO-token)
        log_s = seq_log_ratio.detach() + lp - lp.detach()
        ratio = torch.exp(torch.clamp(log_s, max=20.0))
        per_token, was_clipped = _clipped(-adv, ratio, hp["clip_low"], hp["clip_high"], None)
    elif name == "kl-cov":
        ratio = torch.exp(log_ratio)
        per_token = -adv * ratio
        selected = _top_cov(lp, adv, valid, hp["kl_cov_ratio"])
        per_token = per_token + torch.where(selected, hp["kl_coef"] * (lp - old).abs(), 0.0)
        was_clipped = selected
    else:
        ratio = torch.exp(log_ratio)
        clip_low, clip_high, c = hp["clip_low"], hp["clip_high"], hp["clip_ratio_c"]
        per_token, was_clipped = _clipped(-adv, ratio, clip_low, clip_high, c)
        if name == "clip-cov":
            selected = _random_cov(
                lp,
                adv,
                valid,
                hp["clip_cov_ratio"],
                hp["clip_cov_lb"],
                hp["clip_cov_ub"],
                hp["generator"],
            )
            per_token = torch.where(selected, per_token.detach(), per_token)
            was_clipped = was_clipped | selected
        elif name == "forking":
            assert token_entropy is not None  # _check requires it for this loss
            selected = _forking(token_entropy, valid, hp["forking_fraction"])
            # the other tokens contribute 0 but still count in the mean (as the paper's verl code
            # and TRL's top_entropy_quantile do: the loss is multiplied by the token mask)
            per_token = torch.where(selected, per_token, per_token.detach() * 0)
    return per_token, ratio, was_clipped, selected


def _centred_cov(lp: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    m = valid.float()
    n = m.sum().clamp(min=1)
    lp_d = lp.detach()
    mean_lp = (lp_d * m).sum() / n
    mean_adv = (adv * m).sum() / n
    return (lp_d - mean_lp) * (adv - mean_adv)


def _top_cov(
    lp: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, ratio: float
) -> torch.Tensor:
    """The ``ratio`` share (at least one token when ratio > 0) of valid tokens with the largest
    centred covariance."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"kl_cov_ratio must be in [0, 1], got {ratio}")
    n_valid = int(valid.sum())
    k = 0 if ratio == 0 else max(1, int(ratio * n_valid))
    sel = torch.zeros_like(valid)
    if k == 0 or n_valid == 0:
        return sel
    cov = torch.where(valid, _centred_cov(lp, adv, valid), -torch.inf).reshape(-1)
    sel.view(-1)[torch.topk(cov, min(k, n_valid)).indices] = True
    return sel


def _random_cov(
    lp: torch.Tensor,
    adv: torch.Tensor,
    valid: torch.Tensor,
    ratio: float,
    lb: float,
    ub: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``ratio * n_valid`` tokens (at least one when ratio > 0) drawn uniformly among the valid
    tokens with centred covariance in ``[lb, ub]``."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"clip_cov_ratio must be in [0, 1], got {ratio}")
    if not lb < ub:
        raise ValueError(f"clip_cov_lb must be < clip_cov_ub, got {lb} and {ub}")
    cov = _centred_cov(lp, adv, valid)
    pool = (valid & (cov >= lb) & (cov <= ub)).reshape(-1).nonzero()[:, 0]
    n_valid = int(valid.sum())
    k = 0 if ratio == 0 else max(1, int(ratio * n_valid))
    sel = torch.zeros_like(valid)
    k = min(k, pool.numel())
    if k:
        pick = torch.randperm(pool.numel(), generator=generator, device="cpu")[:k]
        sel.view(-1)[pool[pick.to(pool.device)]] = True
    return sel


def _forking(token_entropy: torch.Tensor, valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """The ``fraction`` share (at least one) of valid tokens with the highest entropy."""
    if not 0 < fraction <= 1:
        raise ValueError(f"forking_fraction must be in (0, 1], got {fraction}")
    n_valid = int(valid.sum())
    sel = torch.zeros_like(valid)
    if n_valid == 0:
        return sel
    k = max(1, int(fraction * n_valid))
    ent = torch.where(valid, token_entropy.detach().float(), -torch.inf).reshape(-1)
    sel.view(-1)[torch.topk(ent, k).indices] = True
    return sel
