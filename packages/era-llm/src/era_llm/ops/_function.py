"""The one ``autograd.Function``: per-token log-probs over a row source, chunk by chunk.

Forward runs each chunk's kernel and keeps only the per-token log-partition (and, with top-k,
the ids of the k largest logits); backward recomputes each chunk's logits from the source and
its softmax from the saved log-partition, and hands the chunk's logit gradient back to the
source. The entropies are outputs without gradient.

The autocast state of the forward (enabled, dtype, for the inputs' device type) is captured and
replayed around the backward, as ``torch.amp.custom_fwd`` / ``custom_bwd`` do: under bf16
autocast with float32 weights the hidden-state projection runs in bf16 in both, so the
recomputed softmax matches the saved log-partition.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from era_llm.ops._chunks import Chunk, ChunkPlan
from era_llm.ops._kernels import ChunkStats
from era_llm.ops._sources import RowSource
from era_llm.ops._strategy import ChunkKernels


@dataclass(frozen=True)
class AutocastState:
    """Whether autocast was on for ``device_type`` in forward, and with which dtype."""

    device_type: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def capture(cls, device: torch.device) -> AutocastState:
        kind = device.type
        return cls(kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))

    def replay(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


@dataclass(frozen=True)
class Request:
    """Everything about one call that is not a tensor."""

    source: Callable[..., RowSource]  # a RowSource class, built from the differentiable inputs
    plan: ChunkPlan
    kernels: ChunkKernels
    topk: int | None
    inv_temperature: float
    entropy: bool
    scaled_entropy: bool
    # entered around backward's recomputation (the caller holds it around the forward call):
    # e.g. a DeepSpeed ZeRO-3 gather of the head weight, which is empty outside it
    backward_context: Callable[[], AbstractContextManager[Any]] | None = None


def _chunk_scale(
    chunk: Chunk, scale_rows: torch.Tensor | None, tokens: slice
) -> float | torch.Tensor:
    """The chunk's one scale (a float), or its rows' ``[n, 1]`` scale column."""
    if chunk.scale is not None:
        return chunk.scale
    assert scale_rows is not None, "a chunk without one common scale reads the scale column"
    return scale_rows[tokens]


class _TokenOutputs:
    """The flattened ``[B*T]`` outputs that the chunks' :class:`ChunkStats` are written into."""

    def __init__(self, tokens: int, request: Request, device: torch.device):
        def zeros() -> torch.Tensor:
            return torch.zeros(tokens, dtype=torch.float32, device=device)

        self.logprobs, self.log_partition = zeros(), zeros()
        self.entropy = zeros() if request.entropy else None
        self.scaled_entropy = zeros() if request.scaled_entropy else None
        self.top_indices = None
        if request.topk is not None:
            self.top_indices = torch.zeros(tokens, request.topk, dtype=torch.int64, device=device)

    def write(self, tokens: slice, stats: ChunkStats) -> None:
        self.logprobs[tokens] = stats.logprobs
        self.log_partition[tokens] = stats.log_partition
        for out, value in (
            (self.entropy, stats.entropy),
            (self.scaled_entropy, stats.scaled_entropy),
            (self.top_indices, stats.top_indices),
        ):
            if out is not None and value is not None:
                out[tokens] = value


class ChunkedLogprobs(torch.autograd.Function):
    """``apply(request, labels, mask, scale_rows, *inputs)`` -> ``(logprobs, entropy,
    scaled_entropy)``, each ``[B, T]`` float32 (the entropies ``None`` unless requested).

    ``labels``: ``[B*T]`` int64 (0 where masked out); ``mask``: ``[B, T]`` bool;
    ``scale_rows``: ``[B*T, 1]`` float32 per-token scales, or ``None`` when every chunk has one
    scale; ``inputs``: the differentiable tensors ``request.source`` is built from.
    """

    @staticmethod
    def forward(
        ctx: Any,
        request: Request,
        labels: torch.Tensor,
        mask: torch.Tensor,
        scale_rows: torch.Tensor | None,
        *inputs: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        batch, seq_len = mask.shape
        source: RowSource = request.source(*inputs, flat=request.plan.flat)
        device = labels.device
        out = _TokenOutputs(batch * seq_len, request, device)
        workspace = request.kernels.workspace(request.plan.max_rows, source.vocab, device)
        for chunk in request.plan.chunks:
            tokens = chunk.tokens(seq_len)
            stats = request.kernels.forward(
                source.logits(chunk),
                labels[tokens],
                _chunk_scale(chunk, scale_rows, tokens),
                inv_temperature=request.inv_temperature,
                topk=request.topk,
                entropy=request.entropy,
                scaled_entropy=request.scaled_entropy,
                workspace=workspace,
            )
            out.write(tokens, stats)
        flat_mask = mask.reshape(-1)
        ctx.save_for_backward(
            labels, flat_mask, out.log_partition, scale_rows, out.top_indices, *inputs
        )
        ctx.request, ctx.seq_len = request, seq_len
        ctx.autocast = AutocastState.capture(device)
        outputs = [
            torch.where(flat_mask, t, 0.0).view(batch, seq_len) if t is not None else None
            for t in (out.logprobs, out.entropy, out.scaled_entropy)
        ]
        ctx.mark_non_differentiable(*[t for t in outputs[1:] if t is not None])
        return tuple(outputs)

    @staticmethod
    # torch's stub declares ``backward(ctx, *grad_outputs)``; one named gradient per output of
    # ``forward`` is the form torch documents.
    def backward(  # pyright: ignore[reportIncompatibleMethodOverride]
        ctx: Any,
        grad_logprobs: torch.Tensor | None,
        _grad_entropy: torch.Tensor | None,
        _grad_scaled_entropy: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        inputs = list(ctx.saved_tensors[5:])
        request: Request = ctx.request
        needs_grad = tuple(ctx.needs_input_grad[4:])
        no_grads = (None,) * 4
        if grad_logprobs is None or not any(needs_grad):
            return (*no_grads, *(None,) * len(inputs))
        with ExitStack() as stack:
            if request.backward_context is not None:
                stack.enter_context(request.backward_context())
            stack.enter_context(ctx.autocast.replay())  # logits recomputed as forward made them
            grads = _backward_chunks(ctx, request, grad_logprobs, needs_grad, inputs)
        return (*no_grads, *grads)


def _backward_chunks(
    ctx: Any,
    request: Request,
    grad_logprobs: torch.Tensor,
    needs_grad: tuple[bool, ...],
    inputs: list[torch.Tensor | None],
) -> tuple[torch.Tensor | None, ...]:
    """Each chunk's logits recomputed from the source, their gradient handed back to it."""
    labels, flat_mask, log_partition, scale_rows, top_indices = ctx.saved_tensors[:5]
    seq_len = ctx.seq_len
    source: RowSource = request.source(*inputs, flat=request.plan.flat)
    source.start_backward(needs_grad)
    g = torch.where(flat_mask, grad_logprobs.reshape(-1).float(), 0.0)
    g = g * request.inv_temperature
    workspace = request.kernels.workspace(request.plan.max_rows, source.vocab, labels.device)
    for chunk in request.plan.chunks:
        tokens = chunk.tokens(seq_len)
        grad_logits = request.kernels.backward(
            source.logits(chunk),
            labels[tokens],
            _chunk_scale(chunk, scale_rows, tokens),
            log_partition[tokens],
            top_indices[tokens] if top_indices is not None else None,
            g[tokens],
            inv_temperature=request.inv_temperature,
            out_dtype=source.grad_dtype,
            workspace=workspace,
        )
        source.add_gradient(chunk, grad_logits)
    return source.gradients()
