"""The fused PyTorch softmax ERA (``era_core._softmax_era_torch``) against the array-API path.

``softmax_era`` sends torch tensors to one ``torch.autograd.Function`` with a closed-form
backward; ``_softmax_era_array`` is the same Eq. 15 in array-API operations (what NumPy, JAX
and array-api-strict run) with autograd's own backward. Values and gradients must agree, in
float32 and float64, on random, extreme and infinite inputs, and the fused backward must pass
``gradcheck`` in float64.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest

import era_core as ec
from era_core import _softmax_era as impl

fused = pytest.importorskip("era_core._softmax_era_torch")

torch = pytest.importorskip("torch")

MODES = ("paper", "exact")
TOLERANCE = {torch.float64: (1e-12, 1e-12), torch.float32: (2e-5, 2e-6)}


def reference(z, min_entropy: float, mode: str, tau: float = 4.0):
    """softmax_era through the array-API path, autograd's backward."""
    xp = array_api_compat.array_namespace(z)
    c = z.shape[-1]
    if mode == "exact":
        h_tau = impl._calibrated_h_tau(c, min_entropy, tau, impl._dtype_name(xp, z.dtype))
    else:
        h_tau = math.exp(min_entropy - 1.0)
    slope, offset = impl._affine(c, h_tau, tau)
    dtype = impl.compute_dtype(xp, z, "z")
    steps = impl._NEWTON_STEPS["float64" if dtype == torch.float64 else "float32"]
    return impl._softmax_era_array(xp, z, dtype, slope, offset, tau=tau, mode=mode, steps=steps)


