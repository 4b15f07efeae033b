"""What FastTD3, FastSAC and FastSAC-ERA share: the learner for many parallel environments.

FastTD3 (Seo et al. 2025, arXiv 2505.22642) trains one off-policy learner on ``N`` parallel
copies of an environment: every step stores ``N`` transitions in a replay buffer on the device,
then runs ``updates_per_step`` gradient updates on a large batch with a distributional
(C51-style) critic (:mod:`era_control.distributional`) and clipped double Q. Observations are
normalised with running statistics. The three algorithms differ only in the policy:

* :mod:`era_control.fasttd3`: a deterministic ``tanh`` actor plus Gaussian exploration noise
  whose scale is drawn per environment from ``U[std_min, std_max]`` (redrawn when that
  environment's episode ends), target-policy smoothing noise and delayed actor updates;
* :mod:`era_control.fastsac`: SAC's tanh-Gaussian policy and learned temperature alpha;
* :mod:`era_control.fastsac_era`: the ERA head (``era_core.gaussian_log_std``), FastTD3's noise
  kept, no delayed actor update, no entropy term, no alpha.

A subclass of :class:`FastAgent` fills in the hooks ``make_head``, ``init_extra``,
``target_action``, ``next_value_penalty``, ``actor_loss``, ``update_extra`` and
``explore_action``. Per seed the state is a dict pytree (networks, optimiser states, target
critic, replay buffer ``(capacity, N, ...)``, normaliser statistics, per-env noise scales, PRNG
key, the pending observations and actions); :meth:`FastAgent.compile` vmaps everything over
seeds and jits it with the state donated. :meth:`FastAgent.step` takes ``update`` as a Python
bool (one compiled program each) or as a traced boolean (the updates then sit under a
``jax.lax.cond``, as the on-device loop of :mod:`era_control.mjx_trainer` uses it). A
``batch_sharding`` set on the agent is applied to every sampled batch (data parallelism over
devices; ``None``: no constraint).

Not carried over from FastTD3's PyTorch code: bf16 autocast (XLA on CPU runs float32), n-step
returns (its HumanoidBench default is 1-step), the learning-rate schedule of its later versions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from . import distributional as dist
from .heads import Head

State = dict[str, Any]  # one seed's learner state (see the module docstring)
Metrics = dict[str, jax.Array]
Params = Any  # a Flax variable collection


def apply(module: nn.Module, params: Params, *args: jax.Array) -> Any:
    """``module.apply(params, *args)`` (its outputs as the module returns them)."""
    return module.apply(params, *args)


@dataclasses.dataclass(frozen=True)
class FastTD3Config:
    """FastTD3's hyper-parameters. Defaults: FastTD3's published HumanoidBench defaults
    (``BaseArgs`` in ``fast_td3/hyperparams.py`` of github.com/younggyoseo/FastTD3), field by
    field as noted; the number of environments is the run's ``--num-envs``."""

    actor_hidden: tuple[int, ...] = (512, 256, 128)  # actor_hidden_dim=512: 512, 256, 128
    critic_hidden: tuple[int, ...] = (1024, 512, 256)  # critic_hidden_dim=1024: 1024, 512, 256
    actor_lr: float = 3e-4  # actor_learning_rate
    critic_lr: float = 3e-4  # critic_learning_rate
    weight_decay: float = 0.1  # weight_decay (AdamW, actor and critic)
    gamma: float = 0.99  # gamma
    tau: float = 0.1  # tau
    batch_size: int = 32768  # batch_size (total over the environments)
    buffer_size: int = 1024 * 50  # buffer_size (transitions per environment)
    num_atoms: int = 101  # num_atoms
    v_min: float = -250.0  # v_min
    v_max: float = 250.0  # v_max
    use_cdq: bool = True  # use_cdq (clipped double Q)
    std_min: float = 0.001  # std_min (exploration noise scale, per environment)
    std_max: float = 0.4  # std_max
    policy_noise: float = 0.001  # policy_noise (target-policy smoothing)
    noise_clip: float = 0.5  # noise_clip
    learning_starts: int = 10  # learning_starts (parallel steps before the first update)
    updates_per_step: int = 2  # num_updates
    policy_frequency: int = 2  # policy_frequency (delayed actor updates)
    init_scale: float = 0.01  # init_scale (std of the actor's output layer at init)
    obs_normalization: bool = True  # obs_normalization
    normalizer_eps: float = 1e-2  # EmpiricalNormalization's eps: (x - mean) / (std + eps)

    # --quick: at most this many transitions per seed, and the fields quick() shrinks
    QUICK_STEPS: ClassVar[int] = 20000
    QUICK_FIELDS: ClassVar[tuple[str, ...]] = ("actor_hidden", "critic_hidden", "batch_size")

    def quick(self, steps: int) -> FastTD3Config:
        """A CPU-sized copy: layers of at most 256 (critic) / 128 (actor), batch at most 1024."""
        return dataclasses.replace(
            self,
            actor_hidden=tuple(min(int(h), 128) for h in self.actor_hidden),
            critic_hidden=tuple(min(int(h), 256) for h in self.critic_hidden),
            batch_size=min(int(self.batch_size), 1024),
        )

    def validate(self, action_dim: int) -> None:
        """``ValueError`` naming the first field out of its range."""
        for name in ("batch_size", "buffer_size", "updates_per_step", "policy_frequency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_atoms < 2 or not self.v_min < self.v_max:
            raise ValueError(
                f"need num_atoms >= 2 and v_min < v_max, got {self.num_atoms}, "
                f"{self.v_min}, {self.v_max}"
            )
        if not 0.0 <= self.std_min <= self.std_max:
            raise ValueError(f"need 0 <= std_min <= std_max, got {self.std_min}, {self.std_max}")
        if not 0.0 < self.tau <= 1.0 or not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"need 0 < tau <= 1 and 0 <= gamma <= 1, got {self.tau}, {self.gamma}")
        if self.learning_starts < 0 or self.policy_noise < 0 or self.noise_clip < 0:
            raise ValueError("learning_starts, policy_noise and noise_clip must be >= 0")
        for name in ("actor_hidden", "critic_hidden"):
            widths = getattr(self, name)
            if not widths or min(widths) < 1:
                raise ValueError(f"{name} must be positive layer widths, got {widths}")


