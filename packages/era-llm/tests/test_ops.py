"""era_llm.ops against a naive float64 reference: full log-softmax of the scaled logits."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from era_llm.ops import token_logprobs, token_logprobs_from_hidden


def reference(logits, labels, scale=None, topk=None, mask=None):
    """float64, whole tensor at once, one response at a time (the naive path)."""
    z = logits.double()
    batch, seq, _ = z.shape
    c = torch.ones(batch, dtype=torch.float64) if scale is None else torch.as_tensor(scale)
    c = c.double().expand(batch)
    mask = torch.ones(batch, seq, dtype=torch.bool) if mask is None else mask.bool()
    lab = torch.where(mask, labels, 0)
    logp, ent, sent = [], [], []
    for b in range(batch):
        zs = z[b] * c[b]
        if topk is not None:
            keep = torch.zeros_like(zs, dtype=torch.bool)
            keep.scatter_(1, torch.topk(z[b], topk, dim=1).indices, True)
            filt = torch.where(keep, zs, -math.inf)
            sp = torch.softmax(filt, 1)
            sent.append(-(sp * torch.where(keep, torch.log_softmax(filt, 1), 0.0)).sum(1))
            keep.scatter_(1, lab[b][:, None], True)  # the label joins the candidates
            zs = torch.where(keep, zs, -math.inf)
        lp = torch.log_softmax(zs, 1)
        logp.append(lp.gather(1, lab[b][:, None])[:, 0])
        if topk is None:
            sent.append(-(lp.exp() * lp).sum(1))
        p0 = torch.log_softmax(z[b], 1)
        ent.append(-(p0.exp() * p0).sum(1))
    zero = torch.zeros((), dtype=torch.float64)
    return tuple(torch.where(mask, torch.stack(t), zero) for t in (logp, ent, sent))


def padded_mask(batch, seq, gen):
    """Left padding, right padding, an interior hole and one empty response."""
    mask = torch.ones(batch, seq, dtype=torch.bool)
    for b in range(batch):
        lo = int(torch.randint(0, seq // 3 + 1, (), generator=gen))
        hi = int(torch.randint(max(lo + 1, seq // 2), seq + 1, (), generator=gen))
        mask[b, :lo] = False
        mask[b, hi:] = False
    mask[0, (mask[0].nonzero()[0, 0] + 1).item() :][:1] = False  # hole
    if batch > 2:
        mask[-1] = False
    return mask


SCALES = {
    "none": None,
    "float": 0.7,
    "era": torch.tensor([2.0, 1.0, 0.5, 2.0]),
    "random": torch.tensor([1.3, 0.25, 3.0, 1.0]),
    "ones": torch.ones(4),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("chunk_size", [None, 2, 5])
@pytest.mark.parametrize("sliced", [False, True])
def test_logits_match_reference(dtype, scale, topk, chunk_size, sliced):
    gen = torch.Generator().manual_seed(0)
    batch, seq, vocab = 4, 9, 37
    full = (3 * torch.randn(batch, seq + 1, vocab, generator=gen)).to(dtype)
    logits = full[:, :-1] if sliced else full[:, :seq].contiguous()
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    mask = padded_mask(batch, seq, gen)
    labels = torch.where(mask, labels, -100)  # ignored positions may hold anything
    leaf = logits.detach().requires_grad_(True)
    out = token_logprobs(
        leaf,
        labels,
        scale=SCALES[scale],
        topk=topk,
        mask=mask,
        chunk_size=chunk_size,
        return_scaled_entropy=True,
    )
    ref_leaf = logits.detach().double().requires_grad_(True)
    ref = reference(ref_leaf, labels, SCALES[scale], topk, mask)
    assert out.logprobs.dtype == out.entropy.dtype == torch.float32
    for got, want in zip((out.logprobs, out.entropy, out.scaled_entropy), ref, strict=True):
        torch.testing.assert_close(got.double(), want.detach(), atol=1e-4, rtol=1e-5)
    assert not out.entropy.requires_grad and not out.scaled_entropy.requires_grad
    weights = torch.randn(batch, seq, generator=gen)
    (out.logprobs * weights).sum().backward()
    (ref[0] * weights.double()).sum().backward()
    assert leaf.grad.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(leaf.grad.double(), ref_leaf.grad, atol=tol, rtol=tol)
    assert torch.all(leaf.grad[~mask] == 0)


def test_from_hidden_matches_reference_with_gradients():
    gen = torch.Generator().manual_seed(1)
    batch, seq, dim, vocab = 4, 7, 16, 53
    hidden = torch.randn(batch, seq, dim, generator=gen, requires_grad=True)
    weight = torch.randn(vocab, dim, generator=gen, requires_grad=True)
    bias = torch.randn(vocab, generator=gen, requires_grad=True)
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    mask = padded_mask(batch, seq, gen)
    scale = torch.tensor([2.0, 1.0, 0.5, 1.0])
    for topk in (None, 5):
        out = token_logprobs_from_hidden(
            hidden, weight, labels, bias=bias, scale=scale, mask=mask, topk=topk, chunk_size=3
        )
        params = [p.detach().double().requires_grad_(True) for p in (hidden, weight, bias)]
        logits = params[0] @ params[1].T + params[2]
        ref = reference(logits, labels, scale, topk, mask)
        torch.testing.assert_close(out.logprobs.double(), ref[0].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.entropy.double(), ref[1], atol=1e-5, rtol=1e-5)
        w = torch.randn(batch, seq, generator=gen)
        grads = torch.autograd.grad((out.logprobs * w).sum(), (hidden, weight, bias))
        want = torch.autograd.grad((ref[0] * w.double()).sum(), params)
        for g, r in zip(grads, want, strict=True):
            torch.testing.assert_close(g.double(), r, atol=1e-4, rtol=1e-4)


def test_from_hidden_bf16_matches_logits_path():
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 6, 32, generator=gen).bfloat16()
    weight = torch.randn(300, 32, generator=gen).bfloat16()
    labels = torch.randint(0, 300, (2, 6), generator=gen)
    a = token_logprobs_from_hidden(hidden, weight, labels, scale=torch.tensor([0.5, 2.0]))
    b = token_logprobs(hidden @ weight.T, labels, scale=torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(a.logprobs, b.logprobs)
    torch.testing.assert_close(a.entropy, b.entropy)


def test_vocabulary_152k_bf16():
    gen = torch.Generator().manual_seed(3)
    vocab = 152_064
    logits = (4 * torch.randn(2, 3, vocab, generator=gen)).bfloat16().requires_grad_(True)
    labels = torch.randint(0, vocab, (2, 3), generator=gen)
    labels[0, 0] = vocab - 1
    scale = torch.tensor([2.0, 0.5])
    out = token_logprobs(logits, labels, scale=scale)
    ref_leaf = logits.detach().double().requires_grad_(True)
    ref = reference(ref_leaf, labels, scale)
    torch.testing.assert_close(out.logprobs.double(), ref[0].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.entropy.double(), ref[1], atol=1e-5, rtol=1e-5)
    out.logprobs.sum().backward()
    ref[0].sum().backward()
    torch.testing.assert_close(logits.grad.double(), ref_leaf.grad, atol=1e-2, rtol=1e-2)


def test_topk_keeps_only_k_largest_and_label_outside_is_finite():
    logits = torch.tensor([[[5.0, 4.0, 0.0, -1.0]]])
    # label 1 is in the top 2: renormalised over {5, 4}
    inside = token_logprobs(logits, torch.tensor([[1]]), topk=2).logprobs
    assert inside.item() == pytest.approx(4 - math.log(math.exp(5) + math.exp(4)), abs=1e-6)
    # label 3 is outside: renormalised over {5, 4, -1}
    outside = token_logprobs(logits, torch.tensor([[3]]), topk=2).logprobs
    want = -1 - math.log(math.exp(5) + math.exp(4) + math.exp(-1))
    assert outside.item() == pytest.approx(want, abs=1e-6)


def test_extreme_logits_stay_finite():
    logits = torch.tensor([[[1e4, -1e4, 0.0], [-3e4, 3e4, 3e4]]], requires_grad=True)
    labels = torch.tensor([[1, 0]])
    out = token_logprobs(logits, labels, scale=torch.tensor([2.0]))
    assert torch.isfinite(out.logprobs).all() and torch.isfinite(out.entropy).all()
    assert out.entropy[0, 1].item() == pytest.approx(math.log(2), abs=1e-6)
    out.logprobs.sum().backward()
    assert torch.isfinite(logits.grad).all()


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 4),
    seq=st.integers(1, 6),
    vocab=st.integers(2, 40),
    chunk=st.integers(1, 8),
    scales=st.lists(st.sampled_from([0.5, 1.0, 2.0, 0.3, 4.0]), min_size=4, max_size=4),
    topk=st.one_of(st.none(), st.integers(1, 5)),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference(batch, seq, vocab, chunk, scales, topk, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = 5 * torch.randn(batch, seq, vocab, generator=gen)
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    mask = torch.rand(batch, seq, generator=gen) < 0.7
    scale = torch.tensor(scales[:batch])
    topk = None if topk is None else min(topk, vocab)
    out = token_logprobs(logits, labels, scale=scale, topk=topk, mask=mask, chunk_size=chunk)
    ref = reference(logits, labels, scale, topk, mask)
    torch.testing.assert_close(out.logprobs.double(), ref[0], atol=5e-5, rtol=5e-5)
    torch.testing.assert_close(out.entropy.double(), ref[1], atol=5e-5, rtol=5e-5)


def test_no_entropy_requested():
    logits = torch.randn(2, 3, 10)
    labels = torch.randint(0, 10, (2, 3))
    for scale in (None, torch.tensor([2.0, 0.7])):
        out = token_logprobs(logits, labels, scale=scale, return_entropy=False)
        assert out.entropy is None and out.scaled_entropy is None
        ref = reference(logits, labels, scale)
        torch.testing.assert_close(out.logprobs.double(), ref[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.0}, "scale must be finite and > 0"),
        ({"scale": torch.tensor([1.0, -2.0])}, "scale must be finite and > 0"),
        ({"scale": torch.ones(3)}, "scale must be a float or have shape"),
        ({"topk": 0}, "topk must be an int"),
        ({"topk": 11}, "topk must be an int"),
        ({"chunk_size": 0}, "chunk_size must be a positive int"),
        ({"mask": torch.ones(2, 4)}, "mask must have shape"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        token_logprobs(torch.randn(2, 3, 10), torch.zeros(2, 3, dtype=torch.long), **kwargs)


def test_bad_labels():
    with pytest.raises(ValueError, match=r"labels at masked-in positions must be in \[0, 10\)"):
        token_logprobs(torch.randn(1, 2, 10), torch.tensor([[3, 10]]))
    with pytest.raises(ValueError, match="labels must have shape"):
        token_logprobs(torch.randn(1, 2, 10), torch.tensor([3, 1]))


@pytest.mark.parametrize("topk", [None, 4])
def test_temperature_divides_before_the_scale(topk):
    gen = torch.Generator().manual_seed(9)
    hidden = torch.randn(3, 5, 8, generator=gen, requires_grad=True)
    weight = torch.randn(40, 8, generator=gen)
    labels = torch.randint(0, 40, (3, 5), generator=gen)
    scale = torch.tensor([2.0, 1.0, 0.5])
    logits = (hidden @ weight.T).detach().requires_grad_(True)
    a = token_logprobs(logits, labels, scale=scale, topk=topk, temperature=0.6)
    b = token_logprobs_from_hidden(hidden, weight, labels, scale=scale, topk=topk, temperature=0.6)
    ref_leaf = logits.detach().double().requires_grad_(True)
    ref = reference(ref_leaf / 0.6, labels, scale, topk)
    for out in (a, b):
        torch.testing.assert_close(out.logprobs.double(), ref[0].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.entropy.double(), ref[1], atol=1e-5, rtol=1e-5)
    a.logprobs.sum().backward()
    ref[0].sum().backward()
    torch.testing.assert_close(logits.grad.double(), ref_leaf.grad, atol=1e-5, rtol=1e-5)
    gh = torch.autograd.grad(b.logprobs.sum(), hidden)[0]
    torch.testing.assert_close(gh, logits.grad @ weight, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        token_logprobs(logits, labels, temperature=0.0)


def test_compiled_kernels_match_reference():
    """compile=True runs the fused torch.compile kernels (forward and backward)."""
    gen = torch.Generator().manual_seed(10)
    batch, seq, vocab = 4, 9, 37
    full = (3 * torch.randn(batch, seq + 1, vocab, generator=gen)).bfloat16()
    logits = full[:, :-1].detach().requires_grad_(True)
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    mask = padded_mask(batch, seq, gen)
    scale = torch.tensor([2.0, 1.0, 0.5, 1.3])
    out = token_logprobs(
        logits,
        labels,
        scale=scale,
        mask=mask,
        chunk_size=4,
        temperature=0.9,
        return_scaled_entropy=True,
        compile=True,
    )
    ref_leaf = logits.detach().double().requires_grad_(True)
    ref = reference(ref_leaf / 0.9, labels, scale, None, mask)
    for got, want in zip((out.logprobs, out.entropy, out.scaled_entropy), ref, strict=True):
        torch.testing.assert_close(got.double(), want.detach(), atol=1e-4, rtol=1e-5)
    out.logprobs.sum().backward()
    ref[0].sum().backward()
    torch.testing.assert_close(logits.grad.double(), ref_leaf.grad, atol=2e-2, rtol=2e-2)
    # the hidden-state path through the same kernels
    hidden = torch.randn(2, 5, 8, generator=gen, requires_grad=True)
    weight = torch.randn(37, 8, generator=gen, requires_grad=True)
    lab = labels[:2, :5]
    a = token_logprobs_from_hidden(hidden, weight, lab, scale=scale[:2], compile=True)
    b = token_logprobs_from_hidden(hidden, weight, lab, scale=scale[:2])
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)
    ga = torch.autograd.grad(a.logprobs.sum(), (hidden, weight))
    gb = torch.autograd.grad(b.logprobs.sum(), (hidden, weight))
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# the package's structure: public surface, planning, kernels, strategy


def test_public_api_and_keyword_only_options():
    import inspect

    import era_llm
    import era_llm.ops as ops

    assert set(ops.__all__) == {
        "TokenStats",
        "default_chunk_size",
        "token_logprobs",
        "token_logprobs_from_hidden",
    }
    assert era_llm.token_logprobs is ops.token_logprobs
    assert era_llm.token_logprobs_from_hidden is ops.token_logprobs_from_hidden
    assert era_llm.TokenStats is ops.TokenStats
    options = {
        "scale": None,
        "topk": None,
        "mask": None,
        "chunk_size": None,
        "temperature": 1.0,
        "return_entropy": True,
        "return_scaled_entropy": False,
        "compile": False,
    }
    for fn, positional, extra in (
        (ops.token_logprobs, ["logits", "labels"], {}),
        (
            ops.token_logprobs_from_hidden,
            ["hidden", "weight", "labels"],
            {"bias": None, "backward_context": None},
        ),
    ):
        params = inspect.signature(fn).parameters
        assert [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
        keyword = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
        assert keyword == {**extra, **options}


def test_no_private_torch_api():
    """The package uses torch's public API only (no ``torch.<...>._name`` attribute)."""
    import ast
    from pathlib import Path

    import era_llm.ops as ops

    for path in sorted(Path(ops.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                parts = [node.attr]
                base = node.value
                while isinstance(base, ast.Attribute):
                    parts.append(base.attr)
                    base = base.value
                if isinstance(base, ast.Name) and base.id == "torch":
                    private = [p for p in parts if p.startswith("_")]
                    assert not private, f"{path.name}:{node.lineno} uses torch private {private}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
                assert not any(p.startswith("_") for p in node.module.split(".")), path.name


def test_default_chunk_size():
    from era_llm.ops import default_chunk_size

    assert default_chunk_size(32_000) == (1 << 22) // 32_000
    assert default_chunk_size(152_064, "cuda") == (1 << 26) // 152_064
    assert default_chunk_size(10) == 8192  # capped
    assert default_chunk_size(1 << 30) == 1  # at least one row


def test_plan_packs_neighbours_splits_long_spans_and_skips_padding():
    from era_llm.ops._chunks import Chunk, plan_chunks, response_spans

    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[0, 7:10] = True  # left padding
    mask[1, 0:3] = True  # right padding
    mask[3, 0:10] = True  # response 2 is empty
    spans = response_spans(mask)
    assert spans == [(7, 10), (0, 3), (0, 0), (0, 10)]
    # flattened rows: responses 0 and 1 are adjacent (no gap) and fit one chunk; 3 is split
    flat = plan_chunks(spans, 10, flat=True, rows_per_chunk=8, scales=[2.0, 2.0, 1.0, 0.5])
    assert flat == [Chunk(None, 7, 13, 2.0), Chunk(None, 30, 38, 0.5), Chunk(None, 38, 40, 0.5)]
    mixed = plan_chunks(spans, 10, flat=True, rows_per_chunk=8, scales=[2.0, 1.0, 1.0, 0.5])
    assert mixed[0] == Chunk(None, 7, 13, None)  # two scales: the per-row column is used
    per_response = plan_chunks(spans, 10, flat=False, rows_per_chunk=4, scales=None)
    assert per_response == [
        Chunk(0, 7, 10, 1.0),
        Chunk(1, 0, 3, 1.0),
        Chunk(3, 0, 4, 1.0),
        Chunk(3, 4, 8, 1.0),
        Chunk(3, 8, 10, 1.0),
    ]
    assert [c.tokens(10) for c in per_response[3:]] == [slice(34, 38), slice(38, 40)]


def test_scale_mode_shortcuts():
    from era_llm.ops._kernels import ScaleMode, scale_mode

    assert scale_mode(1.0, entropy=False) is ScaleMode.PLAIN
    assert scale_mode(2.0, entropy=True) is ScaleMode.SQUARE
    assert scale_mode(0.5, entropy=True) is ScaleMode.SQRT
    # without the entropy there is no exp(x - m) to reuse: one exp of the scaled rows
    assert scale_mode(2.0, entropy=False) is ScaleMode.EXP
    assert scale_mode(0.7, entropy=True) is ScaleMode.EXP
    assert scale_mode(torch.full((3, 1), 2.0), entropy=True) is ScaleMode.EXP


@pytest.mark.parametrize("mode_scale", [1.0, 2.0, 0.5, 0.7, "column"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernels_same_with_and_without_workspace(mode_scale, dtype):
    """One kernel body, two ways: into workspace buffers (eager) or into new tensors (the way
    torch.compile traces it); both give the same bits."""
    from era_llm.ops._kernels import (
        Workspace,
        scale_mode,
        softmax_backward,
        softmax_forward,
        topk_backward,
        topk_forward,
    )

    gen = torch.Generator().manual_seed(11)
    raw = (3 * torch.randn(6, 29, generator=gen)).to(dtype)
    before = raw.clone()
    labels = torch.randint(0, 29, (6,), generator=gen)
    scale = torch.rand(6, 1, generator=gen) + 0.5 if mode_scale == "column" else mode_scale
    g = torch.randn(6, generator=gen)
    flags = {"entropy": True, "scaled_entropy": True}
    mode = scale_mode(scale, entropy=True)
    for inv_t in (1.0, 1 / 0.7):
        results = []
        for ws in (Workspace(8, 29, raw.device), None):
            fwd = softmax_forward(raw, labels, scale, inv_t, mode=mode, workspace=ws, **flags)
            bwd = softmax_backward(raw, labels, scale, fwd.log_partition, g, inv_t, ws).clone()
            top = topk_forward(raw, labels, scale, inv_t, topk=4, workspace=ws, **flags)
            top_bwd = topk_backward(
                raw, labels, scale, top.log_partition, top.top_indices, g, inv_t, ws
            ).clone()
            results.append([*fwd[:4], bwd, *top[:4], top_bwd])
        for a, b in zip(*results, strict=True):
            assert torch.equal(a, b)
        assert torch.equal(raw, before)  # input rows are only read


@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_float32_inputs_are_not_modified(topk, temperature):
    gen = torch.Generator().manual_seed(12)
    full = torch.randn(3, 8, 20, generator=gen)
    labels = torch.randint(0, 20, (3, 7), generator=gen)
    for logits in (full[:, :-1], full[:, 1:].contiguous()):
        leaf = logits.detach().clone().requires_grad_(True)
        kept = leaf.detach().clone()
        out = token_logprobs(
            leaf, labels, scale=torch.tensor([2.0, 1.0, 0.5]), topk=topk, temperature=temperature
        )
        out.logprobs.sum().backward()
        assert torch.equal(leaf.detach(), kept)
    hidden = torch.randn(3, 7, 5, generator=gen, requires_grad=True)
    weight = torch.randn(20, 5, generator=gen, requires_grad=True)
    kept = hidden.detach().clone(), weight.detach().clone()
    out = token_logprobs_from_hidden(hidden, weight, labels, topk=topk, temperature=temperature)
    out.logprobs.sum().backward()
    assert torch.equal(hidden.detach(), kept[0]) and torch.equal(weight.detach(), kept[1])


def test_compile_must_be_a_bool():
    with pytest.raises(ValueError, match="compile must be a bool, got 1"):
        token_logprobs(torch.randn(1, 2, 5), torch.zeros(1, 2, dtype=torch.long), compile=1)


def test_everything_masked_out_gives_zeros():
    logits = torch.randn(2, 3, 7, requires_grad=True)
    labels = torch.full((2, 3), -100)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for topk in (None, 2):
        out = token_logprobs(logits, labels, mask=mask, topk=topk, return_scaled_entropy=True)
        for t in (out.logprobs, out.entropy, out.scaled_entropy):
            assert torch.equal(t, torch.zeros(2, 3))
        (grad,) = torch.autograd.grad(out.logprobs.sum(), logits)
        assert torch.equal(grad, torch.zeros_like(logits))


@pytest.mark.parametrize("topk", [None, 4])
def test_autocast_backward_matches_forward_dtype(topk):
    """Guards defect 7 (autocast): fp32 hidden states and head under bf16 autocast project in
    bf16 in forward; backward must recompute the logits in bf16 too (the autocast state replayed,
    as ``torch.amp.custom_fwd/custom_bwd`` do), or the recomputed softmax does not match the
    saved log-partition. Reference: autograd through the bf16 logits autocast produces, in
    float64 after the projection."""
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 6, 16, generator=gen, requires_grad=True)
    weight = (8 * torch.randn(40, 16, generator=gen)).requires_grad_()  # logits ~ 30: bf16 shows
    labels = torch.randint(0, 40, (2, 6), generator=gen)
    scale = torch.tensor([2.0, 0.5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = token_logprobs_from_hidden(hidden, weight, labels, scale=scale, topk=topk)
    out.logprobs.sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = hidden @ weight.t()
    assert z.dtype == torch.bfloat16
    zd = z.double() * scale.double()[:, None, None]
    if topk is not None:
        kept = zd.topk(topk, -1).indices
        keep = torch.zeros_like(zd, dtype=torch.bool).scatter_(-1, kept, True)
        keep.scatter_(-1, labels[..., None], True)
        zd = zd.masked_fill(~keep, -math.inf)
    ref = torch.log_softmax(zd, -1).gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(out.logprobs.double(), ref, atol=1e-4, rtol=1e-4)
    g_hidden, g_weight = torch.autograd.grad(ref.sum(), (hidden, weight))
    for ours, want in ((hidden.grad, g_hidden), (weight.grad, g_weight)):
        assert ours is not None and torch.isfinite(ours).all()
        rel = float((ours.double() - want.double()).norm() / want.double().norm())
        assert rel < 2e-2, rel
