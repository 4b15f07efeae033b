r"""The public entry points, :func:`token_logprobs` and :func:`token_logprobs_from_hidden`, and
the argument checks they share."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from era_llm.ops._chunks import default_chunk_size, make_plan
from era_llm.ops._function import ChunkedLogprobs, Request
from era_llm.ops._sources import HiddenRows, LogitRows, RowSource
from era_llm.ops._strategy import ChunkKernels


@dataclass(frozen=True)
class TokenStats:
    """Result of :func:`token_logprobs` / :func:`token_logprobs_from_hidden`.

    Attributes:
      logprobs: ``[B, T]`` float32 log-probs of the labels under the scaled (and, with ``topk``,
        filtered) policy; differentiable; 0 where ``mask`` is 0.
      entropy: ``[B, T]`` float32 entropy of the unscaled full softmax (detached), or ``None``
        with ``return_entropy=False``; 0 where ``mask`` is 0.
      scaled_entropy: ``[B, T]`` float32 entropy of the scaled (and filtered: over the ``k``
        largest logits) distribution (detached), or ``None`` unless
        ``return_scaled_entropy=True``.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None
    scaled_entropy: torch.Tensor | None = None


class _Checked(NamedTuple):
    labels: torch.Tensor  # [B*T] int64, 0 where masked out
    mask: torch.Tensor  # [B, T] bool
    scales: list[float] | None  # one per response; None when every scale is 1
    scale_rows: torch.Tensor | None  # [B*T, 1] float32 per-token scales; None without a scale
    chunk_size: int


def _check_labels_and_mask(
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    shape: tuple[int, int],
    vocab: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    if labels.shape != shape:
        raise ValueError(f"labels must have shape {shape}, got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be int64 or int32, got {labels.dtype}")
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool, device=device)
    else:
        if mask.shape != shape:
            raise ValueError(f"mask must have shape {shape}, got {tuple(mask.shape)}")
        mask = mask.to(device=device, dtype=torch.bool)
    labels = labels.to(device=device, dtype=torch.int64)
    bad = mask & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        raise ValueError(
            f"labels at masked-in positions must be in [0, {vocab}), found {labels[bad][0].item()}"
        )
    return torch.where(mask, labels, 0), mask


def _check_scale(
    scale: float | torch.Tensor | None, batch: int, device: torch.device
) -> torch.Tensor | None:
    """``[B]`` float32 scales (validated), or ``None`` for ``scale=None``."""
    if scale is None:
        return None
    if isinstance(scale, torch.Tensor):
        scales = scale.detach().to(device=device, dtype=torch.float32)
        if scales.ndim == 0:
            scales = scales.expand(batch)
        if scales.shape != (batch,):
            raise ValueError(
                f"scale must be a float or have shape ({batch},), got {tuple(scales.shape)}"
            )
        return scales
    return torch.full((batch,), float(scale), dtype=torch.float32, device=device)


def _check(
    shape: tuple[int, int],
    labels: torch.Tensor,
    scale: float | torch.Tensor | None,
    topk: int | None,
    mask: torch.Tensor | None,
    chunk_size: int | None,
    device: torch.device,
    vocab: int,
) -> _Checked:
    batch, seq_len = shape
    labels, mask = _check_labels_and_mask(labels, mask, (batch, seq_len), vocab, device)
    if topk is not None:
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= vocab:
            raise ValueError(f"topk must be an int in [1, {vocab}], got {topk!r}")
    if chunk_size is None:
        chunk_size = default_chunk_size(vocab, device)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    per_response = _check_scale(scale, batch, device)
    scales = scale_rows = None
    if per_response is not None:
        scales = per_response.tolist()
        if not all(math.isfinite(v) and v > 0 for v in scales):
            raise ValueError(f"scale must be finite and > 0, got {scales}")
        if all(v == 1.0 for v in scales):
            scales = None
        scale_rows = per_response.repeat_interleave(seq_len)[:, None]
    return _Checked(labels.reshape(-1), mask, scales, scale_rows, chunk_size)


def _inv_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    return 1.0 / t


def _kernels(compile: bool) -> ChunkKernels:
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be a bool, got {compile!r}")
    return ChunkKernels(compiled=compile)


def _run(
    source: Callable[..., RowSource],
    rows: torch.Tensor,
    checked: _Checked,
    *inputs: torch.Tensor | None,
    **request: Any,
) -> TokenStats:
    """Plan the chunks over ``rows`` (the ``[B, T, X]`` input read row by row) and apply."""
    plan = make_plan(rows, checked.mask, checked.scales, checked.chunk_size)
    req = Request(source=source, plan=plan, **request)
    logprobs, entropy, scaled_entropy = ChunkedLogprobs.apply(
        req, checked.labels, checked.mask, checked.scale_rows, *inputs
    )
    return TokenStats(logprobs, entropy, scaled_entropy)