class FastActor(nn.Module):
    """FastTD3's actor: Dense+ReLU layers, then ``mu`` (output layer ~ N(0, init_scale^2), zero
    bias) and, for the stochastic policies, ``pre_std``. Returns ``(mu, pre_std)``;
    ``pre_std`` is zeros for the deterministic one."""

    action_dim: int
    hidden: Sequence[int]
    init_scale: float
    stochastic: bool

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = obs
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        init = nn.initializers.normal(self.init_scale)
        mu = nn.Dense(self.action_dim, kernel_init=init, bias_init=nn.initializers.zeros)(x)
        if not self.stochastic:
            return mu, jnp.zeros_like(mu)
        return mu, nn.Dense(self.action_dim)(x)


# ---- the buffer and the normaliser (pure functions, inside the jitted step) ----------------


def buffer_init(capacity: int, num_envs: int, obs_dim: int, action_dim: int) -> dict[str, Any]:
    """A ring buffer of ``capacity`` parallel steps, each ``num_envs`` transitions."""
    shape = (capacity, num_envs)
    return {
        "obs": jnp.zeros((*shape, obs_dim), jnp.float32),
        "action": jnp.zeros((*shape, action_dim), jnp.float32),
        "reward": jnp.zeros(shape, jnp.float32),
        "next_obs": jnp.zeros((*shape, obs_dim), jnp.float32),
        "discount": jnp.zeros(shape, jnp.float32),
        "ptr": jnp.zeros((), jnp.int32),
        "size": jnp.zeros((), jnp.int32),
    }


def buffer_add(buffer: dict[str, Any], **rows: jax.Array) -> dict[str, Any]:
    """Store one parallel step (``rows``: ``obs, action, reward, next_obs, discount``)."""
    capacity = buffer["reward"].shape[0]
    i = buffer["ptr"]
    out = dict(buffer)
    for name, value in rows.items():
        out[name] = buffer[name].at[i].set(jnp.asarray(value, jnp.float32))
    out["ptr"] = (i + 1) % capacity
    out["size"] = jnp.minimum(buffer["size"] + 1, capacity)
    return out


