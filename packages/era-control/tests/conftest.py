import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
# Tests compile many small programs; a persistent cache makes re-runs (and repeated configs) cheap.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest


@pytest.fixture
def learn_cartpole():
    """Train an off-policy algorithm at the learning tests' setting (dmc/cartpole-swingup,
    action repeat 8, 4,500 steps, one seed, 2x128, 2 updates per step, batch 128, 200 warm-up
    steps, learning rates 1e-3); returns its logged rows and a random policy's eval returns."""

    def learn(algo: str, **run: object) -> tuple[list[dict], object]:
        from era_control.training import OffPolicyTrainer, RunConfig, random_policy_return

        agent = {"hidden": (128, 128), "updates_per_step": 2, "batch_size": 128}
        agent |= {"warmup_steps": 200, "actor_lr": 1e-3, "critic_lr": 1e-3}
        base = {"log_interval": 300, "eval_interval": 1500, "checkpoint_interval": 300}
        config = RunConfig(
            algo=algo,
            env="dmc/cartpole-swingup",
            steps=4500,
            seeds=1,
            action_repeat=8,
            agent=agent,
            **(base | run),
        )
        rows: list[dict] = []
        OffPolicyTrainer(config).run(rows.append)
        random = random_policy_return("dmc/cartpole-swingup", list(range(8)), 1, action_repeat=8)
        final = rows[-1]["eval_return"]
        print(f"eval return {final:.1f} vs random {random.mean():.1f} (max {random.max():.1f})")
        return rows, random

    return learn


@pytest.fixture
def learn_fast_cartpole():
    """Train FastSAC-ERA at the Fast* learning tests' setting (cartpole swing-up, the `cpu-fast`
    networks, batch 512, 4 environments per seed, action repeat 8, 10,000 transitions, one
    seed) on ``env``; asserts the final eval return beats the uniform policy on the dm-control
    task (above twice its mean and above its best episode) and that the Gaussian entropy is at
    the target in every logged row; returns the trainer and the rows."""

    def learn(env: str) -> tuple[object, list[dict]]:
        from era_control.training import RunConfig, make_trainer, random_policy_return

        run = RunConfig(
            "fastsac-era",
            env,
            10_000,
            seeds=1,
            num_envs=4,
            action_repeat=8,
            log_interval=1_000,
            eval_interval=5_000,
            eval_episodes=1,
            checkpoint_interval=10_000,
            agent={
                "actor_hidden": [128, 64, 32],
                "critic_hidden": [256, 128, 64],
                "batch_size": 512,
                "buffer_size": 10_240,
            },
        )
        rows: list[dict] = []
        trainer = make_trainer(run)
        trainer.run(rows.append)
        random = random_policy_return("dmc/cartpole-swingup", list(range(8)), 1, action_repeat=8)
        final = [r["eval_return"] for r in rows if "eval_return" in r][-1]
        print(f"eval return {final:.1f} vs random {random.mean():.1f} (max {random.max():.1f})")
        assert final > 2 * random.mean() and final > random.max()
        for r in rows:
            if "gaussian_entropy" in r:  # ERA holds the Gaussian at the target throughout
                assert r["gaussian_entropy"] == pytest.approx(r["target_entropy"], abs=1e-3)
        return trainer, rows

    return learn
