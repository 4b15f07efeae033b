"""SAC gradient-update throughput: ours (JAX) vs Stable-Baselines3 vs sbx, ERA overhead, seeds.

All measured side by side in one process on the same machine and the same environment
(Gymnasium ``HalfCheetah-v5``: 17-dim observation, 6-dim action), 2x512 networks, batch 256:

1. **Updates/s** of one SAC gradient update (critic + actor + temperature + target), with the
   same network for all three (2x512 ReLU MLPs, no LayerNorm: SB3's and sbx's default MLP
   shape): ours (a ``jax.lax.scan`` over ``--updates`` updates, replay buffer on the device),
   SB3 ``SAC.train`` and sbx ``SAC.train`` (their replay buffers filled by ``learn`` with random
   actions first). Ours is also shown with the paper's network (LayerNorm + ELU).
2. **FLOP/s**: XLA's cost analysis of our compiled update (FLOPs per update) times updates/s,
   against the machine's peak measured with a large float32 matmul.
3. **SAC-ERA overhead**: time per update of SAC-ERA (truncated-normal ERA head, no alpha) vs our
   SAC, same network (the paper's: LayerNorm + ELU).
4. **Seeds per process**: our SAC with 1, 4, 8 seeds vmapped in one program: time per update
   step (all seeds) and aggregate updates/s.

Timings: every case is warmed up (compiled), then the cases run in interleaved rounds
(``--repeats`` rounds of ``--updates`` updates); medians are reported with the spread
(max/min), and ratios are medians of per-round ratios. ``--quick`` shortens everything (a
smoke test, a few minutes); ``--write-docs docs/benchmarks.md`` puts the table between the
``<!-- bench:control:start -->`` and ``<!-- bench:control:end -->`` markers.

Run: ``uv run nox -s "bench(domain='control')"`` (installs SB3 and sbx from the app's ``bench``
dependency group) or ``python bench/control_sac_throughput.py --quick``.
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

ABOUT = (
    "`bench/control_sac_throughput.py`: gradient updates per second of one SAC update "
    "(critic, actor, temperature, target) with 2x512 networks at batch 256 on the same "
    "environment, our JAX SAC vs Stable-Baselines3 and sbx side by side in one run; the FLOP/s "
    "this reaches against a measured float32 matmul peak; SAC-ERA's cost per update vs our SAC; "
    "and 1/4/8 seeds vmapped in one program. Goals (issue 4): >= 1.8x SB3, >= 1.2x sbx, "
    "ERA overhead <= 7 %, on GPU 8 seeds <= 2x the time of one."
)
ENV_ID = "HalfCheetah-v5"
OBS_DIM, ACT_DIM = 17, 6


def matmul_peak(quick: bool) -> float:
    n = 1024 if quick else 2048
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(3 if quick else 10):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def our_agent(algo: str, hidden, layer_norm: bool, activation: str):
    from era_control import get_algorithm

    spec = get_algorithm(algo)
    cfg = spec.config(
        hidden=tuple(hidden),
        layer_norm=layer_norm,
        activation=activation,
        batch_size=256,
        warmup_steps=0,
    )
    return spec.agent(cfg, OBS_DIM, ACT_DIM, capacity=100_000)


def our_runner(agent, seeds: int, n_updates: int):
    """A callable running ``n_updates`` fused updates of ``seeds`` vmapped seeds, and the
    FLOPs of one single-seed update (XLA cost analysis)."""
    state = jax.jit(jax.vmap(agent.init_state))(jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds)))
    rng = np.random.default_rng(0)
    size = 10_000
    buf = dict(state["buffer"])
    for name, shape in (
        ("obs", (OBS_DIM,)),
        ("next_obs", (OBS_DIM,)),
        ("action", (ACT_DIM,)),
        ("reward", ()),
        ("discount", ()),
    ):
        values = rng.uniform(-1, 1, (seeds, size, *shape)).astype(np.float32)
        buf[name] = buf[name].at[:, :size].set(values)
    buf["size"] = jnp.full((seeds,), size, jnp.int32)
    # distinct buffers for every leaf (the target network starts as a copy of the critic)
    state = jax.tree.map(lambda x: jnp.array(x, copy=True), dict(state, buffer=buf))
    one = jax.tree.map(lambda x: x[0], state)
    cost = jax.jit(agent.update).lower(one, jax.random.PRNGKey(0)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) or None

    def run(state, key):
        keys = jax.random.split(key, n_updates)
        state, metrics = jax.lax.scan(agent.update, state, keys)
        return state, metrics["critic_loss"][-1]

    vrun = jax.jit(jax.vmap(run), donate_argnums=0)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds) + 100)
    holder = {"state": state}

    def go():
        holder["state"], loss = vrun(holder["state"], keys)
        loss.block_until_ready()

    return go, flops


def interleaved(cases: dict, repeats: int) -> dict[str, list[float]]:
    """Warm each case up, then time them in rounds (A B C, A B C, ...): per-case seconds."""
    for fn, _ in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, (fn, _) in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def baseline_runner(lib: str, n_updates: int):
    """A callable running ``n_updates`` gradient steps of SB3's or sbx's SAC ``train``, or the
    reason it is unavailable."""
    try:
        import gymnasium as gym

        if lib == "sb3":
            import torch
            from stable_baselines3 import SAC

            torch.set_num_threads(os.cpu_count() or 1)
        else:
            from sbx import SAC
    except ImportError as err:
        return None, f"not installed ({err.name})"
    env = gym.make(ENV_ID)
    model = SAC(
        "MlpPolicy",
        env,
        batch_size=256,
        learning_starts=10**9,
        buffer_size=100_000,
        policy_kwargs={"net_arch": [512, 512]},
        seed=0,
        verbose=0,
    )
    model.learn(total_timesteps=2000)  # fills the buffer with random actions, no training
    return (lambda: model.train(gradient_steps=n_updates, batch_size=256)), None


def fmt_rate(t):
    return "n/a" if t is None else f"{1.0 / t:,.1f}"


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of b/a (per-round ratios cancel slow drifts of a shared machine)."""
    return statistics.median(y / x for x, y in zip(a, b, strict=True))


