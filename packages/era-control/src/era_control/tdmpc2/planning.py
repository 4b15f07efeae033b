"""MPPI in TD-MPC2's latent space, as one jitted program (Hansen et al., 2024, Sec. 3.3).

:func:`mppi` plans ``horizon`` actions: ``num_pi_trajs`` of the ``num_samples`` sequences come
from the policy prior (fixed over the iterations); the rest are drawn around a Gaussian
``(mean, std)`` per step, clipped to ``[-1, 1]``. Each of ``iterations`` rounds scores every
sequence with ``estimate_value``, keeps the ``num_elites`` best and refits

* ``score_e = softmax(temperature * value_e)`` over the elites,
* ``mean = sum_e score_e a_e``, ``std = sqrt(sum_e score_e (a_e - mean)^2)`` clipped to
  ``[min_std, max_std]``.

The action is the first step of one elite drawn with probability ``score`` (plus
``std_0 * N(0, 1)`` noise when exploring). The final ``mean`` is returned so the next call
starts from it shifted by one step (:func:`warm_start`; zeros at an episode's first step).
The rounds are a ``jax.lax.scan``; nothing leaves the device.

:func:`latent_value` is TD-MPC2's ``estimate_value``: discounted predicted rewards along the
latent rollout plus the discounted mean of two random Q-functions at the end, under the
policy prior's action. :func:`two_q` evaluates just those two members of the ensemble (their
parameters gathered, so the other members cost nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp

from ..heads import Head
from .twohot import two_hot_inv
from .world_model import TDMPC2Config, WorldModel


def warm_start(prev_mean: jax.Array, first: jax.Array | bool) -> jax.Array:
    """The initial mean of a plan: the previous plan's shifted by one step, zero at the end
    (all zeros when ``first``, an episode's first step)."""
    shifted = jnp.concatenate([prev_mean[1:], jnp.zeros_like(prev_mean[:1])], 0)
    return jnp.where(first, jnp.zeros_like(prev_mean), shifted)


def mppi(
    key: jax.Array,
    estimate_value: Callable[..., jax.Array],
    init_mean: jax.Array,
    cfg: TDMPC2Config,
    pi_actions: jax.Array | None = None,
    explore: bool = True,
    keyed: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One plan. ``estimate_value(actions (H, N, A)) -> (N,)`` (with ``keyed``:
    ``estimate_value(actions, key)``, a fresh key every iteration); ``init_mean`` is ``(H, A)``;
    ``pi_actions`` ``(H, num_pi_trajs, A)`` or ``None``. Returns ``(action (A,), mean (H, A),
    std (H, A))``."""
    horizon, action_dim = init_mean.shape
    num_pi = 0 if pi_actions is None else pi_actions.shape[1]
    k_iter, k_pick, k_noise = jax.random.split(key, 3)

    def iteration(
        carry: tuple[jax.Array, jax.Array], k: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        mean, std = carry
        eps = jax.random.normal(k, (horizon, cfg.num_samples - num_pi, action_dim))
        actions = jnp.clip(mean[:, None] + std[:, None] * eps, -1.0, 1.0)
        if pi_actions is not None:
            actions = jnp.concatenate([pi_actions, actions], 1)
        args = (actions, jax.random.fold_in(k, 1)) if keyed else (actions,)
        value = jnp.nan_to_num(estimate_value(*args))
        elite_value, idx = jax.lax.top_k(value, cfg.num_elites)
        elites = actions[:, idx]
        score = jax.nn.softmax(cfg.temperature * elite_value)
        mean = jnp.einsum("e,hea->ha", score, elites)
        var = jnp.einsum("e,hea->ha", score, (elites - mean[:, None]) ** 2)
        std = jnp.clip(jnp.sqrt(var), cfg.min_std, cfg.max_std)
        return (mean, std), (elites, score)

    std0 = jnp.full((horizon, action_dim), cfg.max_std)
    keys = jax.random.split(k_iter, cfg.iterations)
    (mean, std), (elites, scores) = jax.lax.scan(iteration, (init_mean, std0), keys)
    pick = jax.random.categorical(k_pick, jnp.log(scores[-1]))
    action = elites[-1][0, pick]
    if explore:
        action = action + std[0] * jax.random.normal(k_noise, (action_dim,))
    return jnp.clip(action, -1.0, 1.0), mean, std


def _apply(model: WorldModel, params: Any, *args: jax.Array, method: str) -> jax.Array:
    """``model.apply`` of one of its methods (every one used here returns an array)."""
    return cast(jax.Array, model.apply(params, *args, method=method))


def two_q(
    model: WorldModel, params: Any, qs_params: Any, z: jax.Array, action: jax.Array, key: jax.Array
) -> jax.Array:
    """The scalar values ``(2, ...)`` of two distinct members of the Q-ensemble, drawn with
    ``key``, at ``(z, action)``; ``qs_params`` are the ensemble's parameters (the online or
    the target ones), the rest of ``params`` is unused."""
    pair = jax.random.choice(key, model.cfg.num_q, (2,), replace=False)
    chosen = jax.tree.map(lambda p: p[pair], qs_params)
    pair_model = WorldModel(dataclasses.replace(model.cfg, num_q=2), model.action_dim)
    pair_params = {"params": {**params["params"], "_qs": chosen}}
    logits = _apply(pair_model, pair_params, z, action, method="qs")
    return two_hot_inv(logits, model.cfg.vmin, model.cfg.vmax)


def latent_value(
    model: WorldModel,
    params: Any,
    head: Head,
    z: jax.Array,
    actions: jax.Array,
    discount: float,
    key: jax.Array,
) -> jax.Array:
    """TD-MPC2's trajectory value from latent ``z`` ``(N, L)`` under ``actions`` ``(H, N, A)``:
    ``sum_t gamma^t R(z_t, a_t) + gamma^H mean(Q_i, Q_j)(z_H, a_pi)``, ``i, j`` two random
    members of the ensemble."""
    cfg = model.cfg
    k_pi, k_q = jax.random.split(key)

    def step(
        carry: tuple[jax.Array, jax.Array, jax.Array], action: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], None]:
        z, ret, scale = carry
        reward = two_hot_inv(_apply(model, params, z, action, method="reward"), cfg.vmin, cfg.vmax)
        z = _apply(model, params, z, action, method="next")
        return (z, ret + scale * reward, scale * discount), None

    init = (z, jnp.zeros(z.shape[0]), jnp.ones(()))
    (z, ret, scale), _ = jax.lax.scan(step, init, actions)
    mu, pre_std = cast(tuple[jax.Array, jax.Array], model.apply(params, z, method="pi"))
    log_std, _ = head.log_std(pre_std)
    action, _ = head.sample(k_pi, mu, log_std)
    q = two_q(model, params, params["params"]["_qs"], z, action, k_q)
    return ret + scale * jnp.mean(q, 0)
