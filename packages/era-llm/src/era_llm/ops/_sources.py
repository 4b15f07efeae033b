"""Row sources: where a chunk's logit rows come from, and where their gradient goes.

A source wraps the differentiable inputs of one call. :class:`LogitRows` reads the rows of given
``[B, T, V]`` logits in place; :class:`HiddenRows` projects the rows of ``[B, T, D]`` hidden
states onto the vocabulary (``h @ W.T + b``) one chunk at a time, so the ``[B, T, V]`` logits
never exist. In backward the autograd Function hands each chunk's logit gradient to
:meth:`add_gradient`; :meth:`gradients` returns one gradient per input.
"""

from __future__ import annotations

from typing import Protocol

import torch

from era_llm.ops._chunks import Chunk, RowBlocks


class RowSource(Protocol):
    @property
    def inputs(self) -> tuple[torch.Tensor | None, ...]:
        """The differentiable inputs, in ``apply`` order."""
        ...

    @property
    def vocab(self) -> int: ...

    @property
    def grad_dtype(self) -> torch.dtype:
        """The dtype a compiled backward kernel writes the logit gradient in."""
        ...

    def logits(self, chunk: Chunk) -> torch.Tensor: ...

    def start_backward(self, needs_grad: tuple[bool, ...]) -> None: ...

    def add_gradient(self, chunk: Chunk, grad_logits: torch.Tensor) -> None: ...

    def gradients(self) -> tuple[torch.Tensor | None, ...]: ...


class LogitRows:
    """Rows of ``[B, T, V]`` logits, read as views; their gradient has the logits' dtype."""

    def __init__(self, logits: torch.Tensor, *, flat: bool):
        self.inputs = (logits,)
        self.vocab = logits.shape[2]
        self.grad_dtype = logits.dtype
        self._flat = flat
        self._rows = RowBlocks(logits, flat=flat)
        self._grad: torch.Tensor | None = None
        self._grad_rows: RowBlocks | None = None

    def logits(self, chunk: Chunk) -> torch.Tensor:
        return self._rows[chunk]

    def start_backward(self, needs_grad: tuple[bool, ...]) -> None:
        if needs_grad[0]:
            self._grad = torch.zeros_like(self.inputs[0])
            self._grad_rows = RowBlocks(self._grad, flat=self._flat)

    def add_gradient(self, chunk: Chunk, grad_logits: torch.Tensor) -> None:
        if self._grad_rows is not None:
            self._grad_rows[chunk].copy_(grad_logits)  # casts to the logits' dtype

    def gradients(self) -> tuple[torch.Tensor | None, ...]:
        return (self._grad,)


class HiddenRows:
    """Rows of ``[B, T, D]`` hidden states times the head: ``logits = h @ weight.T (+ bias)``.

    Each chunk is projected in the inputs' dtype, as the model's ``lm_head`` would, then cast
    to float32. Backward recomputes the projection; the weight and bias gradients accumulate in
    float32 and are cast to their parameters' dtype at the end.
    """

    def __init__(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        flat: bool,
    ):
        self.inputs = (hidden, weight, bias)
        self.vocab = weight.shape[0]
        self.grad_dtype = torch.float32  # the logit gradient feeds float32 accumulators
        self._flat = flat
        self._rows = RowBlocks(hidden, flat=flat)
        self._grads: list[torch.Tensor | None] = [None, None, None]
        self._grad_hidden_rows: RowBlocks | None = None

    def logits(self, chunk: Chunk) -> torch.Tensor:
        _, weight, bias = self.inputs
        h = self._rows[chunk]
        z = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
        return z.float()

    def start_backward(self, needs_grad: tuple[bool, ...]) -> None:
        hidden, weight, bias = self.inputs
        need_hidden, need_weight, need_bias = needs_grad
        f32 = {"dtype": torch.float32, "device": weight.device}
        if need_hidden:
            self._grads[0] = torch.zeros_like(hidden)
            self._grad_hidden_rows = RowBlocks(self._grads[0], flat=self._flat)
        if need_weight:
            self._grads[1] = torch.zeros(weight.shape, **f32)
        if need_bias and bias is not None:
            self._grads[2] = torch.zeros(weight.shape[0], **f32)

    def add_gradient(self, chunk: Chunk, grad_logits: torch.Tensor) -> None:
        _, weight, _ = self.inputs
        _, grad_weight, grad_bias = self._grads
        if self._grad_hidden_rows is not None:
            self._grad_hidden_rows[chunk].copy_(grad_logits.to(weight.dtype) @ weight)
        if grad_weight is not None:
            grad_weight.addmm_(grad_logits.t(), self._rows[chunk].float())
        if grad_bias is not None:
            grad_bias.add_(grad_logits.sum(0))

    def gradients(self) -> tuple[torch.Tensor | None, ...]:
        _, weight, bias = self.inputs
        grad_hidden, grad_weight, grad_bias = self._grads
        grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
        grad_bias = grad_bias.to(bias.dtype) if grad_bias is not None and bias is not None else None
        return grad_hidden, grad_weight, grad_bias
