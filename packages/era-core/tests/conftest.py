"""Shared fixtures for the era_core test suite.

* ``backend`` / ``xp``: parametrised over NumPy, array_api_strict, PyTorch (CPU) and JAX.
  ``xp`` is the array namespace that ``array_api_compat.array_namespace`` returns for that
  backend's arrays; ``backend`` additionally knows how to build arrays of a named dtype and how
  to convert results back to NumPy float64 for comparison with the float64 references that
  live in the test modules themselves.
* JAX runs with ``jax_enable_x64`` so float64 tests are meaningful on JAX too.
"""

from __future__ import annotations

import re

import array_api_compat
import numpy as np
import pytest

try:
    import jax
except ImportError:  # pragma: no cover - jax is a test dependency; its tests skip
    pass
else:  # before any JAX array exists, so float64 really is float64 on JAX
    jax.config.update("jax_enable_x64", True)

BACKENDS = ("numpy", "array_api_strict", "torch", "jax")


class Backend:
    """One array backend: build arrays of a named dtype, convert results back to NumPy."""

    def __init__(self, name: str):
        self.name = name
        if name == "numpy":
            self.module = np
            self.xp = array_api_compat.array_namespace(np.zeros(1))
        elif name == "array_api_strict":
            self.module = pytest.importorskip("array_api_strict")
            self.xp = self.module
        elif name == "torch":
            self.module = pytest.importorskip("torch")
            self.xp = array_api_compat.array_namespace(self.module.zeros(1))
        elif name == "jax":
            pytest.importorskip("jax")
            import jax.numpy as jnp

            self.module = jnp
            self.xp = jnp
        else:  # pragma: no cover
            raise AssertionError(name)

    def __repr__(self) -> str:
        return f"Backend({self.name})"

    # -- dtypes -----------------------------------------------------------------------------
    def has_dtype(self, name: str) -> bool:
        if self.name == "array_api_strict":  # the standard has no half-precision floats
            return name in ("float32", "float64", "int32", "int64", "bool")
        if self.name == "numpy" and name == "bfloat16":
            return False
        return True

    def dtype(self, name: str):
        """The backend's dtype object called ``name``; skips the test if it does not exist."""
        if not self.has_dtype(name):
            pytest.skip(f"{self.name} has no {name}")
        if self.name == "numpy":
            return np.dtype(name)
        return getattr(self.module, name)

    # -- conversion -------------------------------------------------------------------------
    def asarray(self, x, dtype: str = "float64"):
        """A backend array holding ``x`` (anything NumPy can convert) with the named dtype."""
        a = np.asarray(x)
        if a.dtype.kind == "f":
            a = a.astype(np.float64)  # round once, from float64, to the target dtype
        if self.name == "torch":
            return self.module.from_numpy(np.array(a)).to(self.dtype(dtype))
        if self.name == "jax":
            return self.module.asarray(a).astype(self.dtype(dtype))
        if self.name == "numpy":
            return a.astype(self.dtype(dtype))
        return self.module.asarray(a, dtype=self.dtype(dtype))

    def to_numpy(self, a) -> np.ndarray:
        """Any array (or Python scalar) of this backend as a NumPy float64 array."""
        return to_numpy(a)

    def is_native(self, a) -> bool:
        """``a`` is an array of this backend (not, e.g., a NumPy array returned by torch code)."""
        if self.name == "numpy":
            return isinstance(a, (np.ndarray, np.generic))
        if self.name == "torch":
            return isinstance(a, self.module.Tensor)
        if self.name == "jax":
            import jax

            return isinstance(a, jax.Array)
        return type(a).__module__.startswith("array_api_strict")


def to_numpy(a) -> np.ndarray:
    """Convert an array of any supported backend (any float dtype) to NumPy float64."""
    mod = type(a).__module__
    if mod.startswith("torch"):
        return a.detach().to("cpu").double().numpy()
    if mod.startswith("array_api_strict"):
        return np.from_dlpack(a).astype(np.float64)
    return np.asarray(a).astype(np.float64)  # NumPy, JAX (incl. bfloat16), Python scalars


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> Backend:
    """Parametrised over numpy / array_api_strict / torch / jax."""
    return Backend(request.param)


@pytest.fixture(scope="session")
def xp(backend):
    """The array namespace of the current backend (same parametrisation as ``backend``)."""
    return backend.xp


@pytest.fixture
def rng():
    """A fresh, fixed-seed NumPy generator per test (inputs do not depend on test order)."""
    return np.random.default_rng(20251008)


def entropy_of_logits_f64(z) -> np.ndarray:
    """Reference categorical entropy of softmax(z) over the last axis, float64, stable."""
    z = to_numpy(z)
    zmax = np.max(z, axis=-1, keepdims=True)
    e = np.exp(z - zmax)
    s = e.sum(-1, keepdims=True)
    p = e / s
    logp = (z - zmax) - np.log(s)
    return -np.sum(np.where(p > 0, p * logp, 0.0), axis=-1)


@pytest.fixture(scope="session")
def entropy_f64():
    """The float64 reference categorical entropy (see :func:`entropy_of_logits_f64`)."""
    return entropy_of_logits_f64


def assert_like(out, like, shape=None) -> None:
    """``out`` has the array type, namespace, dtype and device of ``like`` (and ``shape``)."""
    assert type(out).__module__.split(".")[0] == type(like).__module__.split(".")[0], type(out)
    assert array_api_compat.array_namespace(out) is array_api_compat.array_namespace(like)
    assert out.dtype == like.dtype, (out.dtype, like.dtype)
    assert array_api_compat.device(out) == array_api_compat.device(like)
    if shape is not None:
        assert tuple(out.shape) == tuple(shape), (tuple(out.shape), tuple(shape))


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def message_mentions(message: str, value: float, rel: float = 2e-3) -> bool:
    """Some number printed in ``message`` equals ``value`` to a few significant digits."""
    numbers = [float(m) for m in _NUMBER.findall(message)]
    return any(abs(n - value) <= rel * max(1.0, abs(value)) for n in numbers)


@pytest.fixture(scope="session")
def like():
    """``like(out, inp, shape=None)``: assert type/namespace/dtype/device preservation."""
    return assert_like


@pytest.fixture(scope="session")
def mentions():
    """``mentions(message, value)``: the error message prints ``value``."""
    return message_mentions


@pytest.fixture(scope="session")
def numpy_backend() -> Backend:
    """The NumPy backend, for comparing another backend against NumPy."""
    return Backend("numpy")
