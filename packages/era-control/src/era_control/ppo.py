"""PPO and PPO-ERA (paper Table 6): clipped surrogate, GAE, Gaussian policy.

* PPO: an unbounded Gaussian with a state-independent learned log-std, entropy bonus
  ``ent_coef = 0.01``.
* PPO-ERA: the same network with a state-dependent ``pre_std`` turned into the log-std by
  ``era_core.gaussian_log_std`` (head ``"gaussian-era"`` of :mod:`era_control.heads`), so every
  state's policy entropy is exactly ``H0 = D * target_entropy_per_dim``; **no entropy
  coefficient**.

Both sample in the unbounded space and the environment side clips actions to ``[-1, 1]``.
A rollout of ``rollout_steps`` per seed is collected with a jitted, seed-vmapped policy step
(only observations and actions cross host and device); the update (GAE, ``epochs`` passes over
shuffled minibatches, Adam with global-norm clipping) is one jitted, seed-vmapped
``jax.lax.scan``. Time-limit truncations bootstrap from the value of the final observation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
import optax

from . import heads
from .heads import total_target_entropy
from .networks import Actor, ValueNetwork
from .registry import get_algorithm, list_algorithms

Critic = ValueNetwork  # the name this module has always exported


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (paper Table 6)."""

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    rollout_steps: int = 2048
    minibatch_size: int = 64
    epochs: int = 10
    max_grad_norm: float = 0.5
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    log_std_min: float = -8.0
    log_std_max: float = 2.0

    # --quick: at most this many agent steps, and the fields quick() shrinks
    QUICK_STEPS: ClassVar[int] = 20480
    QUICK_FIELDS: ClassVar[tuple[str, ...]] = ("rollout_steps",)

    def quick(self, steps: int) -> PPOConfig:
        """A CPU-sized copy: rollouts of at most 1024 steps per seed."""
        return dataclasses.replace(self, rollout_steps=min(int(self.rollout_steps), 1024))


@dataclasses.dataclass(frozen=True)
class PPOERAConfig(PPOConfig):
    """PPO-ERA: no entropy coefficient; the ERA head fixes the entropy at ``H0``.

    ``target_entropy_per_dim = 0`` (a per-dimension std of about 0.24) is our default: the
    paper does not state its PPO-ERA target.
    """

    ent_coef: float = 0.0
    target_entropy_per_dim: float = 0.0
    log_std_max: float = 0.0


