"""Cross-cutting backend contract: every public function returns the caller's array type,
namespace, device and dtype; backends agree with NumPy; integer arrays raise TypeError;
``import era_core`` imports no deep-learning framework.
"""

from __future__ import annotations

import subprocess
import sys

import array_api_compat
import numpy as np
import pytest

import era_core as ec

PUBLIC = [
    "gaussian_log_std",
    "gaussian_entropy",
    "max_gaussian_entropy",
    "truncated_gaussian_entropy",
    "tanh_log_det_jacobian",
    "tanh_gaussian_entropy",
    "tanh_gaussian_entropy_from_noise",
    "compensation_loss",
    "batch_gaussian_log_std",
    "update_running_log_partition",
    "softmax_era",
    "softmax_era_bounds",
    "categorical_entropy",
    "response_entropy",
    "logit_scale",
    "scale_advantages",
]


def test_public_api_is_exported():
    """Every documented function is importable from era_core and listed in __all__."""
    for name in PUBLIC:
        assert callable(getattr(ec, name)), name
        assert name in ec.__all__, name


def test_import_pulls_in_no_framework():
    """`import era_core` must not import torch or jax (they are optional backends)."""
    code = (
        "import sys, era_core\n"
        "bad = sorted({'torch', 'jax', 'jaxlib', 'tensorflow'} & set(sys.modules))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# Each case: (name, build) where build(backend, dtype, rng) -> (call, reference_input, out_shape).
# `call()` returns the function output; the output must look like `reference_input`.


def _gaussian_log_std(b, dt, rng):
    x = b.asarray(rng.normal(size=(3, 4)), dt)
    return (lambda: ec.gaussian_log_std(x, -4.0)), x, (3, 4)


def _gaussian_entropy(b, dt, rng):
    x = b.asarray(rng.uniform(-3.0, 0.0, size=(3, 4)), dt)
    return (lambda: ec.gaussian_entropy(x)), x, (3,)


def _truncated(b, dt, rng):
    m = b.asarray(rng.normal(size=(3, 4)), dt)
    ls = b.asarray(rng.uniform(-3.0, 1.0, size=(3, 4)), dt)
    return (lambda: ec.truncated_gaussian_entropy(m, ls)), m, (3,)


def _tanh_jac(b, dt, rng):
    u = b.asarray(rng.normal(scale=3.0, size=(3, 4)), dt)
    return (lambda: ec.tanh_log_det_jacobian(u)), u, (3,)


def _tanh_from_noise(b, dt, rng):
    m = b.asarray(rng.normal(size=(3, 4)), dt)
    ls = b.asarray(rng.uniform(-2.0, 0.0, size=(3, 4)), dt)
    eps = b.asarray(rng.normal(size=(8, 3, 4)), dt)
    return (lambda: ec.tanh_gaussian_entropy_from_noise(m, ls, eps)), m, (3,)


def _compensation(b, dt, rng):
    h = b.asarray(rng.normal(size=(5,)), dt)
    p = b.asarray(0.1, dt)
    return (lambda: ec.compensation_loss(p, h, 0.5)), h, ()


def _batch_log_std(b, dt, rng):
    x = b.asarray(rng.normal(size=(6, 3)), dt)
    return (lambda: ec.batch_gaussian_log_std(x, -3.0)[0]), x, (6, 3)


def _batch_log_partition(b, dt, rng):
    x = b.asarray(rng.normal(size=(6, 3)), dt)
    return (lambda: ec.batch_gaussian_log_std(x, -3.0)[1]), x, ()


def _running(b, dt, rng):
    r = b.asarray(0.3, dt)
    z = b.asarray(1.2, dt)
    return (lambda: ec.update_running_log_partition(r, z, 0.1)), r, ()


def _softmax_paper(b, dt, rng):
    x = b.asarray(rng.normal(scale=3.0, size=(3, 10)), dt)
    return (lambda: ec.softmax_era(x, 0.6, mode="paper")), x, (3, 10)


def _softmax_exact(b, dt, rng):
    x = b.asarray(rng.normal(scale=3.0, size=(3, 10)), dt)
    return (lambda: ec.softmax_era(x, 0.6, mode="exact")), x, (3, 10)


def _categorical(b, dt, rng):
    x = b.asarray(rng.normal(size=(3, 10)), dt)
    return (lambda: ec.categorical_entropy(x)), x, (3,)


def _response_entropy(b, dt, rng):
    e = b.asarray(rng.uniform(0.0, 3.0, size=(3, 12)), dt)
    m = b.asarray(rng.random(size=(3, 12)) < 0.7, "bool")
    return (lambda: ec.response_entropy(e, m)), e, (3,)


def _logit_scale(b, dt, rng):
    h = b.asarray([0.1, 1.0, 5.0], dt)
    a = b.asarray([1.0, -1.0, 1.0], dt)
    return (lambda: ec.logit_scale(h, a)), h, (3,)


def _scale_advantages(b, dt, rng):
    a = b.asarray([1.0, -1.0, 0.5], dt)
    c = b.asarray([2.0, 1.0, 0.5], dt)
    return (lambda: ec.scale_advantages(a, c)), a, (3,)


CASES = {
    "gaussian_log_std": _gaussian_log_std,
    "gaussian_entropy": _gaussian_entropy,
    "truncated_gaussian_entropy": _truncated,
    "tanh_log_det_jacobian": _tanh_jac,
    "tanh_gaussian_entropy_from_noise": _tanh_from_noise,
    "compensation_loss": _compensation,
    "batch_gaussian_log_std[log_std]": _batch_log_std,
    "batch_gaussian_log_std[log_partition]": _batch_log_partition,
    "update_running_log_partition": _running,
    "softmax_era[paper]": _softmax_paper,
    "softmax_era[exact]": _softmax_exact,
    "categorical_entropy": _categorical,
    "response_entropy": _response_entropy,
    "logit_scale": _logit_scale,
    "scale_advantages": _scale_advantages,
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_output_type_dtype_device(xp, backend, like, rng, case, dtype):
    """Output namespace, array type, dtype and device equal the input's; values finite."""
    call, ref_input, shape = CASES[case](backend, dtype, rng)
    out = call()
    assert backend.is_native(out), type(out)
    assert array_api_compat.array_namespace(out) is xp
    like(out, ref_input, shape=shape)
    assert np.all(np.isfinite(backend.to_numpy(out)))


@pytest.mark.parametrize("case", list(CASES))
def test_backends_agree_with_numpy(backend, numpy_backend, case):
    """float64 results on every backend equal NumPy's (no backend-specific drift)."""
    if backend.name == "numpy":
        pytest.skip("the reference backend")
    call, _, _ = CASES[case](backend, "float64", np.random.default_rng(3))
    np_call, _, _ = CASES[case](numpy_backend, "float64", np.random.default_rng(3))
    np.testing.assert_allclose(backend.to_numpy(call()), np_call(), rtol=1e-12, atol=1e-13)


INT_CALLS = {
    "gaussian_log_std": lambda x: ec.gaussian_log_std(x, -4.0),
    "gaussian_entropy": ec.gaussian_entropy,
    "truncated_gaussian_entropy": lambda x: ec.truncated_gaussian_entropy(x, x),
    "tanh_log_det_jacobian": ec.tanh_log_det_jacobian,
    "batch_gaussian_log_std": lambda x: ec.batch_gaussian_log_std(x, -4.0),
    "softmax_era": lambda x: ec.softmax_era(x, 0.6),
    "categorical_entropy": ec.categorical_entropy,
    "response_entropy": lambda x: ec.response_entropy(x, x != 0),
    "logit_scale": lambda x: ec.logit_scale(x[0, ...], x[0, ...]),
}


@pytest.mark.parametrize("name", list(INT_CALLS))
def test_integer_inputs_raise_type_error(backend, name):
    """Integer arrays are rejected with TypeError, not silently truncated."""
    x = backend.asarray(np.arange(12).reshape(3, 4), "int64")
    with pytest.raises(TypeError):
        INT_CALLS[name](x)
