"""GPU check, section ``control``: era_control's off-policy learners on the device (JAX).

No simulator: the replay buffer lives on the device, filled with 10,000 synthetic
transitions (HalfCheetah's shapes: 17-dim observation, 6-dim action), and every timing is a
``jax.lax.scan`` of fused gradient updates, vmapped over seeds -- the runners of
`bench/control_sac_throughput.py` (`our_agent`, `our_runner`, `interleaved`, `median_ratio`).

1. SAC and SAC-ERA updates/s at 2x512 / batch 256 (the paper's network, LayerNorm + ELU; SAC
   also with a plain ReLU MLP), FLOPs per update (XLA's cost analysis), and ERA's overhead per
   update against SAC on the same network;
2. SAC with 1 / 8 / 32 seeds vmapped in one program (goal: 8 seeds <= 2x the time of one);
3. FastTD3 / FastSAC-ERA (any registered algorithm whose name starts with "fast") at their
   default, large batch, when era_control registers them; recorded as skipped otherwise.

MuJoCo Playground / MJX env steps are not measured: era_control's environments are dm_control
and Gymnasium MuJoCo, stepped on the CPU.
"""

from __future__ import annotations

import statistics

import control_sac_throughput as cst
from gpu_check_common import Report, fmt

SEEDS, DRY_SEEDS = (1, 8, 32), (1,)  # a dry run: the vmapped path, no extra compilation
GOAL_SEEDS = 2.0  # 8 seeds in at most twice the time of one


def fast_algorithms() -> tuple[list[str], list[str]]:
    from era_control import list_algorithms

    names = list_algorithms()
    return [
        n for n in names if n.replace("-", "").replace("_", "").lower().startswith("fast")
    ], names


# Fast* learners as bench/control_fast_throughput.py builds them (FastTD3's networks, h1hand
# sizes, a full random replay buffer); toy networks and batch in a dry run.
FAST_BATCH, FAST_DRY = 32768, {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "num_atoms": 11}


def fast_runner(name: str, n: int, dry_run: bool):
    """``(once, batch)``: one timed call runs ``n`` of the algorithm's updates."""
    import control_fast_throughput as cft

    batch = 32 if dry_run else FAST_BATCH
    agent, state = cft.make_update(name, batch, 16, 64, **(FAST_DRY if dry_run else {}))
    return cft.timed(agent, state, n), batch


def per_update(times: dict[str, list[float]], n: int) -> dict[str, float]:
    return {k: statistics.median(v) / n for k, v in times.items()}


def measure_learners(report: Report, hidden: list[int], n: int, reps: int):
    """SAC, SAC-ERA and SAC with a ReLU MLP, interleaved; returns SAC's runner (1 seed)."""
    arms = {
        "sac": ("sac", True, "elu", "2x{h} LayerNorm+ELU"),
        "sac-era": ("sac-era", True, "elu", "2x{h} LayerNorm+ELU"),
        "sac-relu": ("sac", False, "relu", "2x{h} ReLU"),
    }
    if report.dry_run:  # the same code path as "sac": one compilation less on a CPU
        del arms["sac-relu"]
    cases, flops = {}, {}
    for key, (algo, ln, act, _) in arms.items():
        cases[key] = cst.our_runner(cst.our_agent(algo, hidden, ln, act), 1, n)
        flops[key] = cases[key][1]
    times = cst.interleaved(cases, reps)
    per = per_update(times, n)
    overhead = cst.median_ratio(times["sac"], times["sac-era"]) - 1
    report.results["learners"] = {
        k: {"updates_per_s": 1 / per[k], "s_per_update": per[k], "flops": flops[k],
            "spread": max(times[k]) / min(times[k]), "times": times[k]}
        for k in arms
    }  # fmt: skip
    report.results["era_overhead"] = {
        "ratio_minus_1": overhead,
        "us_per_update": 1e6 * (per["sac-era"] - per["sac"]),
    }
    table = report.table(
        f"Gradient updates, batch 256, {n} updates per timing, {reps} rounds (median)",
        ["algorithm", "network", "updates/s", "ms / update", "spread", "GFLOP / update",
         "GFLOP/s"],
    )  # fmt: skip
    for key, (algo, _, _, net) in arms.items():
        f = flops[key]
        table.rows.append(
            [algo, net.format(h=hidden[0]), f"{1 / per[key]:,.1f}", f"{1e3 * per[key]:.3f}",
             f"{max(times[key]) / min(times[key]):.2f}", fmt(f and f / 1e9, ".3f"),
             fmt(f and f / per[key] / 1e9, ".1f")]
        )  # fmt: skip
    report.notes.append(
        f"SAC-ERA vs SAC (same network): {1e6 * (per['sac-era'] - per['sac']):+.1f} µs per "
        f"update, per-round median overhead {100 * overhead:+.1f} %"
    )
    return cases["sac"]


