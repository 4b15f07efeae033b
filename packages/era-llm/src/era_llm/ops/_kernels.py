"""The math of one chunk: logit rows ``[n, V]`` in, per-row statistics (forward) or the gradient
of the rows (backward) out, computed in float32.

Two distributions: the full softmax (:func:`softmax_forward` / :func:`softmax_backward`, run
eagerly or through ``torch.compile`` as ``_strategy`` decides) and the top-k filtered one
(:func:`topk_forward` / :func:`topk_backward`, always eager). Each kernel takes an optional
:class:`Workspace`. With one, the chunk-sized float32 temporaries are written into its buffers
(``out=``), which every chunk of a call reuses, so no chunk-sized tensor is allocated per
chunk; without one (under ``torch.compile``) each temporary is a new tensor, which the compiler
fuses away. Input rows are never modified.

Arguments shared by the kernels: ``raw`` ``[n, V]`` logit rows of any float dtype; ``labels``
``[n]`` int64; ``scale`` the chunk's positive scale :math:`c`, a float or an ``[n, 1]`` float32
column; ``inv_temperature`` :math:`1/\\tau`, a float or a 0-d float32 tensor, by which the logits
are divided first.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import torch

# workspace slots: the (shifted) float32 rows, the exponentials, elementwise products
_ROWS, _EXP, _PRODUCT = 0, 1, 2


class ChunkStats(NamedTuple):
    """Per-row results of a forward kernel (float32 ``[n]`` unless noted)."""

    logprobs: torch.Tensor  # log-prob of the label under the scaled (filtered) policy
    log_partition: torch.Tensor  # log-sum-exp of the scaled (filtered) logits, for backward
    entropy: torch.Tensor | None  # entropy of the unscaled full softmax, if asked for
    scaled_entropy: torch.Tensor | None  # entropy of the scaled (filtered) softmax, if asked for
    top_indices: torch.Tensor | None  # [n, k] int64 ids of the k largest logits (top-k only)


class Workspace:
    """float32 ``[rows, cols]`` buffers, allocated on first use and reused by every chunk of one
    call (a kernel's result that lives in one is valid until the next chunk)."""

    def __init__(self, rows: int, cols: int, device: torch.device):
        self.rows, self.cols, self.device = rows, cols, device
        self._buffers: dict[int, torch.Tensor] = {}

    def buffer(self, slot: int, rows: int) -> torch.Tensor:
        buf = self._buffers.get(slot)
        if buf is None:
            buf = torch.empty(self.rows, self.cols, dtype=torch.float32, device=self.device)
            self._buffers[slot] = buf
        return buf[:rows]


def _buffer(workspace: Workspace | None, slot: int, rows: int) -> torch.Tensor | None:
    """The ``out=`` target for a temporary: a workspace buffer, or ``None`` (a new tensor)."""
    return None if workspace is None else workspace.buffer(slot, rows)


class ScaleMode(enum.Enum):
    """How the full-softmax forward gets :math:`e^{c(x - m)}` once :math:`e^{x - m}` exists."""

    PLAIN = "plain"  # c = 1: the unscaled softmax is the policy
    SQUARE = "square"  # c = 2: the square of exp(x - m), no second exp
    SQRT = "sqrt"  # c = 1/2: its square root
    EXP = "exp"  # any other c (or one per row): a second exp


def scale_mode(scale: float | torch.Tensor, *, entropy: bool) -> ScaleMode:
    """The mode for a chunk's scale. ERA's scales are 1, ``k`` and ``1/k`` (``k = 2`` in the
    paper), so a chunk whose rows share ``c = 2`` or ``c = 1/2`` squares or square-roots
    ``exp(x - m)`` instead of taking a second ``exp``. That ``exp(x - m)`` is only computed for
    ``c = 1`` or when the entropy is asked for; otherwise one ``exp(c (x - m))`` is cheaper."""
    if isinstance(scale, torch.Tensor):
        return ScaleMode.EXP
    if scale == 1.0:
        return ScaleMode.PLAIN
    if entropy and scale == 2.0:
        return ScaleMode.SQUARE
    if entropy and scale == 0.5:
        return ScaleMode.SQRT
    return ScaleMode.EXP


def _row_scale(scale: float | torch.Tensor) -> float | torch.Tensor:
    """The scale as a float or an ``[n]`` vector, to multiply per-row values."""
    return scale if not isinstance(scale, torch.Tensor) else scale.view(-1)


def _float_rows(raw: torch.Tensor, workspace: Workspace | None) -> torch.Tensor:
    """``raw`` as float32: itself when it already is (only read then), else a copy."""
    if raw.dtype == torch.float32:
        return raw
    if workspace is None:
        return raw.float()
    return workspace.buffer(_ROWS, raw.shape[0]).copy_(raw)


def _tempered_rows(
    raw: torch.Tensor, inv_temperature: float | torch.Tensor, workspace: Workspace | None
) -> torch.Tensor:
    """float32 ``raw / temperature`` (``raw`` itself when that is already it: only read then)."""
    x = _float_rows(raw, workspace)
    if isinstance(inv_temperature, float) and inv_temperature == 1.0:
        return x
    return torch.mul(x, inv_temperature, out=_buffer(workspace, _ROWS, x.shape[0]))


def _row_dot(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """Row-wise dot products, with torch's pairwise summation (a batched matmul accumulates
    naively: 2e-4 relative error over 152k terms in float32)."""
    return torch.mul(a, b, out=out).sum(1)


def _softmax_terms(
    shifted: torch.Tensor, workspace: Workspace | None, *, entropy: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """For rows ``x - max(x)``: ``exp`` of them, the log-partition ``log sum exp`` and, with
    ``entropy``, the entropy ``log Z - sum(e * (x - m)) / Z`` of their softmax."""
    rows = shifted.shape[0]
    exp_shifted = torch.exp(shifted, out=_buffer(workspace, _EXP, rows))
    partition = exp_shifted.sum(1)
    log_partition = torch.log(partition)
    ent = None
    if entropy:
        dot = _row_dot(exp_shifted, shifted, _buffer(workspace, _PRODUCT, rows))
        ent = log_partition - dot / partition
    return exp_shifted, log_partition, ent


def _scaled_exp(
    shifted: torch.Tensor,
    exp_shifted: torch.Tensor | None,
    scale: float | torch.Tensor,
    mode: ScaleMode,
    workspace: Workspace | None,
) -> torch.Tensor:
    """``exp(c * (x - m))``, written over ``exp(x - m)`` (which is no longer needed)."""
    out = _buffer(workspace, _EXP, shifted.shape[0])
    if exp_shifted is not None and mode is ScaleMode.SQUARE:
        return torch.mul(exp_shifted, exp_shifted, out=out)
    if exp_shifted is not None and mode is ScaleMode.SQRT:
        return torch.sqrt(exp_shifted, out=out)
    return torch.exp(torch.mul(shifted, scale, out=out), out=out)


def softmax_forward(
    raw: torch.Tensor,
    labels: torch.Tensor,
    scale: float | torch.Tensor,
    inv_temperature: float | torch.Tensor,
    *,
    mode: ScaleMode,
    entropy: bool,
    scaled_entropy: bool,
    workspace: Workspace | None = None,
) -> ChunkStats:
    """Log-probs under ``softmax(c x)`` with ``x = raw / tau``, and the entropies asked for.

    ``mode`` is :func:`scale_mode` of ``scale``. The log-partition of ``c x`` is
    ``c max(x) + log sum exp(c (x - max(x)))`` (``c > 0``); with ``c = 1`` it is the unscaled
    one and the two entropies are equal.
    """
    x = _tempered_rows(raw, inv_temperature, workspace)
    label_logits = x.gather(1, labels[:, None])[:, 0]
    row_max = x.amax(1, keepdim=True)
    shifted = torch.sub(x, row_max, out=_buffer(workspace, _ROWS, x.shape[0]))
    exp_shifted = log_z = ent = None
    if entropy or mode is not ScaleMode.EXP:
        want = entropy or (scaled_entropy and mode is ScaleMode.PLAIN)
        exp_shifted, log_z, ent = _softmax_terms(shifted, workspace, entropy=want)
    if mode is ScaleMode.PLAIN:
        assert log_z is not None, "the unscaled log-partition is computed for ScaleMode.PLAIN"
        lse = row_max[:, 0] + log_z
        return ChunkStats(
            label_logits - lse, lse, ent if entropy else None, ent if scaled_entropy else None, None
        )
    scaled = _scaled_exp(shifted, exp_shifted, scale, mode, workspace)
    scaled_z = scaled.sum(1)
    row_scale = _row_scale(scale)
    lse = row_scale * row_max[:, 0] + torch.log(scaled_z)
    sent = None
    if scaled_entropy:
        dot = _row_dot(scaled, shifted, _buffer(workspace, _PRODUCT, x.shape[0]))
        sent = torch.log(scaled_z) - row_scale * dot / scaled_z
    return ChunkStats(row_scale * label_logits - lse, lse, ent, sent, None)


def softmax_backward(
    raw: torch.Tensor,
    labels: torch.Tensor,
    scale: float | torch.Tensor,
    log_partition: torch.Tensor,
    grad_logprobs: torch.Tensor,
    inv_temperature: float | torch.Tensor,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """float32 ``[n, V]`` gradient of ``sum(g * logprobs)`` w.r.t. ``raw``, for the softmax
    forward: ``g c / tau * (onehot(label) - softmax(c x))``.

    ``grad_logprobs`` is ``g / tau`` (the caller folds the temperature in); ``log_partition``
    is the forward's.
    """
    out = _buffer(workspace, _ROWS, raw.shape[0])
    x = _float_rows(raw, workspace)
    probs = torch.mul(x, scale * inv_temperature, out=out)
    probs = torch.exp(torch.sub(probs, log_partition[:, None], out=out), out=out)
    g_scaled = (grad_logprobs * _row_scale(scale))[:, None]
    grad = torch.mul(probs, -g_scaled, out=out)
    return grad.scatter_add_(1, labels[:, None], g_scaled)


def topk_forward(
    raw: torch.Tensor,
    labels: torch.Tensor,
    scale: float | torch.Tensor,
    inv_temperature: float,
    *,
    topk: int,
    entropy: bool,
    scaled_entropy: bool,
    workspace: Workspace | None = None,
) -> ChunkStats:
    """Log-probs under the softmax of ``c x`` over the ``topk`` largest ``x`` (plus the label's
    own when it is not among them: see the package docstring), and the entropies asked for
    (``scaled_entropy``: of the softmax over the ``topk`` largest alone)."""
    x = _tempered_rows(raw, inv_temperature, workspace)
    label_logits = x.gather(1, labels[:, None]).view(-1)
    top_logits, top_indices = torch.topk(x, topk, dim=1, sorted=False)
    label_in_top = (top_indices == labels[:, None]).any(1)
    row_scale = _row_scale(scale)
    scaled_top = top_logits * scale
    label_candidate = torch.where(label_in_top, -math.inf, label_logits * row_scale)
    lse = torch.logsumexp(torch.cat([scaled_top, label_candidate[:, None]], 1), 1)
    sent = None
    if scaled_entropy:
        top_lse = torch.logsumexp(scaled_top, 1)
        top_probs = torch.exp(scaled_top - top_lse[:, None])
        sent = top_lse - (top_probs * scaled_top).sum(1)
    ent = None
    if entropy:  # last: the shifted rows may overwrite x
        shifted = torch.sub(x, x.amax(1, keepdim=True), out=_buffer(workspace, _ROWS, x.shape[0]))
        ent = _softmax_terms(shifted, workspace, entropy=True)[2]
    return ChunkStats(row_scale * label_logits - lse, lse, ent, sent, top_indices)


def topk_backward(
    raw: torch.Tensor,
    labels: torch.Tensor,
    scale: float | torch.Tensor,
    log_partition: torch.Tensor,
    top_indices: torch.Tensor,
    grad_logprobs: torch.Tensor,
    inv_temperature: float,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """float32 ``[n, V]`` gradient of ``sum(g * logprobs)`` w.r.t. ``raw``, for the top-k
    forward: ``g c / tau * (onehot(label) - q)`` with ``q`` the filtered softmax, non-zero on the
    candidates only. ``grad_logprobs`` is ``g / tau``."""
    x = _tempered_rows(raw, inv_temperature, workspace)
    row_scale = _row_scale(scale)
    g_scaled = grad_logprobs * row_scale
    top_probs = torch.exp(x.gather(1, top_indices) * scale - log_partition[:, None])
    if workspace is None:
        grad = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    else:
        grad = workspace.buffer(_EXP, x.shape[0]).zero_()
    grad.scatter_(1, top_indices, -g_scaled[:, None] * top_probs)
    label_in_top = (top_indices == labels[:, None]).any(1)
    label_logits = x.gather(1, labels[:, None]).view(-1)
    label_prob = torch.exp(row_scale * label_logits - log_partition)
    label_prob = torch.where(label_in_top, 0.0, label_prob)  # in the top k: counted above
    return grad.scatter_add_(1, labels[:, None], (g_scaled * (1.0 - label_prob))[:, None])
