"""TD-MPC2's discrete regression: rewards and values as a softmax over ``num_bins`` bins that
are evenly spaced in ``symlog`` space (Hansen et al., 2024, Sec. 3.2 / App. B).

* ``symlog(x) = sign(x) log(1 + |x|)``, ``symexp`` its inverse;
* :func:`two_hot`: ``symlog(x)`` clipped to ``[vmin, vmax]`` and split between its two
  neighbouring bins in proportion to the distance (a linear interpolation, so the expectation
  of the bin centres under the encoding is exactly the clipped ``symlog(x)``);
* :func:`two_hot_inv`: ``symexp(sum_k softmax(logits)_k b_k)``, the scalar a head predicts;
* :func:`soft_ce`: ``-sum_k two_hot(y)_k log softmax(logits)_k``, the regression loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def symlog(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def bin_centres(num_bins: int, vmin: float, vmax: float) -> jax.Array:
    """The ``num_bins`` bin centres, evenly spaced on ``[vmin, vmax]`` (symlog space)."""
    if num_bins < 2 or not vmin < vmax:
        raise ValueError(f"need num_bins >= 2 and vmin < vmax, got {num_bins}, {vmin}, {vmax}")
    return jnp.linspace(vmin, vmax, num_bins)


def two_hot(x: jax.Array, num_bins: int, vmin: float, vmax: float) -> jax.Array:
    """``x`` of shape ``(...)`` as soft two-hot vectors ``(..., num_bins)`` over symlog bins."""
    bin_centres(num_bins, vmin, vmax)  # checks the arguments
    bin_size = (vmax - vmin) / (num_bins - 1)
    pos = (jnp.clip(symlog(x), vmin, vmax) - vmin) / bin_size
    low = jnp.clip(jnp.floor(pos), 0, num_bins - 1)
    frac = pos - low
    low = low.astype(jnp.int32)
    high = jnp.minimum(low + 1, num_bins - 1)
    return (
        jax.nn.one_hot(low, num_bins) * (1.0 - frac)[..., None]
        + jax.nn.one_hot(high, num_bins) * frac[..., None]
    )


def two_hot_inv(logits: jax.Array, vmin: float, vmax: float) -> jax.Array:
    """The scalar predicted by ``logits`` ``(..., num_bins)``: ``symexp`` of the expected bin."""
    centres = bin_centres(logits.shape[-1], vmin, vmax)
    return symexp(jnp.sum(jax.nn.softmax(logits, -1) * centres, -1))


def soft_ce(logits: jax.Array, target: jax.Array, vmin: float, vmax: float) -> jax.Array:
    """Cross-entropy of ``logits`` ``(..., num_bins)`` against ``two_hot(target)`` ``(...)``."""
    encoded = two_hot(target, logits.shape[-1], vmin, vmax)
    return -jnp.sum(encoded * jax.nn.log_softmax(logits, -1), -1)
