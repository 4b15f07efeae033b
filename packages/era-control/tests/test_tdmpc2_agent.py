"""TD-MPC2 and TD-MPC2-ERA as agents: the running Q scale and the subsequence replay against
NumPy references, ``two_q`` against the whole ensemble, the world-model loss against the
authors' per-step, per-member loops in NumPy and the target ensemble's Polyak average, the ERA
prior's Gaussian entropy at its target with no entropy term, bad input refused (one line, exit
2 from the CLI), exact resume with the planner's state, and a short TD-MPC2-ERA run on
cartpole-swingup that beats the random policy."""

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_core
from era_control.tdmpc2 import TDMPC2Config, two_q
from era_control.tdmpc2.buffer import sample_sequences, sequence_buffer_add, sequence_buffer_init
from era_control.tdmpc2.twohot import two_hot_inv
from era_control.tdmpc2_agent import TDMPC2, _split, running_scale
from era_control.tdmpc2_era import TDMPC2ERA, TDMPC2ERAConfig
from era_control.training import ModelBasedTrainer, RunConfig, make_trainer, random_policy_return

TINY = {
    "enc_dim": 16,
    "mlp_dim": 32,
    "latent_dim": 16,
    "num_q": 3,
    "num_samples": 32,
    "num_elites": 4,
    "num_pi_trajs": 4,
    "iterations": 2,
    "batch_size": 16,
}


@pytest.mark.parametrize("spread", [0.1, 3.0, 40.0])
def test_running_scale_matches_numpy_percentiles(spread):
    q = np.random.default_rng(0).normal(size=257).astype(np.float32) * spread
    width = max(np.percentile(q, 95) - np.percentile(q, 5), 1.0)
    got = running_scale(jnp.asarray(2.0), jnp.asarray(q), 0.01)
    np.testing.assert_allclose(got, 2.0 + 0.01 * (width - 2.0), rtol=1e-5)


def test_subsequences_follow_the_stored_transitions_and_stop_at_episode_ends():
    capacity, horizon, ends = 10, 3, {5, 9}
    buf = sequence_buffer_init(capacity, 1, 1)
    for t in range(13):  # wraps: transitions 3..12 stay
        next_obs = t + 0.5 if t in ends else t + 1.0
        buf = sequence_buffer_add(
            buf, jnp.asarray([t]), jnp.asarray([10.0 * t]), jnp.asarray(t), jnp.asarray([next_obs]),
            jnp.asarray(1.0), jnp.asarray(0.0 if t in ends else 1.0),
        )  # fmt: skip
    seq = {k: np.asarray(v) for k, v in sample_sequences(buf, jax.random.PRNGKey(0), 64, 3).items()}
    starts = seq["obs"][0, :, 0].astype(int)
    assert set(starts) <= set(range(3, 13 - horizon + 1)) and len(set(starts)) > 4
    for b, s in enumerate(starts):
        steps = np.arange(s, s + horizon)
        np.testing.assert_array_equal(seq["action"][:, b, 0], 10.0 * steps)
        np.testing.assert_array_equal(seq["reward"][:, b], steps)
        nxt = [t + 0.5 if t in ends else t + 1.0 for t in steps]
        np.testing.assert_array_equal(seq["obs"][1:, b, 0], nxt)
        cont = np.array([0.0 if t in ends else 1.0 for t in steps])
        np.testing.assert_array_equal(seq["weight"][:, b], np.cumprod([1.0, *cont[:-1]]))
        np.testing.assert_array_equal(seq["pi_weight"][:, b], np.cumprod([1.0, *cont]))


def _filled_state(agent, key):
    state = agent.init_state(key)
    rng = np.random.default_rng(1)
    buf = dict(state["buffer"])
    n = agent.capacity
    for name, shape in (("obs", (agent.obs_dim,)), ("next_obs", (agent.obs_dim,)),
                        ("action", (agent.action_dim,)), ("reward", ()), ("discount", ()),
                        ("cont", ())):  # fmt: skip
        values = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
        if name in ("discount", "cont"):
            values = np.ones_like(values)
        buf[name] = jnp.asarray(values)
    buf["size"] = jnp.asarray(n, jnp.int32)
    return dict(state, buffer=buf)


