"""Benchmark: era_llm.ops (chunked log-probs + entropies under a per-response scale) vs the naive path.

The naive path is what the paper's verl fork does: one full float32 copy of the ``[B, T, V]``
logits, then a Python loop over the responses, each with a scaled copy of its logits, a full
log-softmax for the log-probs and another for the token entropies; backward through autograd.
Ours is ``era_llm.ops.token_logprobs`` (same outputs, chunked, custom backward). Each case runs
forward + backward of ``sum(logprobs)`` on bfloat16 logits that require grad, as a policy update
does, with ERA's mixed scales ``c in {2, 1, 0.5}`` (a quarter sharpened, a quarter flattened).

Cases, side by side in one run (each in its own subprocess, so peak memory is its own):

* ``naive ERA``: the loop above with the scales;
* ``ours ERA``: ``token_logprobs(logits, labels, scale=c, compile=True)`` (fused kernels; the
  compilation happens in the untimed warm-up step);
* ``ours plain``: ``token_logprobs(logits, labels, compile=True)`` (no scale: the plain pass);
* ``ours ERA, eager``: ``token_logprobs(logits, labels, scale=c)`` without ``torch.compile``;
* on CUDA also ``ours ERA from hidden``: ``token_logprobs_from_hidden`` (no logits at all) and
  ``naive ERA from hidden`` (``lm_head`` then the naive loop).

Reported: median and fastest wall time of a forward+backward (after a warm-up step, which also
compiles), the process CPU time (all threads; a check when the machine is shared),
peak memory during the timed steps above what the process held before them (CPU: the peak RSS,
reset after the warm-up through ``/proc/self/clear_refs``, minus the RSS then; CUDA:
``torch.cuda.max_memory_allocated`` minus the allocation then; the gradient of the inputs is
freed before and so counted), and the
ratios naive / ours (goal: >= 3x faster, >= 2x less memory) and ours ERA / ours plain (goal:
<= 1.10).

With ``--peers`` the cases are ours against the peers' own functions for the same quantities
(log-probs with gradient, unscaled entropies without), each with and without ERA's
per-response scale, and the table goes to ``docs/llm-ops.md`` (section ``llm-peers``):

* ``TRL plain``: TRL's ``selective_log_softmax_and_entropy(logits, labels,
  entropy_requires_grad=False)`` (TRL's GRPO path);
* ``TRL ERA``: TRL's ``selective_log_softmax`` on a scaled copy ``logits * c`` (TRL takes one
  scalar temperature) and ``entropy_from_logits`` of the unscaled logits, without gradient;
* ``verl plain`` / ``verl ERA``: verl's ``logprobs_from_logits`` on the packed ``[B*T, V]`` rows,
  as its engine calls it (``ERA``: the rows divided by the per-sample temperature ``1 / c``, the
  engine's ``_scale_logits_by_temperature``), and ``entropy_from_logits`` without gradient;
* ``verl ERA, chunked entropy``: the same with ``entropy_from_logits_with_chunking``;
* the hidden-state path at V152k (``--peers`` only): ``ours ERA from hidden``
  (``token_logprobs_from_hidden``) against ``TRL ERA from hidden`` / ``verl ERA from hidden``
  (``lm_head`` as a matmul, then their functions).

On CUDA the peers' functions take their own fused Triton paths where they have them; Liger,
Cut Cross-Entropy and verl's Triton ``linear_cross_entropy`` are not in this table.

Usage::

    python bench/llm_ops.py                      # CPU, B8 x T1024 x V32k
    python bench/llm_ops.py --quick              # CPU, B2 x T256 x V32k, 2 repetitions
    python bench/llm_ops.py --device cuda        # GPU, B16 x T4096 x V152k (+ hidden-state cases)
    python bench/llm_ops.py --write-docs docs/benchmarks.md
    python bench/llm_ops.py --peers --write-docs docs/llm-ops.md   # B8 x T1024 x V32k, hidden V152k
    python bench/llm_ops.py --peers --quick      # B2 x T256 x V32k, hidden B1 x T256 x V152k

``--write-docs`` rewrites the section between ``<!-- bench:llm:start -->`` and
``<!-- bench:llm:end -->`` (``--peers``: ``llm-peers``) in the given file.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from docs_section import write_section

SHAPES = {
    "cpu": {"batch": 8, "seq": 1024, "vocab": 32_000, "hidden": 0},
    "cpu-quick": {"batch": 2, "seq": 256, "vocab": 32_000, "hidden": 0},
    "cuda": {"batch": 16, "seq": 4096, "vocab": 152_064, "hidden": 3584},
    "cuda-quick": {"batch": 4, "seq": 1024, "vocab": 152_064, "hidden": 3584},
}
# the hidden-state path of --peers (on CPU): Qwen2.5's vocabulary
PEER_HIDDEN_SHAPES = {
    "cpu": {"batch": 8, "seq": 1024, "vocab": 152_064, "hidden": 1024},
    "cpu-quick": {"batch": 1, "seq": 256, "vocab": 152_064, "hidden": 256},
    "cuda": {"batch": 16, "seq": 4096, "vocab": 152_064, "hidden": 3584},
    "cuda-quick": {"batch": 4, "seq": 1024, "vocab": 152_064, "hidden": 3584},
}
PEER_CASES = [
    "ours ERA",
    "ours plain",
    "TRL ERA",
    "TRL plain",
    "verl ERA",
    "verl ERA, chunked entropy",
    "verl plain",
]
PEER_HIDDEN_CASES = ["ours ERA from hidden", "TRL ERA from hidden", "verl ERA from hidden"]
GOAL_SPEED, GOAL_MEMORY, GOAL_OVERHEAD = 3.0, 2.0, 1.10


# ---------------------------------------------------------------------------------------------
# the two implementations


def naive_logprobs(logits, labels, scale):
    """The fork's path: full fp32 copy, a loop over responses, a scaled copy per response."""
    import torch

    full = logits.float()
    logps, ents = [], []
    for i in range(full.shape[0]):
        scaled = full[i] * scale[i]
        lp = torch.log_softmax(scaled, dim=-1)
        logps.append(lp.gather(-1, labels[i][:, None])[:, 0])
        with torch.no_grad():
            p0 = torch.log_softmax(full[i], dim=-1)
            ents.append(-(p0.exp() * p0).sum(-1))
    return torch.stack(logps), torch.stack(ents)