def inputs(c: int, seed: int) -> np.ndarray:
    """Random rows at three scales, one-hot, +-1e4, all-equal and near-one-hot rows."""
    rng = np.random.default_rng(seed)
    rows = [rng.normal(scale=s, size=(2, c)) for s in (0.3, 3.0, 30.0)]
    one_hot = np.zeros((1, c))
    one_hot[0, c // 2] = 1e4
    near = np.zeros((1, c))
    near[0, 0] = 12.0
    signs = np.where(np.arange(c) % 3 == 0, 1e4, -1e4)[None]
    return np.concatenate([*rows, one_hot, near, signs, np.full((1, c), 2.5)])


@pytest.fixture(params=["numpy", "torch"])
def kernels(request, monkeypatch):
    """Both ways the fused path computes log and sqrt on a CPU: NumPy's ufuncs on the tensors'
    memory (up to ``_NUMPY_MAX_THREADS`` torch threads) and torch's own kernels (more threads)."""
    if request.param == "torch":
        monkeypatch.setattr(fused, "_NUMPY_MAX_THREADS", 0)
    return request.param


class CountingNumpy:
    """Stands in for the fused module's ``np``: counts the ``log`` calls, passes everything on."""

    def __init__(self):
        self.logs = 0

    def log(self, *args, **kwargs):
        self.logs += 1
        return np.log(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(np, name)


def values_and_grads(fn, z: np.ndarray, dtype, upstream: np.ndarray):
    x = torch.tensor(z, dtype=dtype, requires_grad=True)
    out = fn(x)
    (grad,) = torch.autograd.grad(out, x, torch.tensor(upstream, dtype=dtype))
    return out.detach(), grad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    ("c", "min_entropy"),
    [(2, 0.3), (10, 0.6), (10, 2.2), (1000, 1.2), (1000, ec.softmax_era_bounds(1000)[1])],
)
def test_fused_equals_array_api_path(mode, dtype, c, min_entropy, kernels):
    z = inputs(c, seed=c)
    upstream = np.random.default_rng(1).normal(size=z.shape)
    got, got_grad = values_and_grads(
        lambda x: ec.softmax_era(x, min_entropy, mode=mode), z, dtype, upstream
    )
    want, want_grad = values_and_grads(
        lambda x: reference(x, min_entropy, mode), z, dtype, upstream
    )
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    torch.testing.assert_close(got_grad, want_grad, rtol=rtol, atol=10 * atol)
    assert torch.isfinite(got_grad).all()


@pytest.mark.parametrize("mode", MODES)
def test_fused_on_infinite_logits_matches_array_api_path(mode, kernels):
    """+-inf rows: same values; same gradients except where several logits of a row are
    infinite together (two +inf, or a row of -inf): there the fused backward gives the limit of
    the gradient as those logits grow together, the array path's clip gives 0."""
    z = np.tile(np.linspace(-2.0, 3.0, 10), (5, 1))
    z[0, 1] = np.inf
    z[1, [0, 9]] = np.inf
    z[2, [0, 4]] = [-np.inf, np.inf]
    z[3, :3] = -np.inf
    z[4, :] = -np.inf
    upstream = np.random.default_rng(2).normal(size=z.shape)
    for dtype in (torch.float32, torch.float64):
        got, got_grad = values_and_grads(
            lambda x: ec.softmax_era(x, 0.6, mode=mode), z, dtype, upstream
        )
        want, want_grad = values_and_grads(lambda x: reference(x, 0.6, mode), z, dtype, upstream)
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
        assert torch.isfinite(got_grad).all()
        keep = torch.ones(z.shape, dtype=torch.bool)
        keep[1, [0, 9]] = False
        keep[4] = False
        torch.testing.assert_close(got_grad[keep], want_grad[keep], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_gradcheck_float64(mode, scale, kernels):
    z = torch.tensor(
        scale * np.random.default_rng(3).normal(size=(3, 7)), dtype=torch.float64
    ).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ec.softmax_era(x, 0.8, mode=mode), (z,))


@pytest.mark.parametrize("mode", MODES)
def test_no_grad_forward_equals_autograd_forward(mode):
    z = torch.tensor(inputs(50, seed=4), dtype=torch.float32)
    with torch.no_grad():
        plain = ec.softmax_era(z, 1.0, mode=mode)
    tracked = ec.softmax_era(z.clone().requires_grad_(), 1.0, mode=mode)
    assert tracked.requires_grad and not plain.requires_grad
    torch.testing.assert_close(plain, tracked.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_half_precision_in_float32_out_input_dtype(mode):
    """float16/bfloat16 logits: computed in float32 (as the array path), returned rounded."""
    z = inputs(10, seed=5)
    for dtype, ulp in ((torch.float16, 2.0**-10), (torch.bfloat16, 2.0**-7)):
        x = torch.tensor(z, dtype=dtype).requires_grad_()
        out = ec.softmax_era(x, 0.6, mode=mode)
        assert out.dtype == dtype
        want = reference(torch.tensor(z, dtype=dtype), 0.6, mode)
        torch.testing.assert_close(out.detach(), want, rtol=ulp, atol=0)  # one ulp
        (grad,) = torch.autograd.grad(out.float().sum(), x)
        assert grad.dtype == dtype and torch.isfinite(grad).all()


@pytest.mark.parametrize("mode", MODES)
def test_traces_whole_under_torch_compile(mode):
    """Dynamo traces the Function without a graph break (fullgraph) and backward runs through
    it; aot_eager keeps the test free of a C++ compile."""
    z = torch.tensor(inputs(10, seed=6), dtype=torch.float32)
    labels = torch.arange(z.shape[0]) % 10

    def loss(x):
        return torch.nn.functional.cross_entropy(ec.softmax_era(x, 0.6, mode=mode), labels)

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    x = z.clone().requires_grad_()
    value = compiled(x)
    value.backward()
    eager_x = z.clone().requires_grad_()
    eager = loss(eager_x)
    eager.backward()
    torch.testing.assert_close(value, eager)
    torch.testing.assert_close(x.grad, eager_x.grad)


@pytest.mark.parametrize("mode", MODES)
def test_the_numpy_log_runs_in_eager_and_compiled_graphs_within_the_thread_rule(mode, monkeypatch):
    """Eager and compiled (through the ``era_core::cpu_log`` op) calls run NumPy's log on the
    CPU while torch has at most ``_NUMPY_MAX_THREADS`` threads; above it, never."""
    counter = CountingNumpy()
    monkeypatch.setattr(fused, "np", counter)
    z = torch.tensor(inputs(10, seed=7), dtype=torch.float32)
    logs_per_call = 1 if mode == "paper" else 3  # log h, and one per Newton step in float32

    def loss(x):
        return ec.softmax_era(x, 0.6, mode=mode).square().sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        loss(z)
        assert counter.logs == logs_per_call
        compiled(z)
        assert counter.logs == 2 * logs_per_call
        torch.set_num_threads(fused._NUMPY_MAX_THREADS + 1)
        loss(z)
        compiled(z)
        assert counter.logs == 2 * logs_per_call
    finally:
        torch.set_num_threads(threads)


def test_second_derivative_raises():
    """The closed-form backward is once differentiable: a gradient penalty through it raises
    instead of returning a wrong second derivative."""
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(ec.softmax_era(x, 0.8), torch.tensor([0, 3]))
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.pow(2).sum().backward()
