"""What SAC and SAC-ERA share: networks, critic and target update, replay, the fused step.

An algorithm (:mod:`era_control.sac`, :mod:`era_control.sac_era`) subclasses
:class:`OffPolicyAgent` and fills in four hooks: its policy head, the penalty on the
bootstrapped value (SAC's ``alpha * log pi``; none for SAC-ERA), its actor loss, and the update
of its extra parameters (SAC's temperature; SAC-ERA's learned compensation, if any).

Everything else lives here once:

* ``init_state(key)``: the per-seed training state (a dict pytree: networks, optimiser states,
  target network, replay buffer on the device, PRNG key, the last observation and action).
* ``step(state, next_obs, reward, terminated, obs, random, update=)``: one environment step
  seen from the learner: store the transition, run ``updates_per_step`` gradient updates fused
  with ``jax.lax.scan``, and choose the next action. :meth:`OffPolicyAgent.compile` vmaps it
  over seeds and jits it with the state donated, so ``S`` seeds are one compiled program and
  only observations, rewards and actions cross between host and device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
import optax

from .heads import Head
from .networks import Actor, DoubleCritic
from .replay import replay_add, replay_init, replay_sample


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig:
    """Shared hyper-parameters (paper Table 6 / docs/paper.md §1 defaults)."""

    hidden: tuple[int, ...] = (512, 512)
    activation: str = "elu"
    layer_norm: bool = True
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    critic_weight_decay: float = 1e-4  # AdamW (optax's default decay)
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    buffer_size: int = 1_000_000
    warmup_steps: int = 5000
    updates_per_step: int = 2

    # --quick: at most this many agent steps, and the fields quick() shrinks
    QUICK_STEPS: ClassVar[int] = 5000
    QUICK_FIELDS: ClassVar[tuple[str, ...]] = (
        "hidden",
        "updates_per_step",
        "batch_size",
        "warmup_steps",
    )

    def quick(self, steps: int) -> OffPolicyConfig:
        """A CPU-sized copy for a ``steps``-step run: layers of at most 256, one update per
        step, batch at most 256, warm-up at most a tenth of the run."""
        return dataclasses.replace(
            self,
            hidden=tuple(min(int(h), 256) for h in self.hidden),
            updates_per_step=1,
            batch_size=min(int(self.batch_size), 256),
            warmup_steps=min(int(self.warmup_steps), steps // 10),
        )

    def validate(self, action_dim: int) -> None:
        for name in ("batch_size", "buffer_size", "updates_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.tau <= 1.0 or not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"need 0 < tau <= 1 and 0 <= gamma <= 1, got {self.tau}, {self.gamma}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be positive layer widths, got {self.hidden}")


def _mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x) if x is not None else jnp.zeros(())


class OffPolicyAgent:
    """Base of the off-policy agents; see the module docstring for the hooks."""

    def __init__(self, config: OffPolicyConfig, obs_dim: int, action_dim: int, capacity: int):
        config.validate(action_dim)
        self.config = config
        self.obs_dim, self.action_dim, self.capacity = obs_dim, action_dim, capacity
        self.head: Head = self.make_head()
        net = {"hidden": config.hidden, "activation": config.activation}
        self.actor = Actor(action_dim, layer_norm=config.layer_norm, **net)
        self.critic = DoubleCritic(layer_norm=config.layer_norm, **net)
        self.actor_opt = optax.adam(config.actor_lr)
        self.critic_opt = optax.adamw(config.critic_lr, weight_decay=config.critic_weight_decay)

    # ---- hooks -------------------------------------------------------------------------
    def make_head(self) -> Head:
        raise NotImplementedError

    def init_extra(self) -> dict[str, Any]:
        """Extra learned parameters and their optimiser states (e.g. SAC's temperature)."""
        return {}

    def next_value_penalty(
        self, extra: dict[str, Any], next_log_prob: jax.Array | None
    ) -> jax.Array | float:
        """Subtracted from ``min(Q1', Q2')`` in the critic target (SAC: ``alpha log pi``)."""
        return 0.0

    def actor_loss(
        self,
        actor_params: Any,
        extra: dict[str, Any],
        critic_params: Any,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Returns ``(loss, aux)``; ``aux`` is a dict handed to :meth:`update_extra`."""
        raise NotImplementedError

    def update_extra(
        self, extra: dict[str, Any], aux: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        return extra, {}

    # ---- policy ------------------------------------------------------------------------
    def delta(self, extra: dict[str, Any]) -> jax.Array | float:
        """The ERA compensation used by the head (0 unless the algorithm learns or sets one)."""
        return 0.0

    def distribution(
        self, actor_params: Any, extra: dict[str, Any], obs: jax.Array, training: bool = True
    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """``(mu, log_std, batch_log_partition)`` of the policy at ``obs``."""
        mu, pre_std = cast(tuple[jax.Array, jax.Array], self.actor.apply(actor_params, obs))
        running = None if training else extra.get("log_partition")
        log_std, log_z = self.head.log_std(pre_std, self.delta(extra), running)
        return mu, log_std, log_z

    def sample(
        self,
        actor_params: Any,
        extra: dict[str, Any],
        obs: jax.Array,
        key: jax.Array,
        training: bool = True,
    ) -> tuple[jax.Array, jax.Array | None]:
        mu, log_std, _ = self.distribution(actor_params, extra, obs, training)
        return self.head.sample(key, mu, log_std)

    def act(
        self,
        actor_params: Any,
        extra: dict[str, Any],
        obs: jax.Array,
        key: jax.Array | None,
        deterministic: bool,
    ) -> jax.Array:
        """Action for one observation (or a batch) when collecting data or evaluating."""
        if deterministic:
            mu, _ = self.actor.apply(actor_params, obs)
            return self.head.mode(mu)
        key = cast(jax.Array, key)  # only deterministic actions come without a key
        return self.sample(actor_params, extra, obs, key, training=False)[0]

    # ---- state -------------------------------------------------------------------------
    def init_state(self, key: jax.Array) -> dict[str, Any]:
        k_actor, k_critic, k_run = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        act = jnp.zeros((1, self.action_dim))
        actor = self.actor.init(k_actor, obs)
        critic = self.critic.init(k_critic, obs, act)
        return {
            "actor": actor,
            "actor_opt": self.actor_opt.init(actor),
            "critic": critic,
            "critic_target": critic,
            "critic_opt": self.critic_opt.init(critic),
            "extra": self.init_extra(),
            "buffer": replay_init(self.capacity, self.obs_dim, self.action_dim),
            "key": k_run,
            "last_obs": jnp.zeros((self.obs_dim,)),
            "last_action": jnp.zeros((self.action_dim,)),
        }

    # ---- one gradient update -------------------------------------------------------------
    def update(
        self, state: dict[str, Any], key: jax.Array
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """Critic, then actor, then the extra parameters, then the target network."""
        cfg = self.config
        k_batch, k_next, k_actor = jax.random.split(key, 3)
        batch = replay_sample(state["buffer"], k_batch, cfg.batch_size)
        extra = state["extra"]

        next_action, next_log_prob = self.sample(state["actor"], extra, batch["next_obs"], k_next)
        next_q = cast(
            jax.Array, self.critic.apply(state["critic_target"], batch["next_obs"], next_action)
        ).min(0)
        next_v = next_q - self.next_value_penalty(extra, next_log_prob)
        target_q = batch["reward"] + cfg.gamma * batch["discount"] * next_v
        target_q = jax.lax.stop_gradient(target_q)

        def critic_loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
            q = cast(jax.Array, self.critic.apply(params, batch["obs"], batch["action"]))
            return jnp.mean(jnp.sum((q - target_q) ** 2, 0)), q

        (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state["critic"])
        updates, critic_opt = self.critic_opt.update(grads, state["critic_opt"], state["critic"])
        critic = optax.apply_updates(state["critic"], updates)

        def actor_loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            return self.actor_loss(params, extra, critic, batch["obs"], k_actor)

        (actor_loss, aux), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state["actor"])
        updates, actor_opt = self.actor_opt.update(grads, state["actor_opt"], state["actor"])
        actor = optax.apply_updates(state["actor"], updates)

        extra, extra_metrics = self.update_extra(extra, aux)
        target = optax.incremental_update(critic, state["critic_target"], cfg.tau)
        new_state = dict(
            state,
            actor=actor,
            actor_opt=actor_opt,
            critic=critic,
            critic_opt=critic_opt,
            critic_target=target,
            extra=extra,
        )
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": jnp.mean(q),
            **{k: v for k, v in aux.items() if not k.startswith("_")},
            **extra_metrics,
        }
        return new_state, metrics

    # ---- one environment step ------------------------------------------------------------
    def step(
        self,
        state: dict[str, Any],
        next_obs: jax.Array,
        reward: jax.Array,
        terminated: jax.Array,
        obs: jax.Array,
        random: jax.Array,
        *,
        update: bool,
    ) -> tuple[dict[str, Any], jax.Array, dict[str, jax.Array]]:
        """Store ``(last_obs, last_action, reward, next_obs)``, update, pick the next action.

        ``next_obs`` is where the step landed (the transition's next state), ``obs`` the
        observation to act on now (after an auto-reset they differ). Returns
        ``(state, action, metrics)``.
        """
        buffer = replay_add(
            state["buffer"],
            state["last_obs"],
            state["last_action"],
            reward,
            next_obs,
            1.0 - terminated.astype(jnp.float32),
        )
        state = dict(state, buffer=buffer)
        key, k_updates, k_act = jax.random.split(state["key"], 3)
        if update:
            keys = jax.random.split(k_updates, self.config.updates_per_step)
            state, metrics = jax.lax.scan(self.update, state, keys)
            metrics = jax.tree.map(lambda m: m[-1], metrics)
        else:
            metrics = {}
        action = self._explore(state, obs, k_act, random)
        state = dict(state, key=key, last_obs=obs, last_action=action)
        return state, action, metrics

    def _explore(
        self, state: dict[str, Any], obs: jax.Array, key: jax.Array, random: jax.Array
    ) -> jax.Array:
        """Uniform random action (warm-up) or a policy sample; ``random`` is a traced bool."""
        k_uniform, k_policy = jax.random.split(key)
        uniform = jax.random.uniform(k_uniform, (self.action_dim,), minval=-1.0, maxval=1.0)
        policy = self.act(state["actor"], state["extra"], obs[None], k_policy, False)[0]
        return jnp.where(random, uniform, policy)

    def start(
        self, state: dict[str, Any], obs: jax.Array, random: jax.Array
    ) -> tuple[dict[str, Any], jax.Array]:
        """Set the first observation of a run and choose the first action."""
        key, k_act = jax.random.split(state["key"])
        action = self._explore(state, obs, k_act, random)
        return dict(state, key=key, last_obs=obs, last_action=action), action

    def compile(self) -> dict[str, Callable[..., Any]]:
        """Seed-vmapped, jitted functions: ``init``, ``start``, ``step``, ``act_eval``."""

        def start(
            state: dict[str, Any], obs: jax.Array, random: jax.Array
        ) -> tuple[dict[str, Any], jax.Array]:
            return jax.vmap(self.start, in_axes=(0, 0, None))(state, obs, random)

        def step(
            state: dict[str, Any],
            next_obs: jax.Array,
            reward: jax.Array,
            terminated: jax.Array,
            obs: jax.Array,
            random: jax.Array,
            update: bool,
        ) -> tuple[dict[str, Any], jax.Array, dict[str, jax.Array]]:
            fn = functools.partial(self.step, update=update)
            return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, None))(
                state, next_obs, reward, terminated, obs, random
            )

        def act_eval(state: dict[str, Any], obs: jax.Array) -> jax.Array:
            act = lambda s, o: self.act(s["actor"], s["extra"], o[None], None, True)[0]  # noqa: E731
            return jax.vmap(act)(state, obs)

        return {
            "init": jax.jit(jax.vmap(self.init_state)),
            "start": jax.jit(start, donate_argnums=0),
            "step": jax.jit(step, static_argnames="update", donate_argnums=0),
            "act_eval": jax.jit(act_eval),
        }
