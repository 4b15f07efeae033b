"""FastTD3 vs FastSAC-ERA: gradient updates per second side by side, and ERA's overhead.

Both agents with FastTD3's networks (actor 512-256-128, critic 1024-512-256, 101 atoms) on a
replay buffer filled with random transitions of HumanoidBench's ``h1hand`` size (151-dim
observation, 61-dim action), at several batch sizes. One timed call is ``--updates`` gradient
updates fused in a ``jax.lax.scan`` (the agents' own ``update``: critic, actor, target), for one
seed. FastTD3 updates its actor on every second update (its ``policy_frequency``), FastSAC-ERA
on every update, as the paper's comparison has it. Cases are warmed up (compiled), then run in
interleaved rounds (``--repeats``); medians are reported, the overhead is the median of per-round
ratios. ``--quick`` shortens everything; ``--write-docs docs/benchmarks.md`` puts the table
between the ``<!-- bench:control-fast:start -->`` / ``end`` markers.

Run: ``uv run nox -s "bench(domain='control')"`` or ``python bench/control_fast_throughput.py``.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--updates", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--batches", default=None, help="comma-separated batch sizes")
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
        f"`python bench/control_fast_throughput.py {shlex.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        "| batch | FastTD3 updates/s | FastSAC-ERA updates/s | ERA time per update vs FastTD3 |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {b} | {t:.1f} | {e:.1f} | {o:+.1f} % |" for b, t, e, o in rows]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        write_section(Path(args.write_docs), "control-fast", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