def test_era_prior_keeps_its_gaussian_entropy_at_the_target_with_no_entropy_term():
    agent = TDMPC2ERA(TDMPC2ERAConfig(**TINY), obs_dim=5, action_dim=3, capacity=64)
    assert agent.target_entropy == pytest.approx(-1.5)  # H0 = 3 * -0.5
    state = _filled_state(agent, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, 5)) * 50
    z = agent.encode(state["params"], obs)
    action, _, _, log_std = agent.policy(state["params"], z, jax.random.PRNGKey(2))
    np.testing.assert_allclose(era_core.gaussian_entropy(log_std), -1.5, atol=1e-4)
    assert np.all(np.abs(np.asarray(action)) <= 1)
    for scale in (1e-3, 30.0, 1e3):  # extreme raw outputs of the prior
        pre = jax.random.normal(jax.random.PRNGKey(3), (8, 3)) * scale
        extreme, _ = agent.head.log_std(pre)
        np.testing.assert_allclose(era_core.gaussian_entropy(extreme), -1.5, atol=1e-4)
    assert agent.entropy_term(jnp.ones(4)) == 0.0
    state, metrics = jax.jit(agent.update)(state, jax.random.PRNGKey(4))
    assert float(metrics["gaussian_entropy"]) == pytest.approx(-1.5, abs=1e-4)
    assert float(metrics["target_entropy"]) == pytest.approx(-1.5)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    # and after the update the prior is still at its target
    _, _, _, log_std = agent.policy(state["params"], z, jax.random.PRNGKey(5))
    np.testing.assert_allclose(era_core.gaussian_entropy(log_std), -1.5, atol=1e-4)
    with pytest.raises(ValueError, match="entropy_coef must be 0"):
        TDMPC2ERA(TDMPC2ERAConfig(**TINY, entropy_coef=1e-4), 5, 3, 64)
    # the baseline keeps TD-MPC2's entropy bonus
    base = TDMPC2(TDMPC2Config(**TINY), obs_dim=5, action_dim=3, capacity=64)
    assert base.target_entropy is None
    np.testing.assert_allclose(base.entropy_term(jnp.ones(4)), 1e-4)


def _perturbed(params, scale=0.3):
    """``params`` plus Gaussian noise, so the zero-initialised heads give non-trivial outputs."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(11), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, noisy)


def _np_two_hot(x, num_bins, vmin, vmax):
    """NumPy two-hot over symlog bins, written out independently of ``era_control``'s."""
    y = np.clip(np.sign(x) * np.log1p(np.abs(x)), vmin, vmax)
    pos = (y - vmin) / ((vmax - vmin) / (num_bins - 1))
    out = np.zeros((*x.shape, num_bins))
    for i in np.ndindex(x.shape):
        low = int(np.floor(pos[i]))
        frac = pos[i] - low
        out[(*i, min(low, num_bins - 1))] += 1 - frac
        if frac > 0:
            out[(*i, low + 1)] += frac
    return out


def _np_ce(logits, target, cfg):
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    return -(
        _np_two_hot(np.asarray(target, np.float64), cfg.num_bins, cfg.vmin, cfg.vmax) * log_p
    ).sum(-1)


def test_two_q_evaluates_two_distinct_members_of_the_ensemble():
    agent = TDMPC2(TDMPC2Config(**{**TINY, "num_q": 5}), obs_dim=5, action_dim=2, capacity=8)
    params = _perturbed(agent.init_state(jax.random.PRNGKey(0))["params"])
    z = agent.encode(params, jax.random.normal(jax.random.PRNGKey(1), (7, 5)))
    action = jnp.tanh(jax.random.normal(jax.random.PRNGKey(2), (7, 2)))
    cfg = agent.config
    every = np.asarray(
        two_hot_inv(agent._apply(params, z, action, method="qs"), cfg.vmin, cfg.vmax)
    )
    assert np.ptp(every, axis=0).min() > 1e-3  # the members differ
    seen = set()
    for i in range(12):
        got = np.asarray(two_q(agent.model, params, params["params"]["_qs"], z, action,
                               jax.random.PRNGKey(i)))  # fmt: skip
        rows = [int(np.argmin(np.abs(every - q).max(-1))) for q in got]
        assert rows[0] != rows[1]
        np.testing.assert_allclose(got, every[rows], rtol=1e-5, atol=1e-5)
        seen.add(tuple(sorted(rows)))
    assert len(seen) > 3  # different keys draw different pairs