def token_logprobs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    scale: float | torch.Tensor | None = None,
    topk: int | None = None,
    mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    temperature: float = 1.0,
    return_entropy: bool = True,
    return_scaled_entropy: bool = False,
    compile: bool = False,
) -> TokenStats:
    """Log-probs of ``labels`` under ``softmax(scale * logits)`` and unscaled entropies, chunked.

    Args:
      logits: ``[B, T, V]`` float tensor of any float dtype (bf16 fine); need not be
        contiguous (``logits[:, :-1]`` is read in place).
      labels: ``[B, T]`` int64 token ids; values at masked-out positions are ignored (may be
        -100 or padding).
      scale: ``None`` (1), a positive float, or a ``[B]`` tensor: one scale per response,
        ERA's :math:`c_b` (a temperature :math:`1/c_b`). Treated as a constant (no gradient).
      topk: keep only the ``topk`` largest logits per token before normalising (see the module
        docstring for labels outside them); ``None`` for the full softmax.
      mask: ``[B, T]`` bool/0-1 response mask; ``None`` means every position.
      chunk_size: rows per chunk (default :func:`default_chunk_size`: ~4M values on CPU, ~64M
        on GPU).
      temperature: the sampling temperature :math:`\tau`: every logit is first divided by it
        (frameworks score the policy they sample from, ``softmax(z / tau)``); ``scale`` then
        multiplies, so the log-probs are those of ``softmax(scale * z / tau)`` and ``entropy``
        is that of ``softmax(z / tau)``, the sampling policy.
      return_entropy: also return the unscaled full-softmax entropy (ERA's statistic).
      return_scaled_entropy: also return the entropy of the scaled (filtered) distribution.
      compile: run each chunk's forward and backward through ``torch.compile`` (fused
        kernels; the first call compiles for some seconds). Not used with ``topk``.

    Returns:
      :class:`TokenStats`; ``logprobs`` is differentiable w.r.t. ``logits``.

    Example:
      >>> import torch
      >>> logits = torch.randn(2, 5, 11, dtype=torch.bfloat16)
      >>> labels = torch.randint(0, 11, (2, 5))
      >>> out = token_logprobs(logits, labels, scale=torch.tensor([2.0, 0.5]))
      >>> ref = torch.log_softmax(logits.double() * torch.tensor([2.0, 0.5]).double()[:, None, None], -1)
      >>> bool(torch.allclose(out.logprobs.double(), ref.gather(2, labels[..., None])[..., 0], atol=1e-5))
      True
    """
    if logits.ndim != 3 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a float [B, T, V] tensor, got {tuple(logits.shape)} {logits.dtype}"
        )
    batch, seq_len, vocab = logits.shape
    checked = _check((batch, seq_len), labels, scale, topk, mask, chunk_size, logits.device, vocab)
    return _run(
        LogitRows,
        logits,
        checked,
        logits,
        kernels=_kernels(compile),
        topk=topk,
        inv_temperature=_inv_temperature(temperature),
        entropy=return_entropy,
        scaled_entropy=return_scaled_entropy,
    )


def token_logprobs_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    scale: float | torch.Tensor | None = None,
    topk: int | None = None,
    mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    temperature: float = 1.0,
    return_entropy: bool = True,
    return_scaled_entropy: bool = False,
    compile: bool = False,
    backward_context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> TokenStats:
    """As :func:`token_logprobs` with ``logits = hidden @ weight.T (+ bias)``, never materialised.

    Each chunk of rows is projected onto the vocabulary (in the inputs' dtype, as the model's
    ``lm_head`` would), used and dropped; backward recomputes it and accumulates the weight
    gradient in float32. Gradients flow to ``hidden``, ``weight`` and ``bias``.

    Args:
      hidden: ``[B, T, D]`` final hidden states (after the final norm).
      weight: ``[V, D]`` output embedding (``lm_head.weight``).
      bias: optional ``[V]``.
      backward_context: a context-manager factory entered around the backward's recomputation
        of the projection, for a head whose weight is only materialised inside one (DeepSpeed
        ZeRO-3's gather; the caller holds the same context around this call).
      Other arguments: as :func:`token_logprobs`.

    Example:
      >>> import torch
      >>> h, w = torch.randn(2, 4, 8), torch.randn(50, 8)
      >>> labels = torch.randint(0, 50, (2, 4))
      >>> a = token_logprobs_from_hidden(h, w, labels, scale=2.0).logprobs
      >>> b = token_logprobs(h @ w.T, labels, scale=2.0).logprobs
      >>> bool(torch.allclose(a, b, atol=1e-5))
      True
    """
    if hidden.ndim != 3 or not hidden.is_floating_point():
        raise ValueError(f"hidden must be a float [B, T, D] tensor, got {tuple(hidden.shape)}")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[2]:
        raise ValueError(
            f"weight must have shape (V, {hidden.shape[2]}), got {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    batch, seq_len, _ = hidden.shape
    vocab = weight.shape[0]
    checked = _check((batch, seq_len), labels, scale, topk, mask, chunk_size, hidden.device, vocab)
    return _run(
        HiddenRows,
        hidden,
        checked,
        hidden,
        weight,
        bias,
        kernels=_kernels(compile),
        topk=topk,
        inv_temperature=_inv_temperature(temperature),
        entropy=return_entropy,
        scaled_entropy=return_scaled_entropy,
        backward_context=backward_context,
    )
