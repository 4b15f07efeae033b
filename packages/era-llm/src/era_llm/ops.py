r"""Per-token log-probs and entropies under a per-response logit scale, in chunks (ERA-SPEC §3).

For logits :math:`z \in \mathbb{R}^{B\times T\times V}`, labels :math:`a` and a per-response
scale :math:`c_b` (ERA's :math:`c \in \{k, 1, 1/k\}`, i.e. a temperature :math:`1/c_b`):

.. math::

    \log\pi'(a_{bt}) = c_b z_{bt,a} - \log\sum_v e^{c_b z_{bt,v}}, \qquad
    H_{bt} = -\sum_v p_v \log p_v,\; p = \mathrm{softmax}(z_{bt})

``H`` is the entropy of the **unscaled** full softmax, the statistic ERA's band is defined on;
both come from the same pass. The work runs over chunks of rows of the sequence, each cast to
float32 on its own, so no float32 copy of the whole ``[B, T, V]`` tensor is made; a custom
``autograd.Function`` keeps only the per-row log-partition for backward and recomputes the
softmax chunk by chunk there. Positions where ``mask`` is 0 are skipped where they form the
ends of a response (left or right padding) and give 0 everywhere.

Top-k (the paper's first stage): the log-prob is taken after keeping the ``k`` largest logits of
each token (the scale is positive, so they are also the ``k`` largest scaled logits) and
renormalising over them. A label outside the top ``k`` is kept as a ``(k+1)``-th candidate: its
log-prob is renormalised over the ``k`` largest logits **plus its own**, a finite value (at most
:math:`\log\frac{1}{2}` below the top-k mass) with a well-defined gradient, rather than
:math:`-\infty`, which would turn a PPO ratio into NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["TokenStats", "default_chunk_size", "token_logprobs", "token_logprobs_from_hidden"]

# Elements (rows * vocab) per chunk: on CPU 2**22 float32 values = 16 MiB per temporary (larger
# chunks are no faster there); on GPU 2**26 (256 MiB per temporary), so that a 152k vocabulary
# still gets ~440 rows per kernel launch and the Python loop stays cheap.
_CHUNK_ELEMENTS = 1 << 22
_CHUNK_ELEMENTS_GPU = 1 << 26


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


def default_chunk_size(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk used when ``chunk_size=None``: about 4M float32 values per chunk on CPU,
    64M on an accelerator."""
    budget = _CHUNK_ELEMENTS if torch.device(device).type == "cpu" else _CHUNK_ELEMENTS_GPU
    return max(1, min(8192, budget // max(1, vocab_size)))


# --------------------------------------------------------------------------------------------
# planning: which rows go into which chunk


@dataclass(frozen=True)
class _Chunk:
    b: int | None  # None: rows [r0, r1) of the flattened [B*T] layout; else rows [r0, r1) of b
    r0: int
    r1: int
    scale: float | None  # a single scale for every row of the chunk, or None (per-row column)

    def out_range(self, seq: int) -> tuple[int, int]:
        if self.b is None:
            return self.r0, self.r1
        return self.b * seq + self.r0, self.b * seq + self.r1


def _spans(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Per response, [first, last + 1) of its masked positions ((0, 0) when it has none)."""
    seq = mask.shape[1]
    has = mask.any(dim=1)
    first = torch.argmax(mask.to(torch.int8), dim=1)
    last = seq - torch.argmax(mask.flip(1).to(torch.int8), dim=1)
    rows = torch.stack([torch.where(has, first, 0), torch.where(has, last, 0)], 1).tolist()
    return [(int(a), int(b)) for a, b in rows]


def _plan(
    spans: list[tuple[int, int]], seq: int, flat: bool, chunk: int, scales: list[float] | None
) -> list[_Chunk]:
    def uniform(b0: int, b1: int) -> float | None:
        if scales is None:
            return 1.0
        first = scales[b0]
        return first if all(s == first for s in scales[b0 : b1 + 1]) else None

    chunks: list[_Chunk] = []
    if not flat:
        for b, (lo, hi) in enumerate(spans):
            for r0 in range(lo, hi, chunk):
                chunks.append(_Chunk(b, r0, min(hi, r0 + chunk), uniform(b, b)))
        return chunks
    # Flattened rows: pack neighbouring responses into one chunk while the padding between them
    # stays small, so short responses do not each cost a chunk.
    gap = max(1, chunk // 8)
    start = end = None
    for b, (lo, hi) in enumerate(spans):
        if hi <= lo:
            continue
        s0, s1 = b * seq + lo, b * seq + hi
        if start is not None and s1 - start <= chunk and s0 - end <= gap:
            end = s1
            continue
        if start is not None:
            chunks.append(_Chunk(None, start, end, None))
        while s1 - s0 > chunk:
            chunks.append(_Chunk(None, s0, s0 + chunk, None))
            s0 += chunk
        start, end = s0, s1
    if start is not None:
        chunks.append(_Chunk(None, start, end, None))
    return [_Chunk(None, c.r0, c.r1, uniform(c.r0 // seq, (c.r1 - 1) // seq)) for c in chunks]


def _flat_view(x: torch.Tensor) -> torch.Tensor | None:
    try:
        return x.view(x.shape[0] * x.shape[1], x.shape[2])
    except RuntimeError:  # e.g. logits[:, :-1]: rows are not evenly strided
        return None


class _Rows:
    """Chunked access to a [B, T, X] tensor as 2-D row blocks, without copies."""

    def __init__(self, x: torch.Tensor, chunks_flat: bool):
        self.x = x
        self.flat = _flat_view(x) if chunks_flat else None

    def get(self, c: _Chunk) -> torch.Tensor:
        if c.b is None:
            return self.flat[c.r0 : c.r1]
        return self.x[c.b, c.r0 : c.r1]


# --------------------------------------------------------------------------------------------
# the per-chunk math (float32 rows [n, V])


def _load(src: torch.Tensor, inv_t: float) -> tuple[torch.Tensor, bool]:
    """float32 rows divided by the temperature, and whether they are a private copy."""
    x = src.float()
    owned = x.data_ptr() != src.data_ptr()
    if inv_t != 1.0:
        x = x.mul_(inv_t) if owned else x * inv_t
        owned = True
    return x, owned


def _dot_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products, with torch's pairwise summation (a batched matmul accumulates
    naively: 2e-4 relative error over 152k terms in float32)."""
    return (a * b).sum(1)


def _chunk_forward(x, lab, s, topk, want_ent, want_sent):
    """x: [n, V] float32 (may be a view of caller memory: never modified in place).

    Returns (logp [n], ent [n] | None, sent [n] | None, lse [n], topidx [n, k] | None) where
    ``lse`` is the log-partition of the scaled (filtered) logits that backward needs.
    """
    scalar = not isinstance(s, torch.Tensor)
    x_lab = x.gather(1, lab[:, None]).view(-1)
    ent = sent = topidx = None
    if topk is not None:
        vals, topidx = torch.topk(x, topk, dim=1, sorted=False)
        in_top = (topidx == lab[:, None]).any(1)
        s_row = s if scalar else s.view(-1)
        sv = vals * s
        extra = torch.where(in_top, -math.inf, x_lab * s_row)
        lse = torch.logsumexp(torch.cat([sv, extra[:, None]], 1), 1)
        logp = s_row * x_lab - lse
        if want_sent:
            lz = torch.logsumexp(sv, 1)
            q = torch.exp(sv - lz[:, None])
            sent = lz - (q * sv).sum(1)
        if want_ent:
            m = x.amax(1, keepdim=True)
            e = x - m
            xs = e.clone()
            e.exp_()
            z = e.sum(1)
            ent = torch.log(z) - _dot_rows(e, xs) / z
        return logp, ent, sent, lse, topidx

    need_unscaled = want_ent or (scalar and s == 1.0)
    m = x.amax(1, keepdim=True)
    xs = x - m  # a fresh temporary
    if scalar and s == 1.0:
        e = torch.exp(xs)
        z = e.sum(1)
        logz = torch.log(z)
        lse = m.view(-1) + logz
        logp = x_lab - lse
        if want_ent or want_sent:
            ent = logz - _dot_rows(e, xs) / z
            if want_sent:
                sent = ent.clone()
            if not want_ent:
                ent = None
        return logp, ent, sent, lse, None
    if need_unscaled:
        e = torch.exp(xs)
        z = e.sum(1)
        ent = torch.log(z) - _dot_rows(e, xs) / z
        # reuse e's buffer for the scaled exponentials: exp(s * xs) = e ** s
        if scalar and s == 2.0:
            es = e.mul_(e)
        elif scalar and s == 0.5:
            es = e.sqrt_()
        else:
            es = torch.mul(xs, s, out=e).exp_()
    else:
        es = torch.mul(xs, s).exp_()
    zs = es.sum(1)
    s_row = s if scalar else s.view(-1)
    # max of s * x is s * max(x) since s > 0
    lse = s_row * m.view(-1) + torch.log(zs)
    logp = s_row * x_lab - lse
    if want_sent:
        sent = torch.log(zs) - s_row * _dot_rows(es, xs) / zs
    return logp, ent, sent, lse, None


def _chunk_grad(x, lab, s, lse, topidx, g, owned):
    """d(sum_i g_i logp_i)/dx for one chunk, float32 [n, V] (x is overwritten when owned)."""
    scalar = not isinstance(s, torch.Tensor)
    gs = g * s if scalar else g * s.view(-1)
    if topidx is not None:
        grad = torch.zeros_like(x)
        vals = x.gather(1, topidx)
        q = torch.exp(vals * s - lse[:, None])
        grad.scatter_(1, topidx, -gs[:, None] * q)
        in_top = (topidx == lab[:, None]).any(1)
        x_lab = x.gather(1, lab[:, None]).view(-1)
        s_row = s if scalar else s.view(-1)
        q_lab = torch.where(in_top, 0.0, torch.exp(s_row * x_lab - lse))
        grad.scatter_add_(1, lab[:, None], (gs * (1.0 - q_lab))[:, None])
        return grad
    if scalar and s == 1.0:
        q = x if owned else x.clone()
    else:
        q = torch.mul(x, s, out=x) if owned else torch.mul(x, s)
    q.sub_(lse[:, None]).exp_().mul_(-gs[:, None])
    q.scatter_add_(1, lab[:, None], gs[:, None])
    return q


# --------------------------------------------------------------------------------------------
# fused kernels (compile=True): the same math as _chunk_forward / _chunk_grad, written for
# torch.compile, which fuses the cast, the reductions and the exponentials into a few loops


def _kernel_forward(x, lab, s, inv_t, mode: str, want_ent: bool, want_sent: bool):
    # mode: "plain" (every scale 1), "square" / "sqrt" (one scale 2 / 0.5 for the chunk: exp(c x)
    # is exp(x) squared / square-rooted, no second exp), "exp" (any other scales)
    x = x.float() * inv_t
    m = x.amax(1, keepdim=True)
    xs = x - m
    x_lab = x.gather(1, lab[:, None])[:, 0]
    ent = sent = None
    if want_ent or mode != "exp":
        e = torch.exp(xs)
        z = e.sum(1)
        logz = torch.log(z)
        if want_ent or (want_sent and mode == "plain"):
            ent = logz - (e * xs).sum(1) / z
    if mode == "plain":
        lse = m[:, 0] + logz
        logp = x_lab - lse
        if want_sent:
            sent = ent
    else:
        sc = s[:, 0]
        if mode == "square":
            es = e * e
        elif mode == "sqrt":
            es = torch.sqrt(e)
        else:
            es = torch.exp(xs * s)
        zs = es.sum(1)
        lse = sc * m[:, 0] + torch.log(zs)
        logp = sc * x_lab - lse
        if want_sent:
            sent = torch.log(zs) - sc * (es * xs).sum(1) / zs
    return logp, (ent if want_ent else None), sent, lse


def _kernel_grad(x, lab, s, lse, g, inv_t, out_dtype: torch.dtype):
    q = torch.exp(x.float() * (s * inv_t) - lse[:, None])
    gs = (g * s[:, 0])[:, None]
    return (-gs * q).scatter_add(1, lab[:, None], gs).to(out_dtype)


_COMPILED: dict[str, object] = {}


def _compiled(name: str):
    fn = _COMPILED.get(name)
    if fn is None:
        compiled = torch.compile({"fwd": _kernel_forward, "grad": _kernel_grad}[name], dynamic=True)

        def fn(*args):
            # Chunks are views at varying offsets; "duck sizing" would guard on accidental
            # equalities between their sizes and offsets and recompile for every chunk.
            with torch.fx.experimental._config.patch(use_duck_shape=False):
                return compiled(*args)

        _COMPILED[name] = fn
    return fn


def _column(s, n: int, device) -> torch.Tensor:
    if isinstance(s, torch.Tensor):
        return s
    return torch.full((n, 1), float(s), dtype=torch.float32, device=device)


class _Workspace:
    """float32 ``[rows, V]`` buffers reused by every chunk of one call, so the eager path does
    not allocate (and page-fault) fresh chunk-sized temporaries each time."""

    def __init__(self, rows: int, cols: int, device):
        self.rows, self.cols, self.device = rows, cols, device
        self._bufs: dict[int, torch.Tensor] = {}

    def buf(self, i: int, n: int) -> torch.Tensor:
        b = self._bufs.get(i)
        if b is None:
            b = torch.empty(self.rows, self.cols, dtype=torch.float32, device=self.device)
            self._bufs[i] = b
        return b[:n]


def _eager_forward(raw, lab, s, inv_t, want_ent, want_sent, ws):
    """_chunk_forward without top-k, in the workspace's buffers (same math)."""
    n = raw.shape[0]
    x = ws.buf(0, n)
    x.copy_(raw)
    if inv_t != 1.0:
        x.mul_(inv_t)
    x_lab = x.gather(1, lab[:, None])[:, 0]
    m = x.amax(1, keepdim=True)
    x.sub_(m)  # x - max
    scalar = not isinstance(s, torch.Tensor)
    s_row = s if scalar else s.view(-1)
    plain = scalar and s == 1.0
    ent = sent = e = None
    if want_ent or plain:
        e = torch.exp(x, out=ws.buf(1, n))
        z = e.sum(1)
        logz = torch.log(z)
        if want_ent or want_sent:
            ent = logz - _dot_into(e, x, ws.buf(2, n)) / z
    if plain:
        lse = m.view(-1) + logz
        logp = x_lab - lse
        if want_sent:
            sent = ent.clone()
        return logp, (ent if want_ent else None), sent, lse, None
    if e is not None and scalar and s == 2.0:
        es = e.mul_(e)
    elif e is not None and scalar and s == 0.5:
        es = e.sqrt_()
    else:
        es = torch.mul(x, s, out=ws.buf(1, n)).exp_()
    zs = es.sum(1)
    lse = s_row * m.view(-1) + torch.log(zs)
    logp = s_row * x_lab - lse
    if want_sent:
        sent = torch.log(zs) - s_row * _dot_into(es, x, ws.buf(2, n)) / zs
    return logp, ent, sent, lse, None


def _dot_into(a, b, out):
    return torch.mul(a, b, out=out).sum(1)


def _eager_grad(raw, lab, s, lse, g, inv_t, ws):
    """_chunk_grad without top-k, in a workspace buffer (valid until the next chunk)."""
    n = raw.shape[0]
    q = ws.buf(0, n)
    q.copy_(raw)
    scalar = not isinstance(s, torch.Tensor)
    q.mul_(s * inv_t)
    q.sub_(lse[:, None]).exp_()
    gs = (g * (s if scalar else s.view(-1)))[:, None]
    q.mul_(-gs)
    q.scatter_add_(1, lab[:, None], gs)
    return q


def _fwd(raw, lab, s, topk, inv_t, want_ent, want_sent, compiled, ws=None):
    """One chunk's forward from raw rows (the logits' dtype or a fresh float projection)."""
    if compiled and topk is None:
        if isinstance(s, torch.Tensor):
            mode = "exp"
        else:
            mode = {1.0: "plain", 2.0: "square", 0.5: "sqrt"}.get(float(s), "exp")
            if mode in ("square", "sqrt") and not want_ent:
                mode = "exp"  # without the entropy there is no exp(x) to reuse
        inv = torch.tensor(inv_t, dtype=torch.float32, device=raw.device)
        lp, en, se, ls = _compiled("fwd")(
            raw, lab, _column(s, raw.shape[0], raw.device), inv, mode, want_ent, want_sent
        )
        return lp, en, se, ls, None
    if topk is None and ws is not None:
        return _eager_forward(raw, lab, s, inv_t, want_ent, want_sent, ws)
    x, _ = _load(raw, inv_t)
    return _chunk_forward(x, lab, s, topk, want_ent, want_sent)


def _grad(raw, lab, s, lse, topidx, g, inv_t, compiled, out_dtype, owned_ok, ws=None):
    """One chunk's d(sum g * logp)/d(raw rows), in ``out_dtype`` (g already carries 1/T)."""
    if compiled and topidx is None:
        inv = torch.tensor(inv_t, dtype=torch.float32, device=raw.device)
        col = _column(s, raw.shape[0], raw.device)
        return _compiled("grad")(raw, lab, col, lse, g, inv, out_dtype)
    if topidx is None and ws is not None:
        return _eager_grad(raw, lab, s, lse, g, inv_t, ws)
    x, owned = _load(raw, inv_t)
    return _chunk_grad(x, lab, s, lse, topidx, g, owned or owned_ok)  # copy_ casts


# --------------------------------------------------------------------------------------------
# argument handling shared by the two entry points


def _prepare(shape, labels, scale, topk, mask, chunk_size, device, vocab):
    batch, seq = shape
    if labels.shape != (batch, seq):
        raise ValueError(f"labels must have shape {(batch, seq)}, got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be int64 or int32, got {labels.dtype}")
    if mask is None:
        mask_b = torch.ones(batch, seq, dtype=torch.bool, device=device)
    else:
        if mask.shape != (batch, seq):
            raise ValueError(f"mask must have shape {(batch, seq)}, got {tuple(mask.shape)}")
        mask_b = mask.to(device=device, dtype=torch.bool)
    labels = labels.to(device=device, dtype=torch.int64)
    bad = mask_b & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        raise ValueError(
            f"labels at masked-in positions must be in [0, {vocab}), found {labels[bad][0].item()}"
        )
    labels = torch.where(mask_b, labels, 0)
    if topk is not None:
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= vocab:
            raise ValueError(f"topk must be an int in [1, {vocab}], got {topk!r}")
    if chunk_size is None:
        chunk_size = default_chunk_size(vocab, device)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    scales: list[float] | None
    if scale is None:
        scales, scale_rows = None, None
    else:
        if isinstance(scale, torch.Tensor):
            st = scale.detach().to(device=device, dtype=torch.float32)
            if st.ndim == 0:
                st = st.expand(batch)
            if st.shape != (batch,):
                raise ValueError(
                    f"scale must be a float or have shape ({batch},), got {tuple(st.shape)}"
                )
        else:
            st = torch.full((batch,), float(scale), dtype=torch.float32, device=device)
        scales = st.tolist()
        if not all(math.isfinite(v) and v > 0 for v in scales):
            raise ValueError(f"scale must be finite and > 0, got {scales}")
        if all(v == 1.0 for v in scales):
            scales = None
        scale_rows = st.repeat_interleave(seq)[:, None]
    return labels.reshape(-1), mask_b, scales, scale_rows, topk, chunk_size


def _temperature(temperature) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    return t


def _chunk_scale(c: _Chunk, scale_rows, seq):
    if c.scale is not None:
        return c.scale
    o0, o1 = c.out_range(seq)
    return scale_rows[o0:o1]


class _LogitsFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, mask_b, plan, scale_rows, topk, inv_t, want_ent, want_sent):
        batch, seq, _ = logits.shape
        n = batch * seq
        dev = logits.device
        logp = torch.zeros(n, dtype=torch.float32, device=dev)
        lse = torch.zeros(n, dtype=torch.float32, device=dev)
        ent = torch.zeros(n, dtype=torch.float32, device=dev) if want_ent else None
        sent = torch.zeros(n, dtype=torch.float32, device=dev) if want_sent else None
        topidx = torch.zeros(n, topk, dtype=torch.int64, device=dev) if topk is not None else None
        rows = _Rows(logits, plan.flat)
        ws = _workspace(plan, logits.shape[2], logits.device)
        for c in plan.chunks:
            o0, o1 = c.out_range(seq)
            s = _chunk_scale(c, scale_rows, seq)
            lp, en, se, ls, ti = _fwd(
                rows.get(c), labels[o0:o1], s, topk, inv_t, want_ent, want_sent, plan.compiled, ws
            )
            logp[o0:o1] = lp
            lse[o0:o1] = ls
            if want_ent:
                ent[o0:o1] = en
            if want_sent:
                sent[o0:o1] = se
            if ti is not None:
                topidx[o0:o1] = ti
        m = mask_b.reshape(-1)
        logp = torch.where(m, logp, 0.0)
        ctx.save_for_backward(logits, labels, m, lse, scale_rows, topidx)
        ctx.plan, ctx.inv_t = plan, inv_t
        outs = [logp.view(batch, seq)]
        for t in (ent, sent):
            outs.append(torch.where(m, t, 0.0).view(batch, seq) if t is not None else None)
        ctx.mark_non_differentiable(*[t for t in outs[1:] if t is not None])
        return tuple(outs)

    @staticmethod
    def backward(ctx, g_logp, _g_ent, _g_sent):
        logits, labels, m, lse, scale_rows, topidx = ctx.saved_tensors
        plan = ctx.plan
        if g_logp is None or not ctx.needs_input_grad[0]:
            return (None,) * 9
        seq = logits.shape[1]
        g = torch.where(m, g_logp.reshape(-1).float(), 0.0) * ctx.inv_t
        grad = torch.zeros_like(logits)
        rows = _Rows(logits, plan.flat)
        grows = _Rows(grad, plan.flat)
        ws = _workspace(plan, logits.shape[2], logits.device)
        for c in plan.chunks:
            o0, o1 = c.out_range(seq)
            s = _chunk_scale(c, scale_rows, seq)
            ti = topidx[o0:o1] if topidx is not None else None
            dz = _grad(
                rows.get(c),
                labels[o0:o1],
                s,
                lse[o0:o1],
                ti,
                g[o0:o1],
                ctx.inv_t,
                plan.compiled,
                grad.dtype,
                False,
                ws,
            )
            grows.get(c).copy_(dz)
        return grad, None, None, None, None, None, None, None, None


@dataclass(frozen=True)
class _Plan:
    chunks: list[_Chunk]
    flat: bool
    compiled: bool = False


def _workspace(plan: _Plan, vocab: int, device) -> _Workspace | None:
    if plan.compiled or not plan.chunks:
        return None
    return _Workspace(max(c.r1 - c.r0 for c in plan.chunks), vocab, device)


def _make_plan(x, mask_b, scales, chunk_size, compiled=False) -> _Plan:
    if not isinstance(compiled, bool):
        raise ValueError(f"compile must be a bool, got {compiled!r}")
    flat = _flat_view(x) is not None
    return _Plan(_plan(_spans(mask_b), x.shape[1], flat, chunk_size, scales), flat, compiled)


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
        kernels: on CPU about 3-5x faster per chunk than the eager ops; the first call compiles
        for some seconds). Not used with ``topk``.

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
    batch, seq, vocab = logits.shape
    labels_f, mask_b, scales, scale_rows, topk, chunk = _prepare(
        (batch, seq), labels, scale, topk, mask, chunk_size, logits.device, vocab
    )
    plan = _make_plan(logits, mask_b, scales, chunk, compile)
    logp, ent, sent = _LogitsFn.apply(
        logits,
        labels_f,
        mask_b,
        plan,
        scale_rows,
        topk,
        1.0 / _temperature(temperature),
        return_entropy,
        return_scaled_entropy,
    )
    return TokenStats(logp, ent, sent)


# --------------------------------------------------------------------------------------------
# from hidden states: the [B, T, V] logits never exist, only one chunk of them at a time


class _HiddenFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden,
        weight,
        bias,
        labels,
        mask_b,
        plan,
        scale_rows,
        topk,
        inv_t,
        want_ent,
        want_sent,
    ):
        batch, seq, _ = hidden.shape
        n = batch * seq
        dev = hidden.device
        logp = torch.zeros(n, dtype=torch.float32, device=dev)
        lse = torch.zeros(n, dtype=torch.float32, device=dev)
        ent = torch.zeros(n, dtype=torch.float32, device=dev) if want_ent else None
        sent = torch.zeros(n, dtype=torch.float32, device=dev) if want_sent else None
        topidx = torch.zeros(n, topk, dtype=torch.int64, device=dev) if topk is not None else None
        rows = _Rows(hidden, plan.flat)
        ws = _workspace(plan, weight.shape[0], hidden.device)
        for c in plan.chunks:
            o0, o1 = c.out_range(seq)
            s = _chunk_scale(c, scale_rows, seq)
            lp, en, se, ls, ti = _fwd(
                _project(rows.get(c), weight, bias),
                labels[o0:o1],
                s,
                topk,
                inv_t,
                want_ent,
                want_sent,
                plan.compiled,
                ws,
            )
            logp[o0:o1] = lp
            lse[o0:o1] = ls
            if want_ent:
                ent[o0:o1] = en
            if want_sent:
                sent[o0:o1] = se
            if ti is not None:
                topidx[o0:o1] = ti
        m = mask_b.reshape(-1)
        logp = torch.where(m, logp, 0.0)
        ctx.save_for_backward(hidden, weight, bias, labels, m, lse, scale_rows, topidx)
        ctx.plan, ctx.has_bias, ctx.inv_t = plan, bias is not None, inv_t
        outs = [logp.view(batch, seq)]
        for t in (ent, sent):
            outs.append(torch.where(m, t, 0.0).view(batch, seq) if t is not None else None)
        ctx.mark_non_differentiable(*[t for t in outs[1:] if t is not None])
        return tuple(outs)

    @staticmethod
    def backward(ctx, g_logp, _g_ent, _g_sent):
        hidden, weight, bias, labels, m, lse, scale_rows, topidx = ctx.saved_tensors
        plan = ctx.plan
        none = (None,) * 8
        if g_logp is None:
            return (None, None, None, *none)
        seq = hidden.shape[1]
        g = torch.where(m, g_logp.reshape(-1).float(), 0.0) * ctx.inv_t
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )
        grad_b = (
            torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
            if need_b and ctx.has_bias
            else None
        )
        rows = _Rows(hidden, plan.flat)
        grows = _Rows(grad_h, plan.flat) if need_h else None
        ws = _workspace(plan, weight.shape[0], hidden.device)
        for c in plan.chunks:
            o0, o1 = c.out_range(seq)
            h = rows.get(c)
            s = _chunk_scale(c, scale_rows, seq)
            ti = topidx[o0:o1] if topidx is not None else None
            dz = _grad(
                _project(h, weight, bias),
                labels[o0:o1],
                s,
                lse[o0:o1],
                ti,
                g[o0:o1],
                ctx.inv_t,
                plan.compiled,
                torch.float32,
                True,
                ws,
            )
            if need_h:
                grows.get(c).copy_(dz.to(weight.dtype) @ weight)
            if need_w:
                grad_w.addmm_(dz.t(), h.float())
            if grad_b is not None:
                grad_b.add_(dz.sum(0))
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(bias.dtype) if grad_b is not None else None
        return (grad_h, grad_w, grad_b, *none)


