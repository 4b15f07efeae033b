"""OBAC, Offline-Boosted Actor-Critic (Luo et al., 2024): SAC plus an offline-optimal value.

Beside SAC's online critic ``Q`` (of the current policy), OBAC learns, in-sample from the same
replay buffer, the value of the best policy *in the data* (``mu*``): a double critic ``Q_mu``
and a state value ``V_mu`` fitted by expectile regression as in IQL (no policy action is ever
evaluated, so nothing is extrapolated). Where that offline value beats the online one, the
actor is also pulled towards the buffer's actions. One gradient update on a batch
``(s, a, r, s', m)`` of the buffer (``m`` = 1 - terminated):

1. online critic (SAC): ``y = r + gamma m (min Q'(s', a') - alpha log pi(a'|s'))``,
   ``a' ~ pi(.|s')``; loss ``sum_i (Q_i(s, a) - y)^2``;
2. offline critic: ``y_mu = r + gamma m V_mu(s')``; loss ``sum_i (Q_mu,i(s, a) - y_mu)^2``;
3. offline value (expectile ``tau``): ``u = min Q_mu'(s, a) - V_mu(s)``,
   ``L_V = E[|tau - 1(u < 0)| u^2]`` (:func:`expectile_loss`);
4. actor: SAC's loss plus the behaviour constraint
   ``- lambda E[g * clip(log pi(a|s), lo, hi)]`` on the buffer's actions ``a``, with the gate
   ``g = 1[Q_mu(s, a) > Q(s, a_pi)]`` (:func:`constraint_gate`; ``a_pi ~ pi(.|s)``, each side
   the min over its two critics) taken on batch means (``gate="batch"``, the authors' code) or
   per state (``gate="state"``);
5. SAC's temperature; Polyak averaging of ``Q'`` and ``Q_mu'``.

:class:`OfflineBoostAgent` holds steps 2-4 for any off-policy agent of this package; :class:`OBAC`
puts it on :class:`~era_control.sac.SAC`, :class:`~era_control.obac_era.OBACERA` on SAC-ERA.

Defaults: the shared ones are SAC-ERA's (the ERA paper, App. A.1.4: OBAC "shares the same
fundamental hyperparameters as our SAC implementation"); the expectile ``tau = 0.9`` is OBAC's
(Luo et al., 2024); the log-density clip ``[-20, 2]`` is the OBAC authors' code. The
behaviour-cloning weight ``lambda`` of the ERA paper is not legible in our copy of it; the
default ``1e-3`` is ours (override with ``--set bc_weight=...``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import era_core

from .heads import Head, SACHead, TanhHead, TruncatedHead, _gaussian_log_prob
from .networks import MLP
from .offpolicy import OffPolicyAgent, OffPolicyConfig
from .replay import replay_sample
from .sac import SAC, SACConfig

GATES = ("batch", "state")
_EDGE = 1e-6  # buffer actions are clipped to [-1 + _EDGE, 1 - _EDGE] before atanh


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """``E[|tau - 1(diff < 0)| diff^2]``: IQL's asymmetric square, ``diff = target - V``."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return jnp.mean(weight * diff**2)


def constraint_gate(offline_q: jax.Array, online_q: jax.Array, mode: str) -> jax.Array:
    """1 where the offline value beats the online one, else 0, per state (``mode="state"``)
    or one value for the whole batch comparing the means (``mode="batch"``), broadcast to the
    batch's shape. No gradient flows through it."""
    offline_q, online_q = jax.lax.stop_gradient(offline_q), jax.lax.stop_gradient(online_q)
    if mode == "batch":
        gate = jnp.mean(offline_q) > jnp.mean(online_q)
        return jnp.broadcast_to(gate, offline_q.shape).astype(jnp.float32)
    if mode == "state":
        return (offline_q > online_q).astype(jnp.float32)
    raise ValueError(f"gate must be one of {GATES}, got {mode!r}")


def bounded_log_prob(head: Head, action: jax.Array, mu: jax.Array, log_std: jax.Array) -> jax.Array:
    """``log pi(action | s)`` of a bounded policy head at actions in ``[-1, 1]``: the truncated
    normal's density (``"truncated"``) or the tanh-squashed Gaussian's (``"sac"``, ``"tanh"``;
    the action is clipped just inside the bounds before ``atanh``)."""
    if isinstance(head, TruncatedHead):
        loc, std = jnp.tanh(mu), jnp.exp(log_std)
        mass = jax.scipy.special.ndtr((1.0 - loc) / std) - jax.scipy.special.ndtr(
            (-1.0 - loc) / std
        )
        log_mass = jnp.sum(jnp.log(jnp.maximum(mass, 1e-30)), -1)
        return _gaussian_log_prob(action, loc, log_std) - log_mass
    if isinstance(head, (SACHead, TanhHead)):
        u = jnp.arctanh(jnp.clip(action, -1.0 + _EDGE, 1.0 - _EDGE))
        return _gaussian_log_prob(u, mu, log_std) - era_core.tanh_log_det_jacobian(u)
    raise ValueError(f"OBAC needs a bounded head ('truncated', 'tanh', 'sac'), got {head.kind!r}")