def __getattr__(name: str) -> Any:
    # names this module has always exported, now read from the registry / the trainer module
    if name == "PPO_CONFIGS":  # algorithm name -> config class
        specs = [get_algorithm(n) for n in list_algorithms()]
        return {s.name: s.config for s in specs if s.agent in (PPOAgent, PPOERA)}
    if name == "PPOTrainer":
        from .onpolicy_trainer import OnPolicyTrainer

        return OnPolicyTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PPOAgent:
    """The policy/value networks, the rollout step and the fused update of PPO.

    :class:`PPOERA` is the same agent with the ERA head (``era = True``).
    """

    era: ClassVar[bool] = False

    def __init__(self, config: PPOConfig, obs_dim: int, action_dim: int):
        self.config = config
        self.obs_dim, self.action_dim = obs_dim, action_dim
        if config.rollout_steps % config.minibatch_size:
            raise ValueError(
                f"rollout_steps ({config.rollout_steps}) must be a multiple of minibatch_size "
                f"({config.minibatch_size})"
            )
        bounds = {"log_std_min": config.log_std_min, "log_std_max": config.log_std_max}
        if self.era:
            if config.ent_coef != 0.0:
                raise ValueError("PPO-ERA has no entropy coefficient: ent_coef must be 0")
            era_config = cast(PPOERAConfig, config)  # self.era: the PPO-ERA config
            self.target_entropy: float | None = total_target_entropy(
                era_config.target_entropy_per_dim, action_dim, config.log_std_max
            )
            self.head = heads.make_head(
                "gaussian-era", action_dim, target_entropy=self.target_entropy, **bounds
            )
        else:
            self.target_entropy = None
            self.head = heads.make_head("gaussian", action_dim, **bounds)
        self.actor = Actor(
            action_dim,
            config.hidden,
            config.activation,
            layer_norm=False,
            state_independent_std=not self.era,
            final_scale=0.01,
        )
        self.critic = ValueNetwork(config.hidden, config.activation)
        self.opt = optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5)
        )

    def init_state(self, key: jax.Array) -> dict[str, Any]:
        k_a, k_c, k_run = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        params = {"actor": self.actor.init(k_a, obs), "critic": self.critic.init(k_c, obs)}
        return {"params": params, "opt": self.opt.init(params), "key": k_run}

    def dist(self, params: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mu, pre_std = cast(tuple[jax.Array, jax.Array], self.actor.apply(params["actor"], obs))
        log_std, _ = self.head.log_std(pre_std)
        return mu, log_std

    def policy_step(
        self, state: dict[str, Any], obs: jax.Array
    ) -> tuple[dict[str, Any], jax.Array, jax.Array | None]:
        """Sample an action for one seed: ``(state, action, log_prob)``."""
        key, k = jax.random.split(state["key"])
        mu, log_std = self.dist(state["params"], obs)
        action, log_prob = self.head.sample(k, mu, log_std)
        return dict(state, key=key), action, log_prob

    def loss(self, params: Any, batch: dict[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        cfg = self.config
        mu, log_std = self.dist(params, batch["obs"])
        log_prob = self.head.log_prob(batch["action"], mu, log_std)
        ratio = jnp.exp(log_prob - batch["log_prob"])
        adv = batch["advantage"]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clipped = jnp.clip(ratio, 1 - cfg.clip, 1 + cfg.clip)
        policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
        value = self.critic.apply(params["critic"], batch["obs"])
        value_loss = 0.5 * jnp.mean((value - batch["return"]) ** 2)
        entropy = jnp.mean(self.head.entropy(mu, log_std))
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        aux = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean((ratio - 1) - jnp.log(ratio)),
            "clip_frac": jnp.mean(jnp.abs(ratio - 1) > cfg.clip),
        }
        return loss, aux

    def update(
        self, state: dict[str, Any], rollout: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """GAE over the rollout ``(T, ...)`` of one seed, then ``epochs`` x minibatch steps."""
        cfg = self.config
        critic = functools.partial(self.critic.apply, state["params"]["critic"])
        values = cast(jax.Array, critic(rollout["obs"]))
        next_values = critic(rollout["final_obs"]) * (1.0 - rollout["terminated"])
        deltas = rollout["reward"] + cfg.gamma * next_values - values
        not_done = 1.0 - rollout["done"]

        def gae(carry: jax.Array, x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            delta, nd = x
            carry = delta + cfg.gamma * cfg.gae_lambda * nd * carry
            return carry, carry

        _, adv = jax.lax.scan(gae, jnp.zeros(()), (deltas, not_done), reverse=True)
        data = {
            "obs": rollout["obs"],
            "action": rollout["action"],
            "log_prob": rollout["log_prob"],
            "advantage": adv,
            "return": adv + values,
        }
        n = cfg.rollout_steps // cfg.minibatch_size
        key, k_perm = jax.random.split(state["key"])
        perms = jax.vmap(lambda k: jax.random.permutation(k, cfg.rollout_steps))(
            jax.random.split(k_perm, cfg.epochs)
        ).reshape(cfg.epochs * n, cfg.minibatch_size)

        def minibatch(carry: Any, idx: jax.Array) -> tuple[tuple[Any, Any], dict[str, jax.Array]]:
            params, opt = carry
            batch = jax.tree.map(lambda x: x[idx], data)
            (_, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(params, batch)
            updates, opt = self.opt.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), aux

        (params, opt), aux = jax.lax.scan(minibatch, (state["params"], state["opt"]), perms)
        metrics = jax.tree.map(jnp.mean, aux)
        if self.target_entropy is not None:
            metrics["target_entropy"] = jnp.asarray(self.target_entropy)
        metrics["ent_coef"] = jnp.asarray(cfg.ent_coef)
        return dict(state, params=params, opt=opt, key=key), metrics

    def compile(self) -> dict[str, Callable[..., Any]]:
        return {
            "init": jax.jit(jax.vmap(self.init_state)),
            "policy_step": jax.jit(jax.vmap(self.policy_step)),
            "update": jax.jit(jax.vmap(self.update, in_axes=(0, 1)), donate_argnums=0),
            "act_eval": jax.jit(
                jax.vmap(lambda s, o: self.head.mode(self.dist(s["params"], o[None])[0])[0])
            ),
        }

    @property
    def updates_per_rollout(self) -> int:
        """Gradient steps in one update: ``epochs`` passes of ``rollout_steps / minibatch``."""
        return self.config.epochs * (self.config.rollout_steps // self.config.minibatch_size)


class PPOERA(PPOAgent):
    """PPO-ERA: the state-dependent ERA log-std (head ``"gaussian-era"``), no entropy bonus."""

    era: ClassVar[bool] = True


PPO = PPOAgent
