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