class StateValue(nn.Module):
    """``V_mu(s)``: the critic's MLP (LayerNorm as configured) and one linear output."""

    hidden: tuple[int, ...]
    activation: str = "elu"
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = MLP(self.hidden, self.activation, self.layer_norm)(obs)
        return nn.Dense(1)(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class OfflineBoostConfig(OffPolicyConfig):
    """OBAC's own hyper-parameters (see the module docstring for their sources)."""

    expectile: float = 0.9  # tau of the offline value's expectile regression (OBAC)
    bc_weight: float = 1e-3  # lambda of the behaviour constraint (ours; see module docstring)
    gate: str = "batch"  # "batch" (the OBAC authors' code) | "state"
    bc_log_prob_min: float = -20.0  # the OBAC authors' clip of log pi(a|s)
    bc_log_prob_max: float = 2.0

    def validate(self, action_dim: int) -> None:
        super().validate(action_dim)
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")
        if not self.bc_weight >= 0.0:
            raise ValueError(f"bc_weight must be >= 0, got {self.bc_weight}")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {self.gate!r}")
        if not self.bc_log_prob_min < self.bc_log_prob_max:
            raise ValueError(
                f"need bc_log_prob_min < bc_log_prob_max, got "
                f"{self.bc_log_prob_min}, {self.bc_log_prob_max}"
            )


@dataclasses.dataclass(frozen=True)
class OBACConfig(OfflineBoostConfig, SACConfig):
    """OBAC: SAC's hyper-parameters (its temperature included) plus the offline value's."""


class OfflineBoostAgent(OffPolicyAgent):
    """The offline critic, offline value and gated behaviour constraint of OBAC, over the
    base algorithm that comes next in the MRO (its head, actor loss, bootstrap penalty and
    extra parameters are used unchanged)."""

    config: Any  # an OfflineBoostConfig mixed with the base algorithm's config

    def __init__(self, config: Any, obs_dim: int, action_dim: int, capacity: int):
        super().__init__(config, obs_dim, action_dim, capacity)
        self.value = StateValue(config.hidden, config.activation, config.layer_norm)
        self.value_opt = optax.adamw(config.critic_lr, weight_decay=config.critic_weight_decay)

    def init_state(self, key: jax.Array) -> dict[str, Any]:
        state = super().init_state(key)
        k_q, k_v = jax.random.split(jax.random.fold_in(key, 1))
        obs, act = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.action_dim))
        offline = self.critic.init(k_q, obs, act)
        value = self.value.init(k_v, obs)
        return dict(
            state,
            offline_critic=offline,
            offline_critic_target=offline,
            offline_critic_opt=self.critic_opt.init(offline),
            value=value,
            value_opt=self.value_opt.init(value),
        )

    def behaviour_log_prob(
        self, actor_params: Any, extra: dict[str, Any], obs: jax.Array, action: jax.Array
    ) -> jax.Array:
        """``log pi(a|s)`` at the buffer's actions, clipped as in the OBAC authors' code."""
        mu, log_std, _ = self.distribution(actor_params, extra, obs, training=True)
        log_prob = bounded_log_prob(self.head, action, mu, log_std)
        return jnp.clip(log_prob, self.config.bc_log_prob_min, self.config.bc_log_prob_max)

    def _q(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The stacked ``(2, batch)`` values of a double critic with parameters ``params``."""
        return cast(jax.Array, self.critic.apply(params, obs, action))

    def _v(self, params: Any, obs: jax.Array) -> jax.Array:
        """``V_mu(obs)`` with parameters ``params``."""
        return cast(jax.Array, self.value.apply(params, obs))

    # ---- the update's steps --------------------------------------------------------------
    def _online_critic(
        self, state: dict[str, Any], batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """Step 1: the base algorithm's critic update."""
        cfg, extra = self.config, state["extra"]
        next_action, next_log_prob = self.sample(state["actor"], extra, batch["next_obs"], key)
        next_q = self._q(state["critic_target"], batch["next_obs"], next_action).min(0)
        next_v = next_q - self.next_value_penalty(extra, next_log_prob)
        target = jax.lax.stop_gradient(batch["reward"] + cfg.gamma * batch["discount"] * next_v)

        def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
            q = self._q(params, batch["obs"], batch["action"])
            return jnp.mean(jnp.sum((q - target) ** 2, 0)), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["critic"])
        updates, opt = self.critic_opt.update(grads, state["critic_opt"], state["critic"])
        new = {"critic": optax.apply_updates(state["critic"], updates), "critic_opt": opt}
        return new, {"critic_loss": loss, "q_mean": jnp.mean(q)}

    def _offline_value(
        self, state: dict[str, Any], batch: dict[str, jax.Array]
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """Steps 2 and 3: ``Q_mu`` towards ``r + gamma m V_mu(s')``, ``V_mu`` the ``tau``-expectile
        of ``min Q_mu'(s, a)`` over the buffer's actions."""
        cfg = self.config
        next_v = self._v(state["value"], batch["next_obs"])
        target = jax.lax.stop_gradient(batch["reward"] + cfg.gamma * batch["discount"] * next_v)

        def q_loss_fn(params: Any) -> jax.Array:
            q = self._q(params, batch["obs"], batch["action"])
            return jnp.mean(jnp.sum((q - target) ** 2, 0))

        q_loss, grads = jax.value_and_grad(q_loss_fn)(state["offline_critic"])
        updates, q_opt = self.critic_opt.update(
            grads, state["offline_critic_opt"], state["offline_critic"]
        )
        q_params = optax.apply_updates(state["offline_critic"], updates)

        q_target = self._q(state["offline_critic_target"], batch["obs"], batch["action"])
        q_target = jax.lax.stop_gradient(q_target.min(0))

        def v_loss_fn(params: Any) -> jax.Array:
            return expectile_loss(q_target - self._v(params, batch["obs"]), cfg.expectile)

        v_loss, grads = jax.value_and_grad(v_loss_fn)(state["value"])
        updates, v_opt = self.value_opt.update(grads, state["value_opt"], state["value"])
        new = {
            "offline_critic": q_params,
            "offline_critic_opt": q_opt,
            "value": optax.apply_updates(state["value"], updates),
            "value_opt": v_opt,
        }
        return new, {"offline_critic_loss": q_loss, "value_loss": v_loss}

    def _actor(
        self, state: dict[str, Any], batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[dict[str, Any], dict[str, jax.Array], dict[str, jax.Array]]:
        """Step 4: the base actor loss plus the gated behaviour constraint."""
        cfg, extra = self.config, state["extra"]
        k_loss, k_gate = jax.random.split(key)
        obs = batch["obs"]
        offline_q = self._q(state["offline_critic"], obs, batch["action"]).min(0)
        policy_action, _ = self.sample(state["actor"], extra, obs, k_gate)
        online_q = self._q(state["critic"], obs, policy_action).min(0)
        gate = constraint_gate(offline_q, online_q, cfg.gate)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[dict[str, jax.Array], jax.Array]]:
            loss, aux = self.actor_loss(params, extra, state["critic"], obs, k_loss)
            log_prob = self.behaviour_log_prob(params, extra, obs, batch["action"])
            bc = -jnp.mean(gate * log_prob)
            return loss + cfg.bc_weight * bc, (aux, bc)

        (loss, (aux, bc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["actor"])
        updates, opt = self.actor_opt.update(grads, state["actor_opt"], state["actor"])
        new = {"actor": optax.apply_updates(state["actor"], updates), "actor_opt": opt}
        metrics = {
            "actor_loss": loss,
            "bc_loss": bc,
            "bc_gate": jnp.mean(gate),
            "offline_q_mean": jnp.mean(offline_q),
            "online_q_pi_mean": jnp.mean(online_q),
        }
        return new, aux, metrics

    # ---- one gradient update -------------------------------------------------------------
    def update(
        self, state: dict[str, Any], key: jax.Array
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """Online critic, offline critic and value, actor, extra parameters, both targets."""
        cfg = self.config
        k_batch, k_next, k_actor = jax.random.split(key, 3)
        batch = replay_sample(state["buffer"], k_batch, cfg.batch_size)
        critic, critic_metrics = self._online_critic(state, batch, k_next)
        offline, offline_metrics = self._offline_value(state, batch)
        state = dict(state, **critic, **offline)
        actor, aux, actor_metrics = self._actor(state, batch, k_actor)
        extra, extra_metrics = self.update_extra(state["extra"], aux)
        polyak = lambda new, old: optax.incremental_update(new, old, cfg.tau)  # noqa: E731
        state = dict(
            state,
            **actor,
            extra=extra,
            critic_target=polyak(state["critic"], state["critic_target"]),
            offline_critic_target=polyak(state["offline_critic"], state["offline_critic_target"]),
        )
        metrics = {
            **critic_metrics,
            **offline_metrics,
            **actor_metrics,
            **{k: v for k, v in aux.items() if not k.startswith("_")},
            **extra_metrics,
        }
        return state, metrics


class OBAC(OfflineBoostAgent, SAC):
    """OBAC: SAC (tanh-Gaussian policy, learned temperature alpha) with the offline value and
    its gated behaviour constraint."""
