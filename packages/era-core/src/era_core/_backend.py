"""Backend plumbing shared by every era_core function.

Everything here is array-API code or a small dispatch on the array's library, imported
lazily, so that ``import era_core`` never imports PyTorch or JAX.

* :func:`namespace` finds the array namespace of the inputs (``array_api_compat``).
* :func:`compute_dtype` picks the dtype the math runs in: the input's floating dtype, with
  float16/bfloat16 promoted to float32 (their 10/7-bit mantissas cannot hold the
  log-domain intermediates); integer inputs raise ``TypeError``.
* :func:`stop_gradient`, :func:`erf`, :func:`log_ndtr`: operations the array API standard
  does not have, dispatched to the native function of the array's library.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import (
    is_array_api_strict_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

Array = Any
# An array-API namespace: the module `array_api_compat.array_namespace` returns for the inputs.
Namespace = Any

__all__ = [
    "Array",
    "Namespace",
    "as_float_array",
    "clip_above",
    "clip_below",
    "compute_dtype",
    "erf",
    "is_concrete",
    "is_scalar",
    "log_ndtr",
    "namespace",
    "softmax",
    "stop_gradient",
]


def namespace(*arrays: Any) -> Namespace:
    """The array-API namespace shared by ``arrays`` (Python scalars and ``None`` are skipped)."""
    found = [
        a
        for a in arrays
        if a is not None and not isinstance(a, (bool, complex)) and not is_scalar(a)
    ]
    if not found:
        raise TypeError("expected at least one array argument, got only Python scalars")
    return array_api_compat.array_namespace(*found)


def compute_dtype(xp: Namespace, x: Array, name: str) -> Any:
    """The floating dtype the math runs in for input ``x`` (half precisions -> float32)."""
    dtype = x.dtype
    if not xp.isdtype(dtype, "real floating"):
        raise TypeError(f"{name} must be a real floating-point array, got dtype {dtype}")
    if dtype in (xp.float32, xp.float64):
        return dtype
    return xp.float32  # float16 and bfloat16


def as_float_array(xp: Namespace, value: float | Array, like: Array, name: str) -> Array:
    """``value`` (Python number or array) as an array of ``like``'s dtype and device."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a floating-point array, got {value!r}")
    if is_scalar(value):
        return xp.asarray(float(value), dtype=like.dtype, device=array_api_compat.device(like))
    return xp.astype(value, like.dtype, copy=False)


def is_scalar(value: Any) -> bool:
    """True for Python and NumPy scalar numbers (not 0-d arrays)."""
    return isinstance(value, (int, float, np.generic)) and not isinstance(value, bool)


def is_concrete(x: Array) -> bool:
    """True when the values of ``x`` may be read on the host (not a JAX tracer, not lazy)."""
    if is_scalar(x):
        return True
    if array_api_compat.is_lazy_array(x):
        return False
    if array_api_compat.is_torch_array(x):
        # torch.compile traces with FakeTensors; reading values would force a graph break.
        try:
            import torch

            if torch.compiler.is_compiling():
                return False
        except (ImportError, AttributeError):  # pragma: no cover - old torch
            pass
    return True


def stop_gradient(xp: Namespace, x: Array) -> Array:
    """``x`` with its gradient blocked (identity for backends without autodiff)."""
    if is_torch_namespace(xp):
        return x.detach()
    if is_jax_namespace(xp):
        import jax

        return jax.lax.stop_gradient(x)
    return x


def clip_below(xp: Namespace, x: Array, low: float) -> Array:
    """``maximum(x, low)`` for a Python float ``low`` (``torch.clamp_min`` on PyTorch, which
    keeps ``torch.compile`` graphs whole, where the array-API wrapper breaks them)."""
    if is_torch_namespace(xp):
        import torch

        return torch.clamp_min(x, low)
    return xp.maximum(x, low)


