"""PPO and PPO-ERA (paper Table 6): clipped surrogate, GAE, Gaussian policy.

* PPO: an unbounded Gaussian with a state-independent learned log-std, entropy bonus
  ``ent_coef = 0.01``.
* PPO-ERA: the same network with a state-dependent ``pre_std`` turned into the log-std by
  ``era_core.gaussian_log_std`` (head ``"gaussian-era"`` of :mod:`era_control.heads`), so every
  state's policy entropy is exactly ``H0 = D * entropy_per_dim``; **no entropy coefficient**.

Both sample in the unbounded space and the environment side clips actions to ``[-1, 1]``.
A rollout of ``rollout_steps`` per seed is collected with a jitted, seed-vmapped policy step
(only observations and actions cross host and device); the update (GAE, ``epochs`` passes over
shuffled minibatches, Adam with global-norm clipping) is one jitted, seed-vmapped
``jax.lax.scan``. Time-limit truncations bootstrap from the value of the final observation.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .envs import VectorEnv
from .heads import MLP, Actor, PolicyHead, total_target_entropy


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


@dataclasses.dataclass(frozen=True)
class PPOERAConfig(PPOConfig):
    """PPO-ERA: no entropy coefficient; the ERA head fixes the entropy at ``H0``.

    The paper's PPO-ERA target was lost in the text extraction; ``entropy_per_dim = 0``
    (a per-dimension std of about 0.24) is our default.
    """

    ent_coef: float = 0.0
    entropy_per_dim: float = 0.0
    log_std_max: float = 0.0


PPO_CONFIGS = {"ppo": PPOConfig, "ppo-era": PPOERAConfig}


class Critic(nn.Module):
    hidden: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, obs):
        return nn.Dense(1)(MLP(self.hidden, self.activation, layer_norm=False)(obs))[..., 0]


class PPOAgent:
    """The policy/value networks, the rollout step and the fused update of PPO / PPO-ERA."""

    def __init__(self, algo: str, config: PPOConfig, obs_dim: int, action_dim: int):
        self.algo, self.config = algo, config
        self.obs_dim, self.action_dim = obs_dim, action_dim
        if config.rollout_steps % config.minibatch_size:
            raise ValueError(
                f"rollout_steps ({config.rollout_steps}) must be a multiple of minibatch_size "
                f"({config.minibatch_size})"
            )
        era = algo == "ppo-era"
        if era and config.ent_coef != 0.0:
            raise ValueError("PPO-ERA has no entropy coefficient: ent_coef must be 0")
        self.target_entropy = (
            total_target_entropy(config.entropy_per_dim, action_dim, config.log_std_max)
            if era
            else None
        )
        self.head = PolicyHead(
            "gaussian-era" if era else "gaussian",
            action_dim,
            target_entropy=self.target_entropy or 0.0,
            log_std_min=config.log_std_min,
            log_std_max=config.log_std_max,
        )
        self.actor = Actor(
            action_dim,
            config.hidden,
            config.activation,
            layer_norm=False,
            state_independent_std=not era,
            final_scale=0.01,
        )
        self.critic = Critic(config.hidden, config.activation)
        self.opt = optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5)
        )

    def init_state(self, key):
        k_a, k_c, k_run = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        params = {"actor": self.actor.init(k_a, obs), "critic": self.critic.init(k_c, obs)}
        return {"params": params, "opt": self.opt.init(params), "key": k_run}

    def dist(self, params, obs):
        mu, pre_std = self.actor.apply(params["actor"], obs)
        log_std, _ = self.head.log_std(pre_std)
        return mu, log_std

    def policy_step(self, state, obs):
        """Sample an action for one seed: ``(state, action, log_prob)``."""
        key, k = jax.random.split(state["key"])
        mu, log_std = self.dist(state["params"], obs)
        action, log_prob = self.head.sample(k, mu, log_std)
        return dict(state, key=key), action, log_prob

    def loss(self, params, batch):
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

    def update(self, state, rollout):
        """GAE over the rollout ``(T, ...)`` of one seed, then ``epochs`` x minibatch steps."""
        cfg = self.config
        critic = functools.partial(self.critic.apply, state["params"]["critic"])
        values = critic(rollout["obs"])
        next_values = critic(rollout["final_obs"]) * (1.0 - rollout["terminated"])
        deltas = rollout["reward"] + cfg.gamma * next_values - values
        not_done = 1.0 - rollout["done"]

        def gae(carry, x):
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

        def minibatch(carry, idx):
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

    def compile(self):
        return {
            "init": jax.jit(jax.vmap(self.init_state)),
            "policy_step": jax.jit(jax.vmap(self.policy_step)),
            "update": jax.jit(jax.vmap(self.update, in_axes=(0, 1)), donate_argnums=0),
            "act_eval": jax.jit(
                jax.vmap(lambda s, o: self.head.mode(self.dist(s["params"], o[None])[0])[0])
            ),
        }


class PPOTrainer:
    """The PPO loop with the same interface as :class:`era_control.training.OffPolicyTrainer`.

    Rows are logged and checkpoints written at the end of the rollout in which a
    ``log_interval`` / ``checkpoint_interval`` boundary is crossed.
    """

    def __init__(self, run):
        from .training import make_algo_config

        run.validate()
        self.run_config = run
        self.config = make_algo_config(run.algo, run.agent)
        self.seeds = [run.seed + i for i in range(run.seeds)]
        self.envs = VectorEnv(run.env, self.seeds, stream=0, action_repeat=run.action_repeat)
        self.eval_envs = VectorEnv(run.env, self.seeds, stream=1, action_repeat=run.action_repeat)
        self.agent = PPOAgent(
            run.algo, self.config, self.envs.observation_dim, self.envs.action_dim
        )
        self.target_entropy = self.agent.target_entropy
        self.fns = self.agent.compile()

    def _blob(self, step, state, obs):
        return pickle.dumps(
            {
                "step": step,
                "state": jax.tree.map(np.asarray, jax.device_get(state)),
                "obs": obs,
                "envs": self.envs.state_dict(),
                "run": self.run_config.to_dict(),
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def run(
        self,
        on_row: Callable[[dict[str, Any]], None],
        *,
        save_checkpoint: Callable[[int, bytes], None] | None = None,
        resume: bytes | None = None,
        stop_at: int | None = None,
        on_step: Callable[[int, float | None], None] | None = None,
    ) -> int:
        from .training import evaluate

        run, cfg = self.run_config, self.config
        if resume is not None:
            ckpt = pickle.loads(resume)
            if ckpt["run"] != run.to_dict():
                raise ValueError("the checkpoint was written by a run with a different config")
            step, state = ckpt["step"], jax.tree.map(jnp.asarray, ckpt["state"])
            obs = self.envs.load_state_dict(ckpt["envs"])
        else:
            step = 0
            state = self.fns["init"](jax.vmap(jax.random.PRNGKey)(jnp.asarray(self.seeds)))
            obs = self.envs.reset()
        end = run.steps if stop_at is None else min(stop_at, run.steps)
        S, T = len(self.seeds), cfg.rollout_steps
        episodes: list[list[float]] = [[] for _ in self.seeds]
        latest, t_log, t_updates, updates = None, time.perf_counter(), 0.0, 0
        while step < end:
            buf = {
                "obs": np.zeros((T, S, self.envs.observation_dim), np.float32),
                "final_obs": np.zeros((T, S, self.envs.observation_dim), np.float32),
                "action": np.zeros((T, S, self.envs.action_dim), np.float32),
                "log_prob": np.zeros((T, S), np.float32),
                "reward": np.zeros((T, S), np.float32),
                "terminated": np.zeros((T, S), np.float32),
                "done": np.zeros((T, S), np.float32),
            }
            for t in range(T):
                state, action, log_prob = self.fns["policy_step"](state, obs)
                action = np.asarray(action)
                res = self.envs.step(np.clip(action, -1.0, 1.0))
                buf["obs"][t], buf["action"][t], buf["log_prob"][t] = obs, action, log_prob
                buf["final_obs"][t], buf["reward"][t] = res.final_obs, res.reward
                buf["terminated"][t], buf["done"][t] = res.terminated, res.done
                obs = res.obs
                for i, r in enumerate(res.episode_return):
                    if not np.isnan(r):
                        episodes[i].append(float(r))
                        latest = float(r)
                if on_step is not None:
                    on_step(step + t + 1, latest)
            prev, step = step, step + T
            t0 = time.perf_counter()
            state, metrics = self.fns["update"](state, buf)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            t_updates += time.perf_counter() - t0
            updates += cfg.epochs * (T // cfg.minibatch_size)
            final = step >= run.steps
            if step // run.log_interval == prev // run.log_interval and not final:
                continue
            evals = None
            if step // run.eval_interval != prev // run.eval_interval or final:
                evals = evaluate(
                    functools.partial(self.fns["act_eval"], state),
                    self.eval_envs,
                    step,
                    run.eval_episodes,
                )
            elapsed = time.perf_counter() - t_log
            for i, seed in enumerate(self.seeds):
                row: dict[str, Any] = {"step": step, "seed": seed}
                if episodes[i]:
                    row["episode_return"] = float(np.mean(episodes[i]))
                if evals is not None:
                    row["eval_return"] = float(evals[i])
                row.update({k: float(v[i]) for k, v in sorted(metrics.items())})
                row["updates_per_s"] = updates * S / t_updates if t_updates else 0.0
                row["env_steps_per_s"] = (step - prev) * S / max(elapsed, 1e-9)
                on_row(row)
            episodes = [[] for _ in self.seeds]
            t_log, t_updates, updates = time.perf_counter(), 0.0, 0
            crossed = step // run.checkpoint_interval != prev // run.checkpoint_interval
            if save_checkpoint is not None and (crossed or final):
                save_checkpoint(step, self._blob(step, state, obs))
        self.state = state
        return step