def trl_logprobs(logits, labels, scale):
    """TRL's functions: ``selective_log_softmax`` (+ ``entropy_from_logits``, no gradient)."""
    import torch
    from trl.trainer.utils import (
        entropy_from_logits,
        selective_log_softmax,
        selective_log_softmax_and_entropy,
    )

    if scale is None:
        return selective_log_softmax_and_entropy(logits, labels, entropy_requires_grad=False)
    lp = selective_log_softmax(logits * scale[:, None, None].to(logits.dtype), labels)
    with torch.no_grad():
        ent = entropy_from_logits(logits)
    return lp, ent


def verl_logprobs(logits, labels, scale, chunked=False):
    """verl's functions on the packed rows, as its engine calls them."""
    import torch
    from verl.utils.torch_functional import (
        entropy_from_logits,
        entropy_from_logits_with_chunking,
        logprobs_from_logits,
    )

    b, t, v = logits.shape
    rows = logits.reshape(b * t, v)
    with torch.no_grad():
        ent = entropy_from_logits_with_chunking(rows) if chunked else entropy_from_logits(rows)
    if scale is not None:
        temperature = (1.0 / scale).repeat_interleave(t)[:, None]
        rows = rows / temperature.clamp(min=1e-8).to(rows.dtype)
    lp = logprobs_from_logits(rows, labels.reshape(-1), inplace_backward=False)
    return lp.view(b, t), ent.view(b, t)