def clip_above(xp: Namespace, x: Array, high: float) -> Array:
    """``minimum(x, high)`` for a Python float ``high`` (``torch.clamp_max`` on PyTorch)."""
    if is_torch_namespace(xp):
        import torch

        return torch.clamp_max(x, high)
    return xp.minimum(x, high)


def softmax(xp: Namespace, x: Array) -> Array:
    """Softmax over the last axis: the library's fused kernel where it has one."""
    if is_torch_namespace(xp):
        import torch

        return torch.softmax(x, dim=-1)
    if is_jax_namespace(xp):
        import jax

        return jax.nn.softmax(x, axis=-1)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _to_numpy(x: Array) -> np.ndarray:
    return np.asarray(np.from_dlpack(x))


def _from_numpy(xp: Namespace, values: np.ndarray, like: Array) -> Array:
    return xp.asarray(values, dtype=like.dtype, device=array_api_compat.device(like))


def erf(xp: Namespace, x: Array) -> Array:
    """The error function, from the array's own library."""
    if is_torch_namespace(xp):
        import torch

        return torch.special.erf(x)
    if is_jax_namespace(xp):
        import jax.scipy.special as jsp

        return jsp.erf(x)
    if is_numpy_namespace(xp):
        return _numpy_erf(x)
    if is_array_api_strict_namespace(xp):
        return _from_numpy(xp, _numpy_erf(_to_numpy(x)), x)
    raise NotImplementedError(f"erf is not available for array namespace {xp.__name__}")


def log_ndtr(xp: Namespace, x: Array) -> Array:
    """``log Phi(x)``, the log of the standard normal CDF, accurate in the far left tail."""
    if is_torch_namespace(xp):
        import torch

        return torch.special.log_ndtr(x)
    if is_jax_namespace(xp):
        import jax.scipy.special as jsp

        return jsp.log_ndtr(x)
    if is_numpy_namespace(xp):
        return _numpy_log_ndtr(x)
    if is_array_api_strict_namespace(xp):
        return _from_numpy(xp, _numpy_log_ndtr(_to_numpy(x)), x)
    raise NotImplementedError(f"log_ndtr is not available for array namespace {xp.__name__}")


# NumPy has no special functions. SciPy's are used when installed (it is not a dependency
# of era-core); otherwise the standard library's correctly rounded erf/erfc are mapped over
# the array (slow, but exact), with the Mills-ratio continued fraction for the far tail.

_TAIL = 5.0  # below -_TAIL, log_ndtr uses the continued fraction (accurate to ~1e-15 there)
_CF_DEPTH = 24


def _numpy_erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy import special
    except ImportError:
        return np.vectorize(math.erf, otypes=[x.dtype])(x).astype(x.dtype)
    return special.erf(x).astype(x.dtype)


def _numpy_log_ndtr(x: np.ndarray) -> np.ndarray:
    try:
        from scipy import special
    except ImportError:
        pass
    else:
        return special.log_ndtr(x).astype(x.dtype)
    x64 = np.asarray(x, dtype=np.float64)
    safe = np.maximum(x64, -_TAIL)
    near = np.log(0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-safe / math.sqrt(2.0)))
    t = np.maximum(-x64, _TAIL)
    far = -0.5 * t * t - 0.5 * math.log(2.0 * math.pi) - np.log(t + mills_excess(np, t))
    return np.where(x64 < -_TAIL, far, near).astype(x.dtype)


def mills_excess(xp: Namespace, t: Array) -> Array:
    """``eps(t) = phi(t)/Phi(-t) - t`` for ``t >= _TAIL`` by Laplace's continued fraction.

    ``phi(t)/Phi(-t) = t + 1/(t + 2/(t + 3/(t + ...)))``; 24 levels are accurate to about
    1e-15 relative for ``t >= 5`` (checked against mpmath), and the form never forms
    ``t**2``, so it stays exact where ``exp(-t**2/2)`` underflows.
    """
    acc = t
    for n in range(_CF_DEPTH, 1, -1):
        acc = t + n / acc
    return 1.0 / acc
