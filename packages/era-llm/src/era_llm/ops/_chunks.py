"""Chunk planning: which rows of the ``[B, T]`` token grid each chunk covers, at which scale.

A chunk is a block of consecutive rows, read from the input as one 2-D view (no copy). Only
the masked-in span of each response (first to last masked-in position) is planned, so left
and right padding cost nothing. When the input has a ``[B*T, X]`` view, neighbouring
responses are packed into one chunk while the padding between them stays small; otherwise
(e.g. ``logits[:, :-1]``, whose rows are not evenly strided) each response is chunked on its
own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Elements (rows * vocab) per chunk: on CPU 2**22 float32 values = 16 MiB per temporary (larger
# chunks are no faster there); on GPU 2**26 (256 MiB per temporary), so that a 152k vocabulary
# still gets ~440 rows per kernel launch and the Python loop stays cheap.
CHUNK_ELEMENTS_CPU = 1 << 22
CHUNK_ELEMENTS_ACCELERATOR = 1 << 26
MAX_CHUNK_ROWS = 8192


def default_chunk_size(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk used when ``chunk_size=None``: about 4M float32 values per chunk on CPU,
    64M on an accelerator."""
    cpu = torch.device(device).type == "cpu"
    budget = CHUNK_ELEMENTS_CPU if cpu else CHUNK_ELEMENTS_ACCELERATOR
    return max(1, min(MAX_CHUNK_ROWS, budget // max(1, vocab_size)))


@dataclass(frozen=True)
class Chunk:
    """Rows ``[start, stop)`` of one response, or of the flattened ``[B*T]`` rows.

    Attributes:
      response: the response the rows belong to, or ``None`` when ``start`` / ``stop`` index
        the flattened ``[B*T]`` rows (the chunk may then span several responses).
      start, stop: the row range.
      scale: the one scale of every row of the chunk, or ``None`` when its rows differ (the
        per-row scale column is used then).
    """

    response: int | None
    start: int
    stop: int
    scale: float | None

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def tokens(self, seq_len: int) -> slice:
        """The chunk's rows as a slice of the flattened ``[B*T]`` token index."""
        if self.response is None:
            return slice(self.start, self.stop)
        offset = self.response * seq_len
        return slice(offset + self.start, offset + self.stop)


@dataclass(frozen=True)
class ChunkPlan:
    """The chunks of one call, and whether they index the flattened rows."""

    chunks: tuple[Chunk, ...]
    flat: bool

    @property
    def max_rows(self) -> int:
        """Rows of the largest chunk (0 without chunks): the workspace's height."""
        return max((c.rows for c in self.chunks), default=0)


def response_spans(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Per response, ``[first, last + 1)`` of its masked-in positions (``(0, 0)`` when none)."""
    seq_len = mask.shape[1]
    has_any = mask.any(dim=1)
    first = torch.argmax(mask.to(torch.int8), dim=1)
    last = seq_len - torch.argmax(mask.flip(1).to(torch.int8), dim=1)
    spans = torch.stack([torch.where(has_any, first, 0), torch.where(has_any, last, 0)], 1)
    return [(int(lo), int(hi)) for lo, hi in spans.tolist()]


def _common_scale(scales: list[float] | None, first: int, last: int) -> float | None:
    """The scale shared by responses ``first..last`` (1 without scales), or ``None``."""
    if scales is None:
        return 1.0
    value = scales[first]
    return value if all(s == value for s in scales[first : last + 1]) else None


def _per_response_chunks(
    spans: list[tuple[int, int]], rows_per_chunk: int, scales: list[float] | None
) -> list[Chunk]:
    return [
        Chunk(b, start, min(hi, start + rows_per_chunk), _common_scale(scales, b, b))
        for b, (lo, hi) in enumerate(spans)
        for start in range(lo, hi, rows_per_chunk)
    ]


def _packed_ranges(
    spans: list[tuple[int, int]], seq_len: int, rows_per_chunk: int
) -> list[tuple[int, int]]:
    """Flattened row ranges: neighbouring responses share a range while it stays within
    ``rows_per_chunk`` rows and the padding between them within an eighth of that, so short
    responses do not each cost a chunk; long ones are split."""
    max_gap = max(1, rows_per_chunk // 8)
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    stop = 0
    for b, (lo, hi) in enumerate(spans):
        if hi <= lo:
            continue
        lo, hi = b * seq_len + lo, b * seq_len + hi
        if start is not None and hi - start <= rows_per_chunk and lo - stop <= max_gap:
            stop = hi
            continue
        if start is not None:
            ranges.append((start, stop))
        while hi - lo > rows_per_chunk:
            ranges.append((lo, lo + rows_per_chunk))
            lo += rows_per_chunk
        start, stop = lo, hi
    if start is not None:
        ranges.append((start, stop))
    return ranges


def plan_chunks(
    spans: list[tuple[int, int]],
    seq_len: int,
    *,
    flat: bool,
    rows_per_chunk: int,
    scales: list[float] | None,
) -> list[Chunk]:
    """Chunks covering every span; ``flat`` packs them over the flattened ``[B*T]`` rows."""
    if not flat:
        return _per_response_chunks(spans, rows_per_chunk, scales)
    return [
        Chunk(None, start, stop, _common_scale(scales, start // seq_len, (stop - 1) // seq_len))
        for start, stop in _packed_ranges(spans, seq_len, rows_per_chunk)
    ]


def flat_rows(x: torch.Tensor) -> torch.Tensor | None:
    """``x`` ``[B, T, X]`` as a ``[B*T, X]`` view, or ``None`` when its rows are not evenly
    strided (e.g. ``logits[:, :-1]``)."""
    try:
        return x.view(x.shape[0] * x.shape[1], x.shape[2])
    except RuntimeError:
        return None


def make_plan(
    x: torch.Tensor, mask: torch.Tensor, scales: list[float] | None, rows_per_chunk: int
) -> ChunkPlan:
    """The plan for input rows ``x`` (``[B, T, X]``) under a ``[B, T]`` bool ``mask``."""
    flat = flat_rows(x) is not None
    chunks = plan_chunks(
        response_spans(mask), x.shape[1], flat=flat, rows_per_chunk=rows_per_chunk, scales=scales
    )
    return ChunkPlan(tuple(chunks), flat)


class RowBlocks:
    """A ``[B, T, X]`` tensor read (or written) chunk by chunk as 2-D row views, no copies."""

    def __init__(self, x: torch.Tensor, *, flat: bool):
        self._x = x
        self._flat = flat_rows(x) if flat else None

    def __getitem__(self, chunk: Chunk) -> torch.Tensor:
        if chunk.response is None:
            assert self._flat is not None, "a flat chunk needs a tensor with a [B*T, X] view"
            return self._flat[chunk.start : chunk.stop]
        return self._x[chunk.response, chunk.start : chunk.stop]