def buffer_sample(buffer: dict[str, Any], key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """``batch_size`` transitions uniformly (with replacement) over all stored ones."""
    k_t, k_env = jax.random.split(key)
    num_envs = buffer["reward"].shape[1]
    t = jax.random.randint(k_t, (batch_size,), 0, jnp.maximum(buffer["size"], 1))
    env = jax.random.randint(k_env, (batch_size,), 0, num_envs)
    return {k: buffer[k][t, env] for k in ("obs", "action", "reward", "next_obs", "discount")}


def normalizer_init(obs_dim: int) -> dict[str, jax.Array]:
    """Count 0, mean 0, variance 1."""
    return {"count": jnp.zeros(()), "mean": jnp.zeros(obs_dim), "var": jnp.ones(obs_dim)}


def normalizer_update(norm: dict[str, jax.Array], obs: jax.Array) -> dict[str, jax.Array]:
    """Merge the batch ``obs`` ``(N, obs_dim)`` into the running mean and variance."""
    n = obs.shape[0]
    mean, var = jnp.mean(obs, 0), jnp.var(obs, 0)
    total = norm["count"] + n
    delta = mean - norm["mean"]
    new_mean = norm["mean"] + delta * n / total
    m2 = norm["var"] * norm["count"] + var * n + delta**2 * norm["count"] * n / total
    return {"count": total, "mean": new_mean, "var": m2 / total}


ConfigT = TypeVar("ConfigT", bound=FastTD3Config)


class FastAgent(Generic[ConfigT]):
    """Base of the Fast* agents (generic in their config class); see the module docstring for
    the hooks."""

    stochastic: ClassVar[bool] = False  # whether the actor has a pre_std output
    target_entropy: float | None = None  # H0 of the stochastic policies
    batch_sharding: Any = None  # a jax.sharding.Sharding for every sampled batch, or None

    def __init__(
        self, config: ConfigT, obs_dim: int, action_dim: int, capacity: int, num_envs: int
    ):
        config.validate(action_dim)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config: ConfigT = config
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.capacity, self.num_envs = capacity, num_envs
        self.head: Head | None = self.make_head()
        self.actor = FastActor(action_dim, config.actor_hidden, config.init_scale, self.stochastic)
        self.critic = dist.DistributionalCritic(config.critic_hidden, config.num_atoms)
        self.atoms = dist.support(config.v_min, config.v_max, config.num_atoms)
        self.actor_opt = optax.adamw(config.actor_lr, weight_decay=config.weight_decay)
        self.critic_opt = optax.adamw(config.critic_lr, weight_decay=config.weight_decay)

    # ---- hooks -------------------------------------------------------------------------
    def make_head(self) -> Head | None:
        """The policy head (``None``: the deterministic actor)."""
        return None

    def init_extra(self) -> dict[str, Any]:
        """The algorithm's own learned state (FastSAC: the temperature)."""
        return {}

    def target_action(
        self, actor_params: Params, extra: dict[str, Any], next_obs: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        """``(a', log pi(a'|s') or None)`` for the critic target."""
        raise NotImplementedError

    def next_value_penalty(
        self, extra: dict[str, Any], next_log_prob: jax.Array | None
    ) -> jax.Array | float:
        """Subtracted from every target atom (FastSAC: ``alpha log pi``)."""
        return 0.0

    def actor_loss(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        critic_params: Params,
        obs: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(loss, aux)``; ``aux`` goes to :meth:`update_extra` (``_``-keys are not logged)."""
        raise NotImplementedError

    def update_extra(
        self, extra: dict[str, Any], aux: dict[str, jax.Array]
    ) -> tuple[dict[str, Any], Metrics]:
        """The new ``extra`` and its metrics, from the actor loss's ``aux``."""
        return extra, {}

    def explore_action(
        self,
        actor_params: Params,
        extra: dict[str, Any],
        obs: jax.Array,
        key: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        """Actions for the ``N`` environments while collecting data (in ``[-1, 1]``)."""
        raise NotImplementedError

    # ---- shared pieces ---------------------------------------------------------------------
    @property
    def actor_every(self) -> int:
        """The actor is updated on every ``actor_every``-th gradient update."""
        return self.config.policy_frequency

    def normalize(self, norm: dict[str, jax.Array], obs: jax.Array) -> jax.Array:
        """``(obs - mean) / (std + eps)`` with the running statistics (or ``obs`` unchanged)."""
        if not self.config.obs_normalization:
            return obs
        std = jnp.sqrt(norm["var"])
        return (obs - norm["mean"]) / (std + self.config.normalizer_eps)

    def smoothing_noise(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """TD3's clipped Gaussian target-policy smoothing noise."""
        cfg = self.config
        return jnp.clip(
            cfg.policy_noise * jax.random.normal(key, shape), -cfg.noise_clip, cfg.noise_clip
        )

    def exploration_noise(
        self, key: jax.Array, shape: tuple[int, ...], noise_scale: jax.Array
    ) -> jax.Array:
        """FastTD3's per-environment Gaussian noise ``eps * scale_env``."""
        return jax.random.normal(key, shape) * noise_scale[:, None]

    def q_value(self, critic_params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """``min(Q1, Q2)`` (clipped double Q) or their mean, from the categorical critic."""
        q = dist.expected_value(apply(self.critic, critic_params, obs, action), self.atoms)
        return q.min(0) if self.config.use_cdq else q.mean(0)

    def draw_noise_scales(self, key: jax.Array) -> jax.Array:
        """One exploration noise scale per environment, ``U[std_min, std_max]``."""
        cfg = self.config
        return jax.random.uniform(key, (self.num_envs,), minval=cfg.std_min, maxval=cfg.std_max)

    def actor_outputs(self, actor_params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The actor's ``(mu, pre_std)``."""
        return cast(tuple[jax.Array, jax.Array], apply(self.actor, actor_params, obs))

    def act(self, actor_params: Params, obs: jax.Array) -> jax.Array:
        """The deterministic action ``tanh(mu)`` (evaluation)."""
        return jnp.tanh(self.actor_outputs(actor_params, obs)[0])

    # ---- state -------------------------------------------------------------------------
    def init_state(self, key: jax.Array) -> State:
        """A fresh learner state (empty buffer, fresh networks) from ``key``."""
        k_actor, k_critic, k_noise, k_run = jax.random.split(key, 4)
        obs = jnp.zeros((1, self.obs_dim))
        act = jnp.zeros((1, self.action_dim))
        actor = self.actor.init(k_actor, obs)
        critic = self.critic.init(k_critic, obs, act)
        n = self.num_envs
        return {
            "actor": actor,
            "actor_opt": self.actor_opt.init(actor),
            "critic": critic,
            "critic_target": critic,
            "critic_opt": self.critic_opt.init(critic),
            "extra": self.init_extra(),
            "buffer": buffer_init(self.capacity, n, self.obs_dim, self.action_dim),
            "norm": normalizer_init(self.obs_dim),
            "noise_scale": self.draw_noise_scales(k_noise),
            "updates": jnp.zeros((), jnp.int32),
            "key": k_run,
            "last_obs": jnp.zeros((n, self.obs_dim)),
            "last_action": jnp.zeros((n, self.action_dim)),
        }

    # ---- one gradient update -------------------------------------------------------------
    def critic_update(
        self, state: State, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[Params, Any, Metrics]:
        """The categorical TD update of both critics; returns the new critic, its optimiser
        state and metrics."""
        cfg = self.config
        extra = state["extra"]
        next_action, next_log_prob = self.target_action(
            state["actor"], extra, batch["next_obs"], key
        )
        discount = cfg.gamma * batch["discount"]
        reward = batch["reward"] - discount * self.next_value_penalty(extra, next_log_prob)
        next_probs = jax.nn.softmax(
            apply(self.critic, state["critic_target"], batch["next_obs"], next_action), -1
        )
        project = functools.partial(dist.categorical_projection, atoms=self.atoms)
        targets = jnp.stack([project(p, reward, discount) for p in next_probs])
        if cfg.use_cdq:  # the target distribution of the critic with the smaller value
            values = jnp.sum(targets * self.atoms, -1)
            pick = (values[0] < values[1])[:, None]
            targets = jnp.stack([jnp.where(pick, targets[0], targets[1])] * 2)
        targets = jax.lax.stop_gradient(targets)

        def loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
            logits = apply(self.critic, params, batch["obs"], batch["action"])
            loss = dist.categorical_loss(logits[0], targets[0])
            loss = loss + dist.categorical_loss(logits[1], targets[1])
            return loss, dist.expected_value(logits, self.atoms)

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["critic"])
        updates, opt = self.critic_opt.update(grads, state["critic_opt"], state["critic"])
        critic = optax.apply_updates(state["critic"], updates)
        return critic, opt, {"critic_loss": loss, "q_mean": jnp.mean(q)}

    def update(self, state: State, key: jax.Array) -> tuple[State, Metrics]:
        """Critic; actor and extra parameters on every ``actor_every``-th update; target."""
        cfg = self.config
        k_batch, k_next, k_actor = jax.random.split(key, 3)
        batch = buffer_sample(state["buffer"], k_batch, cfg.batch_size)
        if self.batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, self.batch_sharding)
        batch["obs"] = self.normalize(state["norm"], batch["obs"])
        batch["next_obs"] = self.normalize(state["norm"], batch["next_obs"])
        critic, critic_opt, metrics = self.critic_update(state, batch, k_next)

        extra = state["extra"]

        def actor_loss_fn(params: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
            return self.actor_loss(params, extra, critic, batch["obs"], k_actor)

        (actor_loss, aux), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state["actor"])
        updates, actor_opt = self.actor_opt.update(grads, state["actor_opt"], state["actor"])
        actor = optax.apply_updates(state["actor"], updates)
        new_extra, extra_metrics = self.update_extra(extra, aux)
        now = state["updates"] % self.actor_every == self.actor_every - 1

        def keep(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(now, a, b), new, old)

        new_state = dict(
            state,
            actor=keep(actor, state["actor"]),
            actor_opt=keep(actor_opt, state["actor_opt"]),
            extra=keep(new_extra, extra),
            critic=critic,
            critic_opt=critic_opt,
            critic_target=optax.incremental_update(critic, state["critic_target"], cfg.tau),
            updates=state["updates"] + 1,
        )
        logged = {k: v for k, v in aux.items() if not k.startswith("_")}
        return new_state, {**metrics, "actor_loss": actor_loss, **logged, **extra_metrics}

    # ---- one parallel environment step -------------------------------------------------------
    def updates(self, state: State, key: jax.Array) -> tuple[State, Metrics]:
        """``updates_per_step`` gradient updates in a scan; the last one's metrics."""
        keys = jax.random.split(key, self.config.updates_per_step)
        state, metrics = jax.lax.scan(self.update, state, keys)
        return state, jax.tree.map(lambda m: m[-1], metrics)

    def maybe_updates(
        self, state: State, key: jax.Array, update: jax.Array
    ) -> tuple[State, Metrics]:
        """:meth:`updates` where the traced boolean ``update`` holds, else the state as it is
        and zero metrics (of the same structure)."""
        shapes = jax.eval_shape(self.updates, state, key)[1]
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jax.lax.cond(update, self.updates, lambda s, _: (s, zeros), state, key)

    def step(
        self,
        state: State,
        next_obs: jax.Array,
        reward: jax.Array,
        terminated: jax.Array,
        done: jax.Array,
        obs: jax.Array,
        *,
        update: bool | jax.Array,
    ) -> tuple[State, jax.Array, Metrics]:
        """Store the ``N`` transitions ``(last_obs, last_action, reward, next_obs)``, update,
        redraw the noise scales of the environments whose episode ended, pick ``N`` actions.

        ``next_obs`` is where each environment landed, ``obs`` what to act on now (after an
        auto-reset they differ). ``update``: a Python bool (no updates: no metrics), or a
        traced boolean (zero metrics where it is false). Returns ``(state, action, metrics)``.
        """
        buffer = buffer_add(
            state["buffer"],
            obs=state["last_obs"],
            action=state["last_action"],
            reward=reward,
            next_obs=next_obs,
            discount=1.0 - terminated.astype(jnp.float32),
        )
        state = dict(state, buffer=buffer)
        key, k_updates, k_noise, k_act = jax.random.split(state["key"], 4)
        if isinstance(update, bool):
            state, metrics = self.updates(state, k_updates) if update else (state, {})
        else:
            state, metrics = self.maybe_updates(state, k_updates, update)
        scale = jnp.where(done, self.draw_noise_scales(k_noise), state["noise_scale"])
        state = dict(state, noise_scale=scale, key=key)
        state, action = self._act_on(state, obs, k_act)
        return state, action, metrics

    def _act_on(self, state: State, obs: jax.Array, key: jax.Array) -> tuple[State, jax.Array]:
        norm = normalizer_update(state["norm"], obs)
        action = self.explore_action(
            state["actor"], state["extra"], self.normalize(norm, obs), key, state["noise_scale"]
        )
        action = jnp.clip(action, -1.0, 1.0)
        return dict(state, norm=norm, last_obs=obs, last_action=action), action

    def start(self, state: State, obs: jax.Array) -> tuple[State, jax.Array]:
        """Set the first observations of a run and choose the first actions."""
        key, k_act = jax.random.split(state["key"])
        return self._act_on(dict(state, key=key), obs, k_act)

    def compile(self) -> dict[str, Any]:
        """Seed-vmapped, jitted ``init``, ``start``, ``step`` and ``act_eval``."""

        def step(
            state: State,
            next_obs: jax.Array,
            reward: jax.Array,
            terminated: jax.Array,
            done: jax.Array,
            obs: jax.Array,
            update: bool,
        ) -> tuple[State, jax.Array, Metrics]:
            fn = functools.partial(self.step, update=update)
            return jax.vmap(fn)(state, next_obs, reward, terminated, done, obs)

        return {
            "init": jax.jit(jax.vmap(self.init_state)),
            "start": jax.jit(jax.vmap(self.start), donate_argnums=0),
            "step": jax.jit(step, static_argnames="update", donate_argnums=0),
            "act_eval": jax.jit(jax.vmap(self.act_normalized)),
        }

    def act_normalized(self, state: State, obs: jax.Array) -> jax.Array:
        """The deterministic action on ``obs`` normalised with ``state``'s statistics."""
        return self.act(state["actor"], self.normalize(state["norm"], obs))
