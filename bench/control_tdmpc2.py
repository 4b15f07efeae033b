"""TD-MPC2 vs TD-MPC2-ERA, OBAC vs OBAC-ERA, and SAC: time per update and per environment step.

All on one task's dimensions (``--env``, default ``dmc/cartpole-swingup``), one seed, jitted:

1. **Update**: one gradient update (``jax.lax.scan`` over ``--updates`` updates, the replay
   buffer on the device filled with random transitions): TD-MPC2's (world model + policy prior
   + target ensemble), TD-MPC2-ERA's, SAC's (critic + actor + temperature + target), OBAC's
   (SAC's plus the offline value and the behaviour-constrained actor) and OBAC-ERA's.
2. **Env step**: choosing one action (a scan over ``--updates`` decisions): TD-MPC2 and
   TD-MPC2-ERA planning with MPPI (``mpc=True``) and acting with the policy prior
   (``mpc=False``), and the policy sample of SAC, OBAC and OBAC-ERA.

Models: the algorithms' defaults (TD-MPC2's official 5M-parameter model, SAC's and OBAC's
2x512), or with ``--quick`` each config's ``quick()`` (the CPU sizes of ``--quick`` runs) and,
unless ``--updates`` / ``--repeats`` are given, fewer updates per timing and rounds.
Every case is compiled and warmed up first, then all cases run in interleaved rounds
(``--repeats``); the table has medians, and ERA's overhead is the median of per-round ratios.
``--write-docs docs/benchmarks.md`` puts the table between the
``<!-- bench:control-tdmpc2:start -->`` and ``<!-- bench:control-tdmpc2:end -->`` markers.

Run: ``python bench/control_tdmpc2.py --quick`` (in the control environment).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from docs_section import write_section

ALGOS = ("tdmpc2", "tdmpc2-era", "sac", "obac", "obac-era")
PLANNERS = ("tdmpc2", "tdmpc2-era")  # the others act with a policy sample


def make_agent(algo: str, obs_dim: int, action_dim: int, quick: bool, **overrides: Any) -> Any:
    from era_control import get_algorithm

    spec = get_algorithm(algo)
    cfg = spec.config(warmup_steps=0, **overrides)
    if quick:
        cfg = dataclasses.replace(cfg.quick(10_000), warmup_steps=0)
    return spec.agent(cfg, obs_dim, action_dim, 10_000)


def filled_state(agent: Any, size: int = 5000) -> dict[str, Any]:
    """A fresh learner state whose replay buffer holds ``size`` random transitions."""
    state = agent.init_state(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    buf = dict(state["buffer"])
    for name in ("obs", "next_obs", "action", "reward", "discount", "cont"):
        if name not in buf:
            continue
        values = rng.uniform(-1, 1, buf[name][:size].shape).astype(np.float32)
        if name in ("discount", "cont"):
            values = np.ones_like(values)
        buf[name] = buf[name].at[:size].set(values)
    buf["size"] = jnp.asarray(size, jnp.int32)
    # distinct buffers for every leaf (targets start as copies)
    return jax.tree.map(lambda x: jnp.array(x, copy=True), dict(state, buffer=buf))


def update_runner(agent: Any, n: int) -> Callable[[], None]:
    """``n`` fused gradient updates per call."""

    def run(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        state, metrics = jax.lax.scan(agent.update, state, jax.random.split(key, n))
        return state, jax.tree.leaves(metrics)[0][-1]

    fn = jax.jit(run, donate_argnums=0)
    holder = {"state": filled_state(agent)}

    def go() -> None:
        holder["state"], out = fn(holder["state"], jax.random.PRNGKey(1))
        out.block_until_ready()

    return go


def act_runner(agent: Any, algo: str, n: int, obs_dim: int) -> Callable[[], None]:
    """``n`` action choices per call (a plan, a prior sample or SAC's policy sample)."""
    state = filled_state(agent, 10)
    obs = jnp.linspace(-1.0, 1.0, obs_dim)

    if algo not in PLANNERS:

        def choose(carry: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
            action = agent.act(state["actor"], state["extra"], obs[None], key, False)[0]
            return carry + action.sum(), action

        init: Any = jnp.zeros(())
    else:

        def choose(carry: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
            action, mean = agent.plan(state["params"], obs, carry, jnp.zeros((), bool), key, True)
            return mean, action

        init = state["plan_mean"]

    fn = jax.jit(lambda k: jax.lax.scan(choose, init, jax.random.split(k, n))[1])

    def go() -> None:
        fn(jax.random.PRNGKey(2)).block_until_ready()

    return go


def interleaved(cases: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Warm each case up, then time them in rounds (A B C, A B C, ...): per-case seconds."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of b/a (per-round ratios cancel slow drifts of a shared machine)."""
    return statistics.median(y / x for x, y in zip(a, b, strict=True))


def run_bench(args: argparse.Namespace) -> str:
    from era_control.envs import make_env

    env = make_env(args.env)
    obs_dim, action_dim = env.observation_dim, env.action_dim
    env.close()
    n = args.updates or (5 if args.quick else 20)
    reps = args.repeats or (3 if args.quick else 7)
    cases: dict[str, Callable[[], None]] = {}
    for algo in ALGOS:
        agent = make_agent(algo, obs_dim, action_dim, args.quick)
        cases[f"{algo} update"] = update_runner(agent, n)
        if algo not in PLANNERS:
            cases[f"{algo} act"] = act_runner(agent, algo, n, obs_dim)
            continue
        cases[f"{algo} plan"] = act_runner(agent, algo, n, obs_dim)
        prior = make_agent(algo, obs_dim, action_dim, args.quick, mpc=False)
        cases[f"{algo} prior"] = act_runner(prior, algo, n, obs_dim)
    times = interleaved(cases, reps)
    ms = {k: 1e3 * statistics.median(v) / n for k, v in times.items()}
    device = jax.devices()[0]
    lines = [
        "## era-control: TD-MPC2",
        "",
        "`bench/control_tdmpc2.py`: time per gradient update and per environment step (choosing "
        "one action) of TD-MPC2, TD-MPC2-ERA, SAC, OBAC and OBAC-ERA on the same task's "
        "dimensions, one seed, "
        "jitted, cases interleaved.",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{device.platform} {getattr(device, 'device_kind', '')}, {platform.processor() or platform.machine()}, "
        f"jax {jax.__version__}); {args.env} (obs {obs_dim}, action {action_dim}); "
        f"{'each config.quick() (CPU sizes)' if args.quick else 'default sizes (TD-MPC2 5M, SAC and OBAC 2x512)'}; "
        f"{n} per timing, {reps} rounds (median).",
        "",
        "| algo | ms / update | ms / env step, MPPI planning | ms / env step, policy prior |",
        "|---|---:|---:|---:|",
    ]
    for algo in ALGOS:
        plan = ms.get(f"{algo} plan")
        prior = ms.get(f"{algo} prior", ms.get(f"{algo} act"))
        lines.append(
            f"| {algo} | {ms[f'{algo} update']:.2f} | "
            f"{'–' if plan is None else f'{plan:.2f}'} | {prior:.2f} |"
        )
    over = median_ratio(times["tdmpc2 update"], times["tdmpc2-era update"]) - 1.0
    plan_over = median_ratio(times["tdmpc2 plan"], times["tdmpc2-era plan"]) - 1.0
    obac_over = median_ratio(times["obac update"], times["obac-era update"]) - 1.0
    lines += [
        "",
        f"TD-MPC2-ERA's overhead vs TD-MPC2: {100 * over:+.1f} % per update, "
        f"{100 * plan_over:+.1f} % per planned env step; OBAC-ERA's vs OBAC: "
        f"{100 * obac_over:+.1f} % per update (medians of per-round ratios; goal: <= 7 % per "
        "update).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="dmc/cartpole-swingup")
    p.add_argument(
        "--updates", type=int, help="updates / decisions per timing (default 20; 5 with --quick)"
    )
    p.add_argument("--repeats", type=int, help="interleaved rounds (default 7; 3 with --quick)")
    p.add_argument(
        "--quick", action="store_true", help="CPU sizes (and 5 per timing, 3 rounds by default)"
    )
    p.add_argument("--write-docs", type=Path, metavar="PATH", help="e.g. docs/benchmarks.md")
    args = p.parse_args(argv)
    section = run_bench(args)
    print(section)
    if args.write_docs:
        write_section(args.write_docs, "control-tdmpc2", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