def measure_seeds(report: Report, hidden: list[int], seeds: tuple[int, ...], n: int, reps: int,
                  one_seed) -> None:  # fmt: skip
    cases = {1: one_seed}
    for s in seeds:
        if s != 1:
            cases[s] = cst.our_runner(cst.our_agent("sac", hidden, True, "elu"), s, n)
    times = cst.interleaved(cases, reps)
    per = per_update(times, n)
    table = report.table(
        "SAC, seeds vmapped in one program (paper network)",
        ["seeds", "ms per update step (all seeds)", "vs 1 seed", "aggregate updates/s"],
    )
    for s in seeds:
        table.rows.append(
            [str(s), f"{1e3 * per[s]:.3f}", f"{per[s] / per[1]:.2f}x", f"{s / per[s]:,.1f}"]
        )
    report.results["seeds"] = {str(s): {"s_per_step": per[s], "vs_one": per[s] / per[1]}
                               for s in seeds}  # fmt: skip
    if 8 in per:
        ratio = per[8] / per[1]
        verdict = "met" if ratio <= GOAL_SEEDS else "not met"
        report.results["goal_8_seeds"] = {"ratio": ratio, "met": ratio <= GOAL_SEEDS}
        report.notes.append(f"8 seeds take {ratio:.2f}x one seed (goal <= 2x: {verdict})")


def measure_fast(report: Report, n: int, reps: int, dry_run: bool) -> None:
    fast, registered = fast_algorithms()
    if not fast:
        reason = (
            "skipped: no FastTD3 / FastSAC-ERA registered in era_control.list_algorithms() "
            f"(registered: {', '.join(registered)})"
        )
        report.results["fast"] = {"skipped": reason}
        report.notes.append(reason)
        return
    table = report.table(
        "Fast* algorithms at their default batch", ["algorithm", "batch", "updates/s", "note"]
    )
    results: dict = {}
    for name in fast:
        try:
            once, batch = fast_runner(name, n, dry_run)
            t = statistics.median(once() for _ in range(reps)) / n
        except Exception as err:  # recorded, not fatal: the other measurements go on
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            table.rows.append([name, "—", "n/a", f"{type(err).__name__}: {err}"[:120]])
            continue
        results[name] = {"batch": batch, "updates_per_s": 1 / t}
        table.rows.append([name, str(batch), f"{1 / t:,.1f}", ""])
        report.save()
    report.results["fast"] = results


def run(report: Report) -> None:
    import jax

    dry = report.dry_run
    hidden = [16, 16] if dry else [512, 512]
    n, reps = (2, 2) if dry else (500, 5)
    device = jax.devices()[0]
    report.results["device"] = f"{device.platform}:{device.device_kind}"
    if not dry and device.platform != "gpu":
        raise RuntimeError(f"JAX's default device is {device.platform}, not a GPU")
    peak = cst.matmul_peak(quick=dry)
    report.results["matmul_peak_flops"] = peak
    report.notes.append(f"float32 matmul peak measured by JAX: {peak / 1e9:,.0f} GFLOP/s")
    report.save()
    one_seed = measure_learners(report, hidden, n, reps)
    report.save()
    measure_seeds(report, hidden, DRY_SEEDS if dry else SEEDS, n, reps, one_seed)
    report.save()
    measure_fast(report, min(n, 50), reps, dry)  # a Fast* update is ~100x a SAC one
    report.notes.append(
        "not measured: MJX env steps (era_control's environments are dm_control and Gymnasium "
        "MuJoCo on the CPU)"
    )
    learners = report.results["learners"]
    seeds = report.results.get("goal_8_seeds")
    report.headline = (
        f"SAC {learners['sac']['updates_per_s']:,.0f} upd/s, SAC-ERA "
        f"{learners['sac-era']['updates_per_s']:,.0f} upd/s "
        f"({100 * report.results['era_overhead']['ratio_minus_1']:+.1f} %)"
        + (f"; 8 seeds = {seeds['ratio']:.2f}x one" if seeds else "")
    )
