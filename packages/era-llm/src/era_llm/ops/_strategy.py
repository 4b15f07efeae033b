"""The one choice of how a chunk's kernels run: eagerly, or fused by ``torch.compile``."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from era_llm.ops._kernels import (
    ChunkStats,
    ScaleMode,
    Workspace,
    scale_mode,
    softmax_backward,
    softmax_forward,
    topk_backward,
    topk_forward,
)


def _softmax_backward_as(
    raw: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor,
    log_partition: torch.Tensor,
    grad_logprobs: torch.Tensor,
    inv_temperature: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """:func:`softmax_backward` cast to ``out_dtype`` (fused into the same compiled loop)."""
    grad = softmax_backward(raw, labels, scale, log_partition, grad_logprobs, inv_temperature)
    return grad.to(out_dtype)


@functools.cache
def _compiled(kernel: Callable) -> Callable:
    return torch.compile(kernel, dynamic=True)


class ChunkKernels:
    """Runs one chunk's forward and backward, eagerly or through ``torch.compile``.

    Eager: the kernels of ``_kernels`` run op by op in the call's :class:`Workspace`.
    Compiled: the full-softmax kernels are traced once per :class:`ScaleMode` (and requested
    outputs) into fused loops, with dynamic shapes; the scale is passed as a per-row column and
    ``1/tau`` as a 0-d tensor so that no value of either is baked into the compiled code; the
    small per-row inputs are passed as fresh tensors (storage offset 0: the offsets of chunk
    views change with every chunk and, were they equal to a size, would be guarded on as equal
    to it) and the logit rows detached (the logits and hidden-state paths share the compiled
    code). Top-k always runs eagerly.
    """

    def __init__(self, *, compiled: bool):
        self.compiled = compiled

    def __repr__(self) -> str:
        return f"ChunkKernels(compiled={self.compiled})"

    def workspace(self, rows: int, vocab: int, device: torch.device) -> Workspace:
        """The buffers for one call (allocated only if an eager kernel uses them)."""
        return Workspace(rows, vocab, device)

    def forward(
        self,
        raw: torch.Tensor,
        labels: torch.Tensor,
        scale: float | torch.Tensor,
        *,
        inv_temperature: float,
        topk: int | None,
        entropy: bool,
        scaled_entropy: bool,
        workspace: Workspace,
    ) -> ChunkStats:
        """One chunk's :class:`ChunkStats` (``scale``: a float or an ``[n, 1]`` column)."""
        flags = {"entropy": entropy, "scaled_entropy": scaled_entropy}
        if topk is not None:
            return topk_forward(
                raw, labels, scale, inv_temperature, topk=topk, workspace=workspace, **flags
            )
        mode: ScaleMode = scale_mode(scale, entropy=entropy)
        if not self.compiled:
            return softmax_forward(
                raw, labels, scale, inv_temperature, mode=mode, workspace=workspace, **flags
            )
        args = self._compiled_args(raw, labels, scale, inv_temperature)
        return _compiled(softmax_forward)(*args, mode=mode, **flags)

    def backward(
        self,
        raw: torch.Tensor,
        labels: torch.Tensor,
        scale: float | torch.Tensor,
        log_partition: torch.Tensor,
        top_indices: torch.Tensor | None,
        grad_logprobs: torch.Tensor,
        *,
        inv_temperature: float,
        out_dtype: torch.dtype,
        workspace: Workspace,
    ) -> torch.Tensor:
        """One chunk's gradient w.r.t. ``raw``: float32 (eager; valid until the next chunk) or
        ``out_dtype`` (compiled, where the cast is fused); ``grad_logprobs`` is ``g / tau``."""
        if top_indices is not None:
            return topk_backward(
                raw,
                labels,
                scale,
                log_partition,
                top_indices,
                grad_logprobs,
                inv_temperature,
                workspace,
            )
        if not self.compiled:
            return softmax_backward(
                raw, labels, scale, log_partition, grad_logprobs, inv_temperature, workspace
            )
        raw, labels, column, inv = self._compiled_args(raw, labels, scale, inv_temperature)
        return _compiled(_softmax_backward_as)(
            raw, labels, column, log_partition.clone(), grad_logprobs.clone(), inv, out_dtype
        )

    @staticmethod
    def _compiled_args(
        raw: torch.Tensor, labels: torch.Tensor, scale: float | torch.Tensor, inv_temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, device = raw.shape[0], raw.device
        if isinstance(scale, torch.Tensor):
            column = scale.clone()
        else:
            column = torch.full((rows, 1), float(scale), dtype=torch.float32, device=device)
        inv = torch.tensor(inv_temperature, dtype=torch.float32, device=device)
        return raw.detach(), labels.clone(), column, inv