def test_model_loss_matches_the_loop_formula_and_the_update_polyak_averages_the_targets():
    """Step 2's loss against the authors' per-step, per-member loops in NumPy (weights, ``rho^t``,
    the two-hot cross-entropies, the coefficients), and step 4 against ``tau`` averaging."""
    cfg = TDMPC2Config(**{**TINY, "dropout": 0.0})
    agent = TDMPC2(cfg, obs_dim=5, action_dim=2, capacity=64)
    state = _filled_state(agent, jax.random.PRNGKey(0))
    params = _perturbed(state["params"])
    state = dict(state, params=params)
    h, b = cfg.horizon, 6
    rng = np.random.default_rng(3)
    weight = np.ones((h, b), np.float32)
    weight[1:, 0], weight[2:, 1] = 0.0, 0.0  # two subsequences cross an episode end
    batch = {
        "obs": jnp.asarray(rng.normal(size=(h + 1, b, 5)), jnp.float32),
        "action": jnp.asarray(rng.uniform(-1, 1, (h, b, 2)), jnp.float32),
        "reward": jnp.asarray(rng.uniform(0, 8, (h, b)), jnp.float32),
        "weight": jnp.asarray(weight),
    }
    td_target = jnp.asarray(rng.uniform(-5, 60, (h, b)), jnp.float32)
    next_z = agent.encode(params, batch["obs"][1:])
    rest, pi = _split(params)
    total, aux = agent._model_loss(rest, pi, batch, next_z, td_target, jax.random.PRNGKey(4))

    z = agent.encode(params, batch["obs"][0])
    consistency = reward = value = 0.0
    for t in range(h):
        w, a = weight[t], batch["action"][t]
        r_logits = agent._apply(params, z, a, method="reward")
        q_logits = agent._apply(params, z, a, method="qs")
        reward += cfg.rho**t * np.mean(w * _np_ce(r_logits, batch["reward"][t], cfg))
        for k in range(cfg.num_q):
            value += cfg.rho**t * np.mean(w * _np_ce(q_logits[k], td_target[t], cfg))
        z = agent._apply(params, z, a, method="next")
        err = np.mean((np.asarray(z, np.float64) - np.asarray(next_z[t], np.float64)) ** 2, -1)
        consistency += cfg.rho**t * np.mean(w * err)
    consistency, reward, value = consistency / h, reward / h, value / (h * cfg.num_q)
    np.testing.assert_allclose(aux["consistency_loss"], consistency, rtol=1e-4)
    np.testing.assert_allclose(aux["reward_loss"], reward, rtol=1e-4)
    np.testing.assert_allclose(aux["value_loss"], value, rtol=1e-4)
    np.testing.assert_allclose(total, 20 * consistency + 0.1 * reward + 0.1 * value, rtol=1e-4)

    new, _ = jax.jit(agent.update)(state, jax.random.PRNGKey(5))
    online = new["params"]["params"]["_qs"]
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), online, params["params"]["_qs"])
    assert max(jax.tree.leaves(moved)) > 0
    expected = jax.tree.map(lambda old, on: (1 - cfg.tau) * old + cfg.tau * on,
                            state["target_qs"], online)  # fmt: skip
    for got, want in zip(jax.tree.leaves(new["target_qs"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("horizon", 0, "horizon must be >= 1"),
        ("num_q", 1, "num_q must be >= 2"),
        ("num_samples", 0, "num_samples must be >= 1"),
        ("tau", 0.0, r"tau must be in \(0, 1\]"),
        ("target_entropy_per_dim", 9.0, "infeasible"),
    ],
)
def test_bad_input_is_refused_naming_the_key(key, value, match, tmp_path, capsys):
    run = RunConfig("tdmpc2-era", "dmc/cartpole-swingup", 100, agent={key: value})
    with pytest.raises(ValueError, match=match):
        make_trainer(run)
    train = pytest.importorskip("era_control_app.train")
    out = tmp_path / "run"
    argv = ["--algo", "tdmpc2-era", "--env", "dmc/cartpole-swingup", "--steps", "100"]
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--set", f"{key}={value}", "--out", str(out), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and re.search(match, err[-1])
    assert not out.exists() or not any(out.iterdir())


def test_resumed_run_equals_the_uninterrupted_one():
    algo = "tdmpc2-era"  # with planning: the warm-start mean must survive the checkpoint
    run = RunConfig(
        algo=algo,
        env="dmc/cartpole-swingup",
        steps=60,
        seeds=2,
        action_repeat=8,
        log_interval=20,
        eval_interval=60,
        checkpoint_interval=20,
        agent={**TINY, "warmup_steps": 10},
    )
    rows, blobs = [], {}
    full = ModelBasedTrainer(run)
    full.run(rows.append, save_checkpoint=lambda step, blob: blobs.__setitem__(step, blob))
    resumed_rows = []
    resumed = ModelBasedTrainer(run)
    resumed.run(resumed_rows.append, resume=blobs[20])
    drop = ("updates_per_s", "env_steps_per_s")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]  # noqa: E731
    assert strip(resumed_rows) == strip(rows[2:])  # two seeds per row step, from step 40 on
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "eval_return" in rows[-1] and "consistency_loss" in rows[-1]
    assert rows[-1]["gaussian_entropy"] == pytest.approx(rows[-1]["target_entropy"], abs=1e-4)
    assert np.any(np.asarray(full.state["plan_mean"]) != 0)  # in the state, so checkpointed