def run_bench(args) -> str:
    n, reps = (10, 3) if args.quick else (args.updates, args.repeats)
    device = jax.devices()[0]
    peak = matmul_peak(args.quick)
    cases, notes, flops = {}, {}, {}
    for name, algo, ln, act in (
        ("ours", "sac", False, "relu"),
        ("paper", "sac", True, "elu"),
        ("era", "sac-era", True, "elu"),
    ):
        cases[name] = our_runner(our_agent(algo, [512, 512], ln, act), 1, n)
        flops[name] = cases[name][1]
    for lib in ("sb3", "sbx"):
        fn, note = baseline_runner(lib, n)
        if fn is None:
            notes[lib] = note
        else:
            cases[lib] = (fn, None)
    times = interleaved(cases, reps)
    peak = max(peak, matmul_peak(args.quick))  # best of before and after: a busy machine
    per = {k: statistics.median(v) / n for k, v in times.items()}
    spread = {k: max(v) / min(v) for k, v in times.items()}

    def speedup(lib):
        return f"{median_ratio(times['ours'], times[lib]):.2f}x" if lib in times else "n/a"

    rows = [
        ("ours (JAX, scan-fused)", "2x512 ReLU", "ours", "1.00x"),
        ("Stable-Baselines3 SAC (torch)", "2x512 ReLU", "sb3", speedup("sb3")),
        ("sbx SAC (JAX)", "2x512 ReLU", "sbx", speedup("sbx")),
        ("ours, paper network", "2x512 LayerNorm+ELU", "paper", ""),
        ("ours SAC-ERA, paper network", "2x512 LayerNorm+ELU", "era", ""),
    ]
    lines = [
        f"Device: {device.device_kind} ({device.platform}), {os.cpu_count()} CPU cores; "
        f"{platform.platform()}; env {ENV_ID} (obs {OBS_DIM}, act {ACT_DIM}); batch 256; "
        f"{n} updates per timing, {reps} interleaved rounds (median).",
        "",
        "| implementation | network | updates/s | spread (max/min) | ours is faster by |",
        "|---|---|---:|---:|---:|",
    ]
    for name, net, key, up in rows:
        if key in per:
            lines.append(f"| {name} | {net} | {1 / per[key]:,.1f} | {spread[key]:.2f} | {up} |")
        else:
            lines.append(f"| {name} | {net} | {notes.get(key, 'n/a')} | | n/a |")
    lines.append("")
    goal_sb3 = "n/a"
    if "sb3" in times:
        goal_sb3 = "met" if median_ratio(times["ours"], times["sb3"]) >= 1.8 else "not met"
    goal_sbx = "n/a"
    if "sbx" in times:
        goal_sbx = "met" if median_ratio(times["ours"], times["sbx"]) >= 1.2 else "not met"
    lines.append(f"Goals: >= 1.8x SB3: **{goal_sb3}**; >= 1.2x sbx: **{goal_sbx}**.")
    lines.append("")
    for key, label in (("ours", "ReLU network"), ("paper", "paper network (LayerNorm+ELU)")):
        if flops.get(key):
            achieved = flops[key] / per[key]
            lines.append(
                f"FLOP/s, {label}: {flops[key] / 1e9:.2f} GFLOP per update (XLA cost analysis) x "
                f"{1 / per[key]:.1f} updates/s = **{achieved / 1e9:.1f} GFLOP/s**, "
                f"{100 * achieved / peak:.0f} % of the measured float32 matmul peak "
                f"({peak / 1e9:.1f} GFLOP/s)."
            )
            lines.append("")
    overhead = median_ratio(times["paper"], times["era"]) - 1
    verdict = "met" if overhead <= 0.07 else "not met"
    extra = (flops["era"] / flops["paper"] - 1) if flops.get("era") and flops.get("paper") else 0
    lines.append(
        f"SAC-ERA vs our SAC (same network): {1e3 * per['era']:.1f} ms vs {1e3 * per['paper']:.1f}"
        f" ms per update; per-round median overhead **{100 * overhead:+.1f} %** (goal <= 7 %: "
        f"{verdict}); FLOPs differ by {100 * extra:+.2f} %."
    )
    lines.append("")
    lines.append(
        "| vmapped seeds | ms per update step (all seeds) | vs 1 seed | aggregate updates/s |"
    )
    lines.append("|---:|---:|---:|---:|")
    seeds_list = (1, 2) if args.quick else (1, 4, 8)
    seed_cases = {
        s: our_runner(our_agent("sac", [512, 512], True, "elu"), s, n) for s in seeds_list
    }
    seed_times = interleaved(seed_cases, reps)
    base = statistics.median(seed_times[seeds_list[0]]) / n
    for s in seeds_list:
        t = statistics.median(seed_times[s]) / n
        lines.append(f"| {s} | {1e3 * t:.1f} | {t / base:.2f}x | {s / t:,.1f} |")
    return "\n".join(lines)


def write_docs(path: Path, section: str) -> None:
    write_section(path, "control", section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (about a minute)")
    parser.add_argument("--updates", type=int, default=200, help="updates per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write-docs", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    table = run_bench(args)
    command = shlex.join(["python", "bench/control_sac_throughput.py", *(argv or sys.argv[1:])])
    section = f"## era-control: SAC update throughput\n\n{ABOUT}\n\n{table}\n\nCommand: `{command}`"
    if args.quick:
        section += " (**--quick: smoke run, not a measurement**)"
    print(section)
    if args.write_docs is not None:
        write_docs(args.write_docs, section)
        print(f"Wrote the section to {args.write_docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