def _project(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    z = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
    return z.float()


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
) -> TokenStats:
    """As :func:`token_logprobs` with ``logits = hidden @ weight.T (+ bias)``, never materialised.

    Each chunk of rows is projected onto the vocabulary (in the inputs' dtype, as the model's
    ``lm_head`` would), used and dropped; backward recomputes it and accumulates the weight
    gradient in float32. Gradients flow to ``hidden``, ``weight`` and ``bias``.

    Args:
      hidden: ``[B, T, D]`` final hidden states (after the final norm).
      weight: ``[V, D]`` output embedding (``lm_head.weight``).
      bias: optional ``[V]``.
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
    batch, seq, _ = hidden.shape
    vocab = weight.shape[0]
    labels_f, mask_b, scales, scale_rows, topk, chunk = _prepare(
        (batch, seq), labels, scale, topk, mask, chunk_size, hidden.device, vocab
    )
    plan = _make_plan(hidden, mask_b, scales, chunk, compile)
    logp, ent, sent = _HiddenFn.apply(
        hidden,
        weight,
        bias,
        labels_f,
        mask_b,
        plan,
        scale_rows,
        topk,
        1.0 / _temperature(temperature),
        return_entropy,
        return_scaled_entropy,
    )
    return TokenStats(logp, ent, sent)
