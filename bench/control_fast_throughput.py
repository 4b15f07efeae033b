"""FastTD3 vs FastSAC-ERA: gradient updates per second side by side, ERA's overhead, and the
Fast* loop on MJX environments.

Both agents with FastTD3's networks (actor 512-256-128, critic 1024-512-256, 101 atoms) on a
replay buffer filled with random transitions of HumanoidBench's ``h1hand`` size (151-dim
observation, 61-dim action), at several batch sizes. One timed call is ``--updates`` gradient
updates fused in a ``jax.lax.scan`` (the agents' own ``update``: critic, actor, target), for one
seed. FastTD3 updates its actor on every second update (its ``policy_frequency``), FastSAC-ERA
on every update, as the paper's comparison has it. Cases are warmed up (compiled), then run in
interleaved rounds (``--repeats``); medians are reported, the overhead is the median of per-round
ratios.

MJX (when MuJoCo Playground is installed, ``era-control[mjx]``): on ``--mjx-env`` (default
``mjx/cheetah-run``) with 1, 16, 64 and 256 parallel environments (``--mjx-envs``), the env
steps/s of the batched environment step alone (random actions, ``--mjx-steps`` steps in one
jitted ``fori_loop``) and the env steps/s and updates/s of the whole FastTD3 and FastSAC-ERA
program of ``era-control-train`` (environments, replay buffer and learner in one jitted call,
:mod:`era_control.mjx_trainer`; the configs' CPU-sized ``quick()`` networks and batch, 2
updates per parallel step, no warm-up), and the same task stepped in dm-control (one
environment, one core) for comparison.

``--quick`` shortens everything; ``--write-docs docs/benchmarks.md`` puts the tables between
the ``<!-- bench:control-fast:start -->`` / ``end`` markers.

Run: ``uv run nox -s "bench(domain='control')"`` or ``python bench/control_fast_throughput.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from docs_section import write_section

OBS_DIM, ACT_DIM = 151, 61  # HumanoidBench h1hand
ABOUT = (
    "`bench/control_fast_throughput.py`: gradient updates per second of FastTD3 and "
    "FastSAC-ERA (FastTD3's networks and 101-atom critic, h1hand-sized observations and "
    "actions), side by side in one run, and FastSAC-ERA's time per update relative to "
    "FastTD3's (the paper reports about 6 % of total training time)."
)


def make_update(algo: str, batch: int, num_envs: int, capacity: int, **overrides):
    """The agent of ``algo`` (its config with ``batch_size=batch`` and ``overrides``) and an
    initial state whose replay buffer is full of random transitions."""
    from era_control import get_algorithm

    spec = get_algorithm(algo)
    config = spec.config(batch_size=batch, **overrides)
    agent = spec.agent(config, OBS_DIM, ACT_DIM, capacity, num_envs)
    state = agent.init_state(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    buf = dict(state["buffer"])
    for name in ("obs", "next_obs"):
        buf[name] = jnp.asarray(rng.normal(size=buf[name].shape), jnp.float32)
    buf["action"] = jnp.asarray(rng.uniform(-1, 1, buf["action"].shape), jnp.float32)
    buf["reward"] = jnp.asarray(rng.normal(size=buf["reward"].shape), jnp.float32)
    buf["discount"] = jnp.ones_like(buf["reward"])
    buf["size"] = jnp.asarray(capacity, jnp.int32)
    return agent, dict(state, buffer=buf)


def timed(agent, state, updates: int):
    def run(state, key):
        state, metrics = jax.lax.scan(agent.update, state, jax.random.split(key, updates))
        return state, metrics["critic_loss"][-1]

    fn = jax.jit(run)
    key = jax.random.PRNGKey(1)
    state, loss = fn(state, key)  # compile
    loss.block_until_ready()

    def once() -> float:
        nonlocal state
        t0 = time.perf_counter()
        state, out = fn(state, key)
        out.block_until_ready()
        return time.perf_counter() - t0

    return once


def mjx_env_rate(env_id: str, num_envs: int, steps: int, repeats: int) -> float:
    """Env steps/s of ``num_envs`` MJX environments stepped ``steps`` times per jitted call."""
    from era_control.mjx_envs import load_task
    from era_control.mjx_trainer import env_keys

    task = load_task(env_id)

    def run(state, key):
        def body(i, state):
            shape = (1, num_envs, task.action_dim)
            action = jax.random.uniform(jax.random.fold_in(key, i), shape, minval=-1, maxval=1)
            return task.step(state, action)[0]

        return jax.lax.fori_loop(0, steps, body, state)

    fn = jax.jit(run, donate_argnums=0)
    state = jax.jit(task.init)(env_keys([0], num_envs))
    state = jax.block_until_ready(fn(state, jax.random.PRNGKey(0)))  # compile
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(fn(state, jax.random.PRNGKey(r + 1)))
        times.append(time.perf_counter() - t0)
    return num_envs * steps / statistics.median(times)


def mjx_training_rate(
    algo: str, env_id: str, num_envs: int, steps: int, repeats: int
) -> tuple[float, float]:
    """``(env steps/s, updates/s)`` of the Fast* MJX program (one seed), ``steps`` parallel
    steps per jitted call, updates from the first step."""
    from era_control import get_algorithm
    from era_control.mjx_trainer import build_program, env_keys

    spec = get_algorithm(algo)
    config = dataclasses.replace(spec.config().quick(0), learning_starts=0)
    capacity = max(steps * (repeats + 1), 16)
    device = (jax.devices()[0].id,)
    program = build_program(algo, config, env_id, None, capacity, num_envs, device, steps)
    fns = program.fns
    state = fns["start"](jax.vmap(jax.random.PRNGKey)(jnp.arange(1)), env_keys([0], num_envs))
    count, done = np.int32(steps), np.int32(0)
    state = jax.block_until_ready(fns["chunk"](state, count, done))[0]  # compile
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(fns["chunk"](state, count, np.int32((r + 1) * steps)))[0]
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return num_envs * steps / seconds, steps * config.updates_per_step / seconds


def dmc_env_rate(env_id: str, steps: int) -> float:
    """Steps/s of the same task in dm-control (one environment, random actions)."""
    from era_control.envs import make_env

    env = make_env("dmc/" + env_id.removeprefix("mjx/"))
    rng = np.random.default_rng(0)
    env.reset(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated = env.step(rng.uniform(-1, 1, env.action_dim))
        if terminated or truncated:
            env.reset(1)
    return steps / (time.perf_counter() - t0)


def mjx_table(env_id: str, sizes: list[int], steps: int, repeats: int) -> list[str]:
    """The MJX rows (or one line saying why there are none)."""
    try:
        import mujoco_playground  # noqa: F401
    except ImportError:
        return ["MJX: not measured (MuJoCo Playground is not installed: era-control[mjx])."]
    lines = [
        f"MJX on `{env_id}` (MuJoCo Playground, MJX's JAX physics), one seed; env steps are "
        "transitions (all environments together):",
        "",
        "| MJX envs | env step only, env steps/s | FastTD3 env steps/s | FastTD3 updates/s "
        "| FastSAC-ERA env steps/s | FastSAC-ERA updates/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        env_rate = mjx_env_rate(env_id, n, steps, repeats)
        td3 = mjx_training_rate("fasttd3", env_id, n, steps, repeats)
        era = mjx_training_rate("fastsac-era", env_id, n, steps, repeats)
        lines.append(
            f"| {n} | {env_rate:.0f} | {td3[0]:.0f} | {td3[1]:.1f} | {era[0]:.0f} | {era[1]:.1f} |"
        )
    dmc = dmc_env_rate(env_id, 20 * steps)
    lines += ["", f"dm-control, the same task, one environment on one core: {dmc:.0f} steps/s."]
    return lines


def xla_env() -> str:
    """``XLA_FLAGS=... `` when the flags are set (they size XLA's CPU thread pools), else ``""``."""
    flags = os.environ.get("XLA_FLAGS")
    return f"XLA_FLAGS={shlex.quote(flags)} " if flags else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--updates", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--batches", default=None, help="comma-separated batch sizes")
    p.add_argument("--mjx-env", default="mjx/cheetah-run")
    p.add_argument("--mjx-envs", default=None, help="comma-separated numbers of MJX envs")
    p.add_argument("--mjx-steps", type=int, default=None, help="parallel steps per timed call")
    p.add_argument("--write-docs", metavar="PATH")
    args = p.parse_args(argv)
    updates = args.updates or (4 if args.quick else 20)
    repeats = args.repeats or (3 if args.quick else 7)
    batches = [
        int(b)
        for b in (args.batches or ("256,1024" if args.quick else "1024,4096,32768")).split(",")
    ]
    rows = []
    for batch in batches:
        runs = {
            a: timed(*make_update(a, batch, 16, 64), updates) for a in ("fasttd3", "fastsac-era")
        }
        times = {a: [] for a in runs}
        for _ in range(repeats):
            for a, once in runs.items():
                times[a].append(once())
        ratio = statistics.median(
            e / t for e, t in zip(times["fastsac-era"], times["fasttd3"], strict=True)
        )
        ups = {a: updates / statistics.median(v) for a, v in times.items()}
        rows.append((batch, ups["fasttd3"], ups["fastsac-era"], 100 * (ratio - 1)))
    device = jax.devices()[0]
    lines = [
        ABOUT,
        "",
        f"Device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores, "
        f"{platform.processor() or platform.machine()}; jax {jax.__version__}. Command: "
        f"`{xla_env()}python bench/control_fast_throughput.py {shlex.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        "| batch | FastTD3 updates/s | FastSAC-ERA updates/s | ERA time per update vs FastTD3 |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {b} | {t:.1f} | {e:.1f} | {o:+.1f} % |" for b, t, e, o in rows]
    sizes = [
        int(n) for n in (args.mjx_envs or ("1,16" if args.quick else "1,16,64,256")).split(",")
    ]
    mjx_steps = args.mjx_steps or (8 if args.quick else 32)
    lines += ["", *mjx_table(args.mjx_env, sizes, mjx_steps, repeats)]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        write_section(Path(args.write_docs), "control-fast", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
