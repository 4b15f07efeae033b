"""TD-MPC2 (Hansen et al., 2024): a decoder-free latent world model, MPPI planning seeded by a
policy prior, and the prior trained with a maximum-entropy objective.

Read top to bottom with :mod:`era_control.tdmpc2` (the world model, two-hot regression, MPPI
and the subsequence replay). One gradient update on ``B`` subsequences of ``H`` transitions
``(s_0..s_H, a_0..a_{H-1}, r_0..r_{H-1})`` (weights ``w_t`` drop steps past an episode's end):

1. targets (no gradient): ``z'_t = h(s_{t+1})``, ``y_t = r_t + gamma m_t min(Q'_i, Q'_j)(z'_t,
   a'_t)``, ``a'_t ~ pi(.|z'_t)``, ``i, j`` two random members of the target ensemble;
2. latent rollout ``z_0 = h(s_0)``, ``z_{t+1} = d(z_t, a_t)``; world-model loss
   ``20 * (1/H) sum_t rho^t ||z_{t+1} - z'_t||^2 / L
   + 0.1 * (1/H) sum_t rho^t CE(R(z_t, a_t), r_t)
   + 0.1 * (1/(H K)) sum_t sum_k rho^t CE(Q_k(z_t, a_t), y_t)`` (two-hot cross-entropies,
   dropout in the Q-functions), one Adam step on everything but the policy (the encoder's
   learning rate scaled by ``enc_lr_scale``), gradients clipped to global norm 20;
3. policy prior on the detached latents ``z_0..z_H``: ``a ~ pi(.|z_t)`` reparameterised,
   ``Q = mean(Q_i, Q_j)(z_t, a)`` of the updated online ensemble (no dropout), a running
   scale ``S <- S + tau (max(P95 - P5 of Q(z_0), 1) - S)``, loss
   ``(1/(H+1)) sum_t rho^t E[entropy_coef * log pi(a|z_t) - Q / S]`` (TD-MPC2's own policy: a
   tanh Gaussian with ``log_std`` squashed into ``[-10, 2]``), its own Adam (``eps = 1e-5``)
   and clipping;
4. Polyak averaging of the target ensemble (``tau = 0.01``).

Acting: uniform actions for the ``warmup_steps`` seed steps, then (with ``pretrain``) that many
updates at once, then one update per step. Each action is an MPPI plan from ``h(s)``
(:func:`~era_control.tdmpc2.planning.mppi`) warm-started from the previous plan's mean, which
the learner state keeps (``plan_mean``), so checkpoints and ``--resume`` carry it; ``mpc=False``
acts with the policy prior instead. The authors add two MPPI iterations for 20 or more action
dimensions; so do we. Difference from the authors' code: subsequences are drawn from a ring
buffer with episode-end weights instead of a per-episode slice sampler.

:mod:`era_control.tdmpc2_era` replaces the head (ERA's) and drops the entropy term.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

from . import heads
from .heads import Head
from .tdmpc2 import TDMPC2Config, WorldModel, latent_value, mppi, soft_ce, two_q, warm_start
from .tdmpc2.buffer import sample_sequences, sequence_buffer_add, sequence_buffer_init

Params = dict[str, Any]


def running_scale(scale: jax.Array, q: jax.Array, tau: float) -> jax.Array:
    """TD-MPC2's running Q scale: ``scale`` moved by ``tau`` towards ``max(P95 - P5, 1)`` of
    ``q`` (percentiles over all its entries, linearly interpolated)."""
    low, high = jnp.percentile(q, jnp.asarray([5.0, 95.0]))
    return scale + tau * (jnp.maximum(high - low, 1.0) - scale)


def _split(params: Params) -> tuple[Params, Any]:
    """``(everything but the policy, the policy's parameters)``."""
    inner = dict(params["params"])
    pi = inner.pop("_pi")
    return {"params": inner}, pi


def _merge(rest: Params, pi: Any) -> Params:
    return {"params": {**rest["params"], "_pi": pi}}


def _labels(rest: Params) -> Params:
    """Optimiser labels: ``"encoder"`` for the encoder's parameters, ``"model"`` for the rest."""
    return {
        "params": {
            name: jax.tree.map(lambda _, n=name: "encoder" if n == "_encoder" else "model", sub)
            for name, sub in rest["params"].items()
        }
    }


class TDMPC2:
    """TD-MPC2; see the module docstring. Hooks for TD-MPC2-ERA: :meth:`make_head`,
    :meth:`entropy_term`, :meth:`entropy_metrics`."""

    target_entropy: float | None = None

    def __init__(self, config: TDMPC2Config, obs_dim: int, action_dim: int, capacity: int):
        config.validate(action_dim)
        self.config = config
        self.obs_dim, self.action_dim, self.capacity = obs_dim, action_dim, capacity
        extra = 2 * int(action_dim >= 20)  # the authors' heuristic for large action spaces
        self.plan_config = dataclasses.replace(config, iterations=config.iterations + extra)
        self.head: Head = self.make_head()
        self.model = WorldModel(config, action_dim)
        self.discount = config.discount(config.episode_length)
        clip = optax.clip_by_global_norm(config.grad_clip_norm)
        self.model_opt = optax.chain(
            clip,
            optax.multi_transform(
                {
                    "encoder": optax.adam(config.lr * config.enc_lr_scale),
                    "model": optax.adam(config.lr),
                },
                _labels,
            ),
        )
        self.pi_opt = optax.chain(clip, optax.adam(config.lr, eps=1e-5))

    # ---- hooks -------------------------------------------------------------------------
    def make_head(self) -> Head:
        """TD-MPC2's policy: a tanh Gaussian, ``log_std`` squashed into its bounds."""
        cfg = self.config
        head = heads.SACHead(
            self.action_dim, log_std_min=cfg.log_std_min, log_std_max=cfg.log_std_max
        )
        return cast(Head, head)

    def entropy_term(self, log_prob: jax.Array | None) -> jax.Array | float:
        """Added to ``-Q / S`` in the policy loss: ``entropy_coef * log pi``."""
        return self.config.entropy_coef * cast(jax.Array, log_prob)

    def entropy_metrics(
        self, mu: jax.Array, log_std: jax.Array, log_prob: jax.Array | None, key: jax.Array
    ) -> dict[str, jax.Array]:
        """``entropy``: the Monte-Carlo estimate ``-E[log pi]`` on the batch."""
        return {"entropy": -jnp.mean(cast(jax.Array, log_prob))}

    # ---- the model -----------------------------------------------------------------------
    def _apply(self, params: Params, *args: Any, method: str, **kwargs: Any) -> Any:
        return self.model.apply(params, *args, method=method, **kwargs)

    def encode(self, params: Params, obs: jax.Array) -> jax.Array:
        return cast(jax.Array, self._apply(params, obs, method="encode"))

    def policy(
        self, params: Params, z: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array | None, jax.Array, jax.Array]:
        """``(action, log pi, mu, log_std)`` of a reparameterised sample of the prior at ``z``."""
        mu, pre_std = cast(tuple[jax.Array, jax.Array], self._apply(params, z, method="pi"))
        log_std, _ = self.head.log_std(pre_std)
        action, log_prob = self.head.sample(key, mu, log_std)
        return action, log_prob, mu, log_std

    # ---- state ---------------------------------------------------------------------------
    def init_state(self, key: jax.Array) -> dict[str, Any]:
        k_model, k_run = jax.random.split(key)
        obs, act = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.action_dim))
        params = cast(Params, self.model.init(k_model, obs, act))
        rest, pi = _split(params)
        return {
            "params": params,
            "target_qs": params["params"]["_qs"],
            "model_opt": self.model_opt.init(rest),
            "pi_opt": self.pi_opt.init(pi),
            "scale": jnp.ones(()),
            "buffer": sequence_buffer_init(self.capacity, self.obs_dim, self.action_dim),
            "key": k_run,
            "last_obs": jnp.zeros((self.obs_dim,)),
            "last_action": jnp.zeros((self.action_dim,)),
            "plan_mean": jnp.zeros((self.config.horizon, self.action_dim)),
        }

    # ---- one gradient update -------------------------------------------------------------
    def _targets(
        self, params: Params, target_qs: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Step 1: the encoded next observations ``(H, B, L)`` and the TD targets ``(H, B)``."""
        k_pi, k_q = jax.random.split(key)
        next_z = self.encode(params, batch["obs"][1:])
        next_action = self.policy(params, next_z, k_pi)[0]
        next_q = two_q(self.model, params, target_qs, next_z, next_action, k_q).min(0)
        target = batch["reward"] + self.discount * batch["discount"] * next_q
        return jax.lax.stop_gradient(next_z), jax.lax.stop_gradient(target)

    def _model_loss(
        self,
        rest: Params,
        pi: Any,
        batch: dict[str, jax.Array],
        next_z: jax.Array,
        td_target: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Step 2's loss; ``aux["zs"]`` are the rolled-out latents ``(H+1, B, L)``."""
        cfg = self.config
        params = _merge(rest, jax.lax.stop_gradient(pi))
        weight, action = batch["weight"], batch["action"]
        rho = cfg.rho ** jnp.arange(cfg.horizon)
        z = self.encode(params, batch["obs"][0])
        zs, consistency = [z], jnp.zeros(())
        for t in range(cfg.horizon):
            z = cast(jax.Array, self._apply(params, z, action[t], method="next"))
            error = jnp.mean((z - next_z[t]) ** 2, -1)
            consistency = consistency + rho[t] * jnp.mean(weight[t] * error)
            zs.append(z)
        latents = jnp.stack(zs)
        qs = self._apply(
            params, latents[:-1], action, False, method="qs", rngs={"dropout": key}
        )  # (K, H, B, bins), dropout on
        reward = self._apply(params, latents[:-1], action, method="reward")
        reward_ce = soft_ce(reward, batch["reward"], cfg.vmin, cfg.vmax)
        value_ce = soft_ce(qs, jnp.broadcast_to(td_target, qs.shape[:-1]), cfg.vmin, cfg.vmax)
        consistency = consistency / cfg.horizon
        reward_loss = jnp.sum(rho * jnp.mean(weight * reward_ce, -1)) / cfg.horizon
        value_loss = jnp.sum(rho * jnp.mean(weight * value_ce, -1)) / (cfg.horizon * cfg.num_q)
        total = (
            cfg.consistency_coef * consistency
            + cfg.reward_coef * reward_loss
            + cfg.value_coef * value_loss
        )
        aux = {
            "zs": latents,
            "consistency_loss": consistency,
            "reward_loss": reward_loss,
            "value_loss": value_loss,
            "total_loss": total,
        }
        return total, aux

    def _pi_loss(
        self,
        pi: Any,
        rest: Params,
        zs: jax.Array,
        pi_weight: jax.Array,
        scale: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Step 3's loss; ``aux["scale"]`` is the updated running Q scale."""
        cfg = self.config
        k_sample, k_q, k_entropy = jax.random.split(key, 3)
        params = _merge(jax.lax.stop_gradient(rest), pi)
        action, log_prob, mu, log_std = self.policy(params, zs, k_sample)
        q = two_q(self.model, params, params["params"]["_qs"], zs, action, k_q).mean(0)
        scale = running_scale(scale, jax.lax.stop_gradient(q[0]), cfg.tau)
        rho = cfg.rho ** jnp.arange(cfg.horizon + 1)
        per_step = jnp.mean(pi_weight * (self.entropy_term(log_prob) - q / scale), -1)
        loss = jnp.mean(rho * per_step)
        metrics = self.entropy_metrics(mu, log_std, log_prob, k_entropy)
        return loss, {"scale": scale, **jax.lax.stop_gradient(metrics)}

    def update(
        self, state: dict[str, Any], key: jax.Array
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """Targets, world model, policy prior, target ensemble (module docstring)."""
        cfg = self.config
        k_batch, k_target, k_drop, k_pi = jax.random.split(key, 4)
        batch = sample_sequences(state["buffer"], k_batch, cfg.batch_size, cfg.horizon)
        params = state["params"]
        next_z, td_target = self._targets(params, state["target_qs"], batch, k_target)
        rest, pi = _split(params)

        grad_fn = jax.value_and_grad(self._model_loss, has_aux=True)
        (_, aux), grads = grad_fn(rest, pi, batch, next_z, td_target, k_drop)
        updates, model_opt = self.model_opt.update(grads, state["model_opt"], rest)
        rest = cast(Params, optax.apply_updates(rest, updates))

        zs = jax.lax.stop_gradient(aux.pop("zs"))
        pi_grad_fn = jax.value_and_grad(self._pi_loss, has_aux=True)
        (pi_loss, pi_aux), pi_grads = pi_grad_fn(
            pi, rest, zs, batch["pi_weight"], state["scale"], k_pi
        )
        pi_updates, pi_opt = self.pi_opt.update(pi_grads, state["pi_opt"], pi)
        pi = optax.apply_updates(pi, pi_updates)

        params = _merge(rest, pi)
        target_qs = optax.incremental_update(params["params"]["_qs"], state["target_qs"], cfg.tau)
        scale = pi_aux.pop("scale")
        new_state = dict(
            state,
            params=params,
            target_qs=target_qs,
            model_opt=model_opt,
            pi_opt=pi_opt,
            scale=scale,
        )
        metrics = {
            **aux,
            "grad_norm": optax.tree.norm(grads),
            "pi_loss": pi_loss,
            "pi_scale": scale,
            **pi_aux,
        }
        return new_state, metrics

    # ---- acting --------------------------------------------------------------------------
    def plan(
        self,
        params: Params,
        obs: jax.Array,
        mean: jax.Array,
        first: jax.Array,
        key: jax.Array,
        explore: bool,
    ) -> tuple[jax.Array, jax.Array]:
        """The action for one observation and the plan's mean to warm-start the next one
        (``first``: an episode's first step). With ``mpc=False``: the policy prior's sample
        (``explore``) or mode, the mean unchanged."""
        cfg = self.plan_config
        k_pi, k_mppi = jax.random.split(key)
        z = self.encode(params, obs[None])
        if not cfg.mpc:
            action, _, mu, _ = self.policy(params, z, k_pi)
            return (action[0] if explore else self.head.mode(mu)[0]), mean
        pi_actions = None
        if cfg.num_pi_trajs > 0:
            zp = jnp.broadcast_to(z, (cfg.num_pi_trajs, z.shape[-1]))
            steps = []
            for t, k in enumerate(jax.random.split(k_pi, cfg.horizon)):
                steps.append(self.policy(params, zp, k)[0])
                if t < cfg.horizon - 1:
                    zp = cast(jax.Array, self._apply(params, zp, steps[-1], method="next"))
            pi_actions = jnp.stack(steps)
        zs = jnp.broadcast_to(z, (cfg.num_samples, z.shape[-1]))

        def value(actions: jax.Array, k: jax.Array) -> jax.Array:
            return latent_value(self.model, params, self.head, zs, actions, self.discount, k)

        init = warm_start(mean, first)
        action, new_mean, _ = mppi(k_mppi, value, init, cfg, pi_actions, explore, keyed=True)
        return action, new_mean

    def _explore(
        self, state: dict[str, Any], obs: jax.Array, first: jax.Array, key: jax.Array, random: Any
    ) -> tuple[jax.Array, jax.Array]:
        """Uniform random action (seed steps; ``random`` a traced bool) or a plan."""

        def uniform(_: None) -> tuple[jax.Array, jax.Array]:
            action = jax.random.uniform(key, (self.action_dim,), minval=-1.0, maxval=1.0)
            return action, state["plan_mean"]

        def planned(_: None) -> tuple[jax.Array, jax.Array]:
            return self.plan(state["params"], obs, state["plan_mean"], first, key, True)

        return jax.lax.cond(random, uniform, planned, None)

    # ---- one environment step ------------------------------------------------------------
    def step(
        self,
        state: dict[str, Any],
        next_obs: jax.Array,
        reward: jax.Array,
        terminated: jax.Array,
        done: jax.Array,
        obs: jax.Array,
        random: Any,
        num_updates: Any,
        *,
        update: bool,
    ) -> tuple[dict[str, Any], jax.Array, dict[str, jax.Array]]:
        """Store ``(last_obs, last_action, reward, next_obs)``, run ``num_updates`` updates
        (a traced count: one, or the pretraining's many), plan the next action from ``obs``
        (an episode's first observation when ``done``). Returns ``(state, action, metrics)``."""
        buffer = sequence_buffer_add(
            state["buffer"],
            state["last_obs"],
            state["last_action"],
            reward,
            next_obs,
            1.0 - terminated.astype(jnp.float32),
            1.0 - done.astype(jnp.float32),
        )
        state = dict(state, buffer=buffer)
        key, k_updates, k_act = jax.random.split(state["key"], 3)
        metrics: dict[str, jax.Array] = {}
        if update:

            def body(
                i: jax.Array, carry: tuple[dict[str, Any], dict[str, jax.Array]]
            ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
                return self.update(carry[0], jax.random.fold_in(k_updates, i))

            shapes = jax.eval_shape(self.update, state, k_updates)[1]
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            state, metrics = jax.lax.fori_loop(0, num_updates, body, (state, zeros))
        action, mean = self._explore(state, obs, done, k_act, random)
        state = dict(state, key=key, last_obs=obs, last_action=action, plan_mean=mean)
        return state, action, metrics

    def start(
        self, state: dict[str, Any], obs: jax.Array, random: Any
    ) -> tuple[dict[str, Any], jax.Array]:
        """Set the first observation of a run and choose the first action."""
        key, k_act = jax.random.split(state["key"])
        action, mean = self._explore(state, obs, jnp.ones((), bool), k_act, random)
        return dict(state, key=key, last_obs=obs, last_action=action, plan_mean=mean), action

    def compile(self) -> dict[str, Callable[..., Any]]:
        """Seed-vmapped, jitted ``init``, ``start``, ``step``, ``plan_eval`` (a plan without
        exploration noise from a given mean, for evaluation) and ``act_eval`` (the prior's
        mode)."""

        def start(
            state: dict[str, Any], obs: jax.Array, random: Any
        ) -> tuple[dict[str, Any], jax.Array]:
            return jax.vmap(self.start, in_axes=(0, 0, None))(state, obs, random)

        def step(state: dict[str, Any], *args: Any, update: bool) -> Any:
            fn = functools.partial(self.step, update=update)
            return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, 0, None, None))(state, *args)

        def plan_eval(
            state: dict[str, Any],
            obs: jax.Array,
            mean: jax.Array,
            first: jax.Array,
            seeds: jax.Array,
            steps: jax.Array,
        ) -> tuple[jax.Array, jax.Array]:
            keys = jax.vmap(lambda s, t: jax.random.fold_in(jax.random.PRNGKey(s), t))(seeds, steps)
            fn = lambda s, o, m, f, k: self.plan(s["params"], o, m, f, k, False)  # noqa: E731
            return jax.vmap(fn)(state, obs, mean, first, keys)

        def act_eval(state: dict[str, Any], obs: jax.Array) -> jax.Array:
            def mode(s: dict[str, Any], o: jax.Array) -> jax.Array:
                z = self.encode(s["params"], o[None])
                mu, _ = cast(tuple[jax.Array, jax.Array], self._apply(s["params"], z, method="pi"))
                return self.head.mode(mu)[0]

            return jax.vmap(mode)(state, obs)

        return {
            "init": jax.jit(jax.vmap(self.init_state)),
            "start": jax.jit(start, donate_argnums=0),
            "step": jax.jit(step, static_argnames="update", donate_argnums=0),
            "plan_eval": jax.jit(plan_eval),
            "act_eval": jax.jit(act_eval),
        }
