"""The truncated normal on ``[low, high]``, reparameterised with gradients that stay finite.

:func:`truncated_normal_sample` draws ``u ~ U(0, 1)`` and inverts the CDF
(:func:`standard_truncated_normal`); its derivatives are implicit and clipped to ``[0, 1]``, so
they are finite for every draw, the bounds included. The ERA ``"truncated"`` policy head of
:mod:`era_control.heads` samples with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_jvp
def standard_truncated_normal(alpha: jax.Array, beta: jax.Array, u: jax.Array) -> jax.Array:
    """The ``u``-quantile of a standard normal truncated to ``[alpha, beta]`` (``u`` in [0, 1]).

    ``z = Phi^-1(Phi(alpha) + u * (Phi(beta) - Phi(alpha)))``, evaluated on whichever side
    keeps the precision: the lower tail through ``Phi(alpha)``, the upper tail through
    ``Phi(-beta)`` by symmetry. The result is clipped to ``[alpha, beta]``.

    The derivatives are implicit (differentiate ``Phi(z) = Phi(alpha) + u * Z``):
    ``dz/dalpha = (1 - u) exp((z^2 - alpha^2) / 2)``, ``dz/dbeta = u exp((z^2 - beta^2) / 2)``.
    Both lie in ``[0, 1]`` and are clipped to it. Differentiating through ``erf_inv`` instead
    (as ``jax.random.truncated_normal`` does) gives NaN gradients whenever the uniform draw lands
    on a bound of a saturated interval, about once in 10^7 draws.
    """
    tiny = jnp.finfo(jnp.result_type(alpha, beta, u)).tiny
    p_alpha = jax.scipy.special.ndtr(alpha)
    p_beta = jax.scipy.special.ndtr(beta)
    mass = p_beta - p_alpha
    lower = p_alpha + u * mass  # Phi(z)
    upper = jax.scipy.special.ndtr(-beta) + (1.0 - u) * mass  # 1 - Phi(z) = Phi(-z)
    z = jnp.where(
        lower <= 0.5,
        jax.scipy.special.ndtri(jnp.maximum(lower, tiny)),
        -jax.scipy.special.ndtri(jnp.maximum(upper, tiny)),
    )
    z = jnp.where(u <= 0.0, alpha, jnp.where(u >= 1.0, beta, z))  # exact even if Phi underflows
    return jnp.clip(z, alpha, beta)


def _unit_interval_exp(factor: jax.Array, log_x: jax.Array) -> jax.Array:
    # factor * exp(log_x) in [0, 1], without overflow (the exponent is clipped first)
    return jnp.clip(factor * jnp.exp(jnp.minimum(log_x, 60.0)), 0.0, 1.0)


@standard_truncated_normal.defjvp
def _standard_truncated_normal_jvp(
    primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array]:
    alpha, beta, u = primals
    d_alpha, d_beta, _ = tangents  # u is a random draw: no tangent flows through it
    z = standard_truncated_normal(alpha, beta, u)
    dz_dalpha = _unit_interval_exp(1.0 - u, 0.5 * (z - alpha) * (z + alpha))
    dz_dbeta = _unit_interval_exp(u, 0.5 * (z - beta) * (z + beta))
    return z, dz_dalpha * d_alpha + dz_dbeta * d_beta


def truncated_normal_sample(
    key: jax.Array,
    loc: jax.Array,
    scale: jax.Array,
    low: jax.Array | float = -1.0,
    high: jax.Array | float = 1.0,
) -> jax.Array:
    """A reparameterised sample of ``N(loc, scale^2)`` truncated to ``[low, high]``, with finite
    gradients for every ``loc`` in ``[low, high]`` and ``scale > 0`` (see
    :func:`standard_truncated_normal`)."""
    shape = jnp.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
    u = jax.random.uniform(key, shape, dtype=jnp.result_type(loc, scale))
    z = standard_truncated_normal((low - loc) / scale, (high - loc) / scale, u)
    return jnp.clip(loc + scale * z, low, high)