def peer_step(case: str, logits, labels, scale):
    """The log-probs of one peer case (``TRL ...`` / ``verl ...``), before backward."""
    era = scale if " ERA" in case else None
    if case.startswith("TRL"):
        return trl_logprobs(logits, labels, era)[0]
    return verl_logprobs(logits, labels, era, chunked="chunked" in case)[0]


def run_case(case: str, shape: dict, device: str, reps: int) -> dict:
    import torch

    from era_llm.ops import token_logprobs, token_logprobs_from_hidden

    torch.manual_seed(0)
    b, t, v, d = shape["batch"], shape["seq"], shape["vocab"], shape["hidden"]
    dev = torch.device(device)
    labels = torch.randint(0, v, (b, t), device=dev)
    scale = torch.ones(b, device=dev)
    scale[: b // 4] = 2.0
    scale[b // 4 : b // 2] = 0.5
    if "hidden" in case:
        bf16 = {"device": dev, "dtype": torch.bfloat16}
        hidden = (torch.randn(b, t, d, **bf16) / d**0.5).requires_grad_(True)
        weight = torch.randn(v, d, **bf16).requires_grad_(True)
        inputs = (hidden, weight)
    else:
        # drawn in bfloat16 directly: no float32 temporary raises the baseline peak
        logits = torch.randn(b, t, v, device=dev, dtype=torch.bfloat16).mul_(3).requires_grad_(True)
        inputs = (logits,)

    def step():
        for x in inputs:
            x.grad = None
        if case == "naive ERA":
            lp, _ = naive_logprobs(logits, labels, scale)
        elif case == "ours ERA":
            lp = token_logprobs(logits, labels, scale=scale, compile=True).logprobs
        elif case == "ours plain":
            lp = token_logprobs(logits, labels, compile=True).logprobs
        elif case == "ours ERA, eager":
            lp = token_logprobs(logits, labels, scale=scale).logprobs
        elif case == "ours ERA from hidden":
            lp = token_logprobs_from_hidden(hidden, weight, labels, scale=scale, compile=True)
            lp = lp.logprobs
        elif case == "naive ERA from hidden":
            lp, _ = naive_logprobs(hidden @ weight.T, labels, scale)
        elif case.startswith(("TRL", "verl")) and "hidden" in case:
            lp = peer_step(case.removesuffix(" from hidden"), hidden @ weight.T, labels, scale)
        elif case.startswith(("TRL", "verl")):
            lp = peer_step(case, logits, labels, scale)
        else:
            raise ValueError(case)
        lp.sum().backward()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    try:
        step()  # warm-up: compiles the kernels (compile=True) and touches the allocator once
        sync()
        # peak memory is measured from here: compilation and the first-call caches are not in it
        for x in inputs:
            x.grad = None
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _reset_rss_peak()
        times, cpu_times = [], []
        for _ in range(reps):
            start, cpu_start = time.perf_counter(), time.process_time()
            step()
            sync()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    except torch.OutOfMemoryError:
        return {"case": case, "oom": True}
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_peak() - base
    return {
        "case": case,
        "time_s": statistics.median(times),
        "times": times,
        "cpu_s": statistics.median(cpu_times),
        "peak_bytes": peak,
    }


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> int:
    """Reset the process's peak RSS (Linux: write 5 to /proc/self/clear_refs); return the RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    except (OSError, TypeError):  # no procfs: fall back to the high-water mark so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_peak() -> int:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# driver


def run_child(case: str, shape: dict, device: str, reps: int, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--shape-json", json.dumps(shape)]
    cmd += ["--device", device, "--reps", str(reps)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if proc.returncode in (-9, 137) or "MemoryError" in proc.stderr:
            return {"case": case, "oom": True}
        raise RuntimeError(f"case {case!r} failed: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_mem(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def case_rows(results: list[dict]) -> list[str]:
    """The Markdown table of the measured cases: header, then one row per case."""
    lines = [
        "| case | time (median) | time (fastest) | CPU time (median) | peak memory (timed steps) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("oom"):
            lines.append(f"| {r['case']} | out of memory | — | — | — |")
        else:
            lines.append(
                f"| {r['case']} | {r['time_s']:.3f} s | {min(r['times']):.3f} s "
                f"| {r['cpu_s']:.3f} s | {fmt_mem(r['peak_bytes'])} |"
            )
    return lines


def table(results: list[dict], shape: dict, device: str, command: str, quick: bool = False) -> str:
    by = {r["case"]: r for r in results}
    lines = [
        f"### LLM ops: log-probs + entropies under ERA's per-response scale ({device})",
        "",
        f"Shape B{shape['batch']} × T{shape['seq']} × V{shape['vocab']} "
        + (f"(hidden size {shape['hidden']}) " if shape["hidden"] else "")
        + "bfloat16, forward + backward of `sum(logprobs)`; scales c ∈ {2, 1, 0.5}. "
        f"`{command}`, {datetime.date.today().isoformat()}, {platform.machine()}"
        + (f", torch threads {results[0].get('threads')}" if results[0].get("threads") else "")
        + ".",
        "",
        *case_rows(results),
        "",
    ]
    ratios = []

    def ratio(num, den, what, goal, higher_is_better=True):
        a, b = by.get(num), by.get(den)
        if not a or not b or a.get("oom") or b.get("oom"):
            if a and a.get("oom"):
                ratios.append(f"* {what}: {num} ran out of memory")
            return
        key = "time_s" if "time" in what or "overhead" in what else "peak_bytes"
        value = a[key] / max(b[key], 1e-12)
        met = value >= goal if higher_is_better else value <= goal
        sign = "≥" if higher_is_better else "≤"
        verdict = "met" if met else "not met"
        ratios.append(f"* {what}: {value:.2f}× (goal {sign} {goal:g}×: {verdict})")

    ratio("naive ERA", "ours ERA", "speed-up, time naive / ours", GOAL_SPEED)
    a, b = by.get("naive ERA"), by.get("ours ERA")
    if a and b and not a.get("oom") and not b.get("oom") and device == "cpu":
        ratios.append(
            f"* CPU time naive / ours: {a['cpu_s'] / max(b['cpu_s'], 1e-12):.2f}× (all threads; "
            "less sensitive than wall time to other jobs on the machine)"
        )
    ratio("naive ERA", "ours ERA", "memory saving, peak naive / ours", GOAL_MEMORY)
    ratio(
        "ours ERA", "ours plain", "ERA overhead, time ours ERA / ours plain", GOAL_OVERHEAD, False
    )
    ratio(
        "naive ERA from hidden",
        "ours ERA from hidden",
        "from hidden: time naive / ours",
        GOAL_SPEED,
    )
    ratio(
        "naive ERA from hidden",
        "ours ERA from hidden",
        "from hidden: memory peak naive / ours",
        GOAL_MEMORY,
    )
    if quick:
        ratios += [
            "",
            "This is a `--quick` check (small shape, two timed repetitions), not the benchmark: "
            "rerun without `--quick` (CPU: `uv run nox -s \"bench(domain='llm')\" -- "
            "--write-docs docs/benchmarks.md`; GPU: add `--device cuda`) to replace it.",
        ]
    return "\n".join(lines + ratios)


def peer_table(
    results: list[dict], shape: dict, hidden: dict, device: str, command: str, quick: bool
) -> str:
    """The ``--peers`` table: ours against TRL's and verl's functions, side by side."""
    by = {r["case"]: r for r in results}
    threads = results[0].get("threads")
    lines = [
        f"### Log-probs + entropies: ours against TRL's and verl's own functions ({device})",
        "",
        f"Logits B{shape['batch']} × T{shape['seq']} × V{shape['vocab']}; hidden-state path "
        f"B{hidden['batch']} × T{hidden['seq']} × D{hidden['hidden']} → V{hidden['vocab']}; "
        "bfloat16, forward + backward of `sum(logprobs)`, entropies without gradient; ERA "
        f"cases with scales c ∈ {{2, 1, 0.5}}. `{command}`, {datetime.date.today().isoformat()}, "
        f"{platform.machine()}" + (f", torch threads {threads}" if threads else "") + ".",
        "",
        *case_rows(results),
        "",
    ]
    pairs = [
        ("TRL ERA", "ours ERA"),
        ("verl ERA", "ours ERA"),
        ("verl ERA, chunked entropy", "ours ERA"),
        ("TRL plain", "ours plain"),
        ("verl plain", "ours plain"),
        ("TRL ERA from hidden", "ours ERA from hidden"),
        ("verl ERA from hidden", "ours ERA from hidden"),
    ]
    for peer, ours in pairs:
        a, b = by.get(peer), by.get(ours)
        if not a or not b:
            continue
        if a.get("oom") or b.get("oom"):
            who = peer if a.get("oom") else ours
            lines.append(f"* {peer} vs {ours}: {who} ran out of memory")
            continue
        speed = a["time_s"] / max(b["time_s"], 1e-12)
        memory = a["peak_bytes"] / max(b["peak_bytes"], 1)
        lines.append(
            f"* {peer} / {ours}: time {speed:.2f}× (goal > 1×: {'met' if speed > 1 else 'not met'}), "
            f"peak memory {memory:.2f}× (goal ≥ 1×: {'met' if memory >= 1 else 'not met'})"
        )
    if quick:
        lines += [
            "",
            "This is a `--quick` check (small shapes, two timed repetitions), not the "
            "benchmark: rerun `python bench/llm_ops.py --peers --write-docs docs/llm-ops.md` "
            "on a quiet machine to replace it.",
        ]
    return "\n".join(lines)


def write_docs(path: Path, section: str) -> None:
    write_section(path, "llm", section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shape, 2 repetitions")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per case")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--peers", action="store_true", help="ours against TRL's and verl's own functions"
    )
    parser.add_argument("--write-docs", type=Path, default=None, metavar="PATH")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shape-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")

    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result = run_case(args.child, json.loads(args.shape_json), args.device, args.reps)
        result["threads"] = torch.get_num_threads() if args.device == "cpu" else None
        print(json.dumps(result))
        return 0

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available")
    shape = SHAPES[args.device + ("-quick" if args.quick else "")]
    reps = args.reps or (2 if args.quick else 5)
    if args.peers:
        return run_peers(args, shape, reps)
    cases = ["naive ERA", "ours ERA", "ours plain", "ours ERA, eager"]
    if args.device == "cuda":
        cases += ["naive ERA from hidden", "ours ERA from hidden"]
    results = []
    for case in cases:
        print(f"running {case} ...", file=sys.stderr, flush=True)
        results.append(run_child(case, shape, args.device, reps, args.threads))
    command = "python bench/llm_ops.py" + (" --quick" if args.quick else "")
    command += " --device cuda" if args.device == "cuda" else ""
    section = table(results, shape, args.device, command, quick=args.quick)
    print(section)
    if args.write_docs:
        write_docs(args.write_docs, section)
    return 0


def run_peers(args: argparse.Namespace, shape: dict, reps: int) -> int:
    hidden = PEER_HIDDEN_SHAPES[args.device + ("-quick" if args.quick else "")]
    results = []
    for case in [*PEER_CASES, *PEER_HIDDEN_CASES]:
        print(f"running {case} ...", file=sys.stderr, flush=True)
        case_shape = hidden if "hidden" in case else shape
        results.append(run_child(case, case_shape, args.device, reps, args.threads))
    command = "python bench/llm_ops.py --peers" + (" --quick" if args.quick else "")
    command += " --device cuda" if args.device == "cuda" else ""
    section = peer_table(results, shape, hidden, args.device, command, args.quick)
    print(section)
    if args.write_docs:
        write_section(args.write_docs, "llm-peers", section)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