def _short_run(algo, env, steps, action_repeat, agent):
    """A one-seed TINY run config for the tests that only build a trainer."""
    return RunConfig(
        algo=algo,
        env=env,
        steps=steps,
        seeds=1,
        action_repeat=action_repeat,
        log_interval=20,
        eval_interval=40,
        checkpoint_interval=20,
        agent={**TINY, **agent},
    )


@pytest.mark.parametrize(
    ("env", "action_repeat", "agent", "length"),
    [
        ("dmc/cartpole-swingup", 8, {}, 125),  # DMC's 1000 steps over the action repeat
        ("dmc/cartpole-swingup", 2, {}, 500),
        ("dmc/cartpole-swingup", 3, {}, 334),
        ("gym/Reacher-v5", 1, {}, 50),  # the Gymnasium task's max_episode_steps
        ("dmc/cartpole-swingup", 8, {"episode_length": 500}, 500),  # a set length wins
    ],
)
def test_episode_length_is_the_environments_unless_set(env, action_repeat, agent, length):
    run = _short_run("tdmpc2", env, 40, action_repeat, {"warmup_steps": 10, **agent})
    trainer = ModelBasedTrainer(run)
    assert trainer.config.episode_length == length
    expected = min(max((length / 5 - 1) / (length / 5), 0.95), 0.995)
    assert trainer.agent.discount == pytest.approx(expected)


@pytest.mark.parametrize(
    ("action_repeat", "agent", "warmup"),
    [
        (2, {}, 2500),  # 500-step episodes: 5 of them
        (8, {}, 1000),  # 125-step episodes: at least 1000
        (1, {}, 5000),
        (8, {"warmup_steps": 300}, 300),  # a set value wins
    ],
)
def test_warmup_steps_follow_the_episode_length_unless_set(action_repeat, agent, warmup):
    run = _short_run("tdmpc2-era", "dmc/cartpole-swingup", 100_000, action_repeat, agent)
    trainer = ModelBasedTrainer(run)
    assert trainer.config.warmup_steps == warmup and trainer.warmup == warmup
    short = dataclasses.replace(run, steps=4000)  # never more than a tenth of the run
    assert ModelBasedTrainer(short).warmup == min(warmup, 400)


@pytest.mark.skipif(
    not os.environ.get("ERA_CONTROL_LONG_TESTS"),
    reason="minutes on a CPU (compiling the planner and the update): set ERA_CONTROL_LONG_TESTS=1",
)
def test_tdmpc2_era_learns_cartpole_swingup():
    run = RunConfig(
        algo="tdmpc2-era",
        env="dmc/cartpole-swingup",
        steps=1500,
        seeds=1,
        action_repeat=8,
        log_interval=250,
        eval_interval=1500,
        checkpoint_interval=1500,
        agent={
            "enc_dim": 64,
            "mlp_dim": 128,
            "latent_dim": 64,
            "num_samples": 64,
            "num_elites": 8,
            "num_pi_trajs": 8,
            "iterations": 3,
            "batch_size": 64,
            "warmup_steps": 150,
            "episode_length": 125,
            # the authors' ratio of updates to environment steps: one update per agent step
            # at action repeat 2 is four per agent step at action repeat 8
            "updates_per_step": 4,
        },
    )
    rows = []
    ModelBasedTrainer(run).run(rows.append)
    random = random_policy_return("dmc/cartpole-swingup", list(range(8)), 1, action_repeat=8)
    final = rows[-1]["eval_return"]
    print(f"eval return {final:.1f} vs random {random.mean():.1f} (max {random.max():.1f})")
    assert final > 2 * random.mean() and final > random.max()
    for r in rows:
        assert r["gaussian_entropy"] == pytest.approx(r["target_entropy"], abs=1e-3)
