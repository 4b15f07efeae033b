"""GPU check, section ``llm``: a GRPO(+ERA) step on the GPU, then era_llm.ops at full size (torch).

1. **GRPO step**: era-llm-train's own run (`era_llm_app.train.start_run` / `grpo_step`) with
   its tiny built-in Qwen3 and the transformers (HF) rollout, on the GPU, no warm-up: 16
   prompts x 8 responses, GRPO+ERA then plain GRPO; the first step (CUDA and kernel start-up)
   is reported apart from the median of the following ones.
2. **Log-probs**: `bench/llm_ops.py`'s cases (`run_case`: forward + backward of
   ``sum(logprobs)``, ERA's scales c in {2, 1, 0.5}, median of the timed steps after a warm-up
   that compiles; peak memory of the timed steps above the inputs) at B16 x T4096 x V152k
   bf16, hidden size 3584, one after another in this process (each case's peak is its own:
   the allocator's peak is reset, and its cache emptied, between cases). ``torch.compile``
   turns our chunk kernels into Triton kernels; the fused cross-entropy kernels of Liger and
   Cut Cross-Entropy run too when their wheels were carried, on the same hidden states with
   the per-response scale folded into them (``c (h W^T) = (c h) W^T``): the same scaled
   log-prob sum, without the entropies.

The dry run: a 2 x 16 x 64 toy shape (hidden size 8) and 2 prompts x 2 responses on the CPU,
``torch.compile`` traced by Dynamo and run eagerly, and the Triton-only kernels skipped.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import llm_ops
from gpu_check_common import Report, use_eager_compile

GPU_SHAPE = llm_ops.SHAPES["cuda"]  # B16 x T4096 x V152064, hidden 3584
DRY_SHAPE = {"batch": 2, "seq": 16, "vocab": 64, "hidden": 8}
CASES = (
    "ours ERA",
    "naive ERA",
    "ours plain",
    "ours ERA from hidden",
    "naive ERA from hidden",
    "liger ERA from hidden",
    "cce ERA from hidden",
    "ours ERA, eager",
)
GRPO_STEPS = 4  # the first one is start-up


def grpo_steps(device: str, era: bool, dry: bool) -> dict:
    from era_llm_app.config import TrainConfig
    from era_llm_app.train import grpo_step, start_run

    with tempfile.TemporaryDirectory(prefix="gpu-check-grpo-") as tmp:
        cfg = TrainConfig(
            out=str(Path(tmp) / "run"),
            steps=10_000,  # no end-of-run evaluation inside the timed steps
            eval_every=10_000,
            ckpt_every=10_000,
            warmup_steps=0,
            device=device,
            tensorboard=False,
            era=era,
            prompts_per_step=2 if dry else 16,
            group_size=2 if dry else 8,
            eval_size=4,
        )
        run = start_run(cfg)
        rows = [grpo_step(run, step) for step in range(1, GRPO_STEPS + 1)]
    times = [r["step_time_s"] for r in rows]
    return {
        "first_step_s": times[0],
        "step_s": statistics.median(times[1:]),
        "times": times,
        "rows": len(rows),
        "responses": cfg.prompts_per_step * cfg.group_size,
        "response_len_mean": rows[-1]["response_len_mean"],
        "scale_mean": rows[-1]["scale_mean"],
    }


def fused_case(case: str, shape: dict, device: str, reps: int) -> dict:
    """Liger's or Cut Cross-Entropy's fused linear cross-entropy: the scaled log-prob sum."""
    import torch

    if device != "cuda":
        return {"case": case, "skipped": "Triton kernels: CUDA only"}
    try:
        if case.startswith("liger"):
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            liger = LigerFusedLinearCrossEntropyLoss(reduction="sum")

            def loss_fn(h, w, y):
                return liger(w, h.flatten(0, 1), y.flatten())
        else:
            from cut_cross_entropy import linear_cross_entropy

            def loss_fn(h, w, y):
                return linear_cross_entropy(h, w, y, reduction="sum", filter_eps=None)
    except ImportError as err:
        return {"case": case, "skipped": f"not importable ({err.name}): its wheel was not carried"}
    torch.manual_seed(0)
    b, t, v, d = shape["batch"], shape["seq"], shape["vocab"], shape["hidden"]
    bf16 = {"device": device, "dtype": torch.bfloat16}
    labels = torch.randint(0, v, (b, t), device=device)
    scale = torch.ones(b, **bf16)
    scale[: b // 4], scale[b // 4 : b // 2] = 2.0, 0.5
    hidden = (torch.randn(b, t, d, **bf16) / d**0.5).requires_grad_(True)
    weight = torch.randn(v, d, **bf16).requires_grad_(True)

    def step() -> None:
        hidden.grad = weight.grad = None
        loss_fn(hidden * scale[:, None, None], weight, labels).backward()

    try:
        step()
        torch.cuda.synchronize()
        hidden.grad = weight.grad = None
        gc.collect()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        return {"case": case, "oom": True}
    peak = torch.cuda.max_memory_allocated() - base
    return {"case": case, "time_s": statistics.median(times), "times": times, "peak_bytes": peak}


def one_case(case: str, shape: dict, device: str, reps: int) -> dict:
    import torch

    try:
        if case.startswith(("liger", "cce")):
            return fused_case(case, shape, device, reps)
        return llm_ops.run_case(case, shape, device, reps)
    except Exception as err:  # one case's failure is recorded; the others still run
        return {"case": case, "error": f"{type(err).__name__}: {err}"[:300]}
    finally:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def kernel_table(report: Report, results: list[dict], shape: dict) -> None:
    title = (
        f"Log-probs + entropies, B{shape['batch']} × T{shape['seq']} × V{shape['vocab']} "
        f"(hidden {shape['hidden']}) bf16, forward + backward"
    )
    table = report.table(title, ["case", "time (median)", "peak memory", "vs ours ERA"])
    by = {r["case"]: r for r in results}
    ours = by.get("ours ERA", {})
    for r in results:
        if "time_s" in r:
            ratio = (
                f"{r['time_s'] / ours['time_s']:.2f}× time, "
                f"{r['peak_bytes'] / max(ours['peak_bytes'], 1):.2f}× memory"
                if "time_s" in ours
                else "n/a"
            )
            table.rows.append([r["case"], f"{1e3 * r['time_s']:.1f} ms",
                               llm_ops.fmt_mem(r["peak_bytes"]), ratio])  # fmt: skip
        else:
            what = "out of memory" if r.get("oom") else r.get("skipped") or r.get("error", "?")
            table.rows.append([r["case"], what, "—", "—"])


def run(report: Report) -> None:
    import torch

    dry = report.dry_run
    if dry:
        torch.set_num_threads(1)
        use_eager_compile()
    elif not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    device = "cpu" if dry else "cuda"
    grpo = {}
    for era in (True, False):
        grpo["grpo+era" if era else "grpo"] = grpo_steps(device, era, dry)
        report.results["grpo"] = grpo
        report.save()
    table = report.table(
        "GRPO step, era-llm-train's tiny model, HF rollout",
        ["method", "responses", "first step (s)", "step (s, median of the next)", "mean length"],
    )
    for name, g in grpo.items():
        table.rows.append([name, str(g["responses"]), f"{g['first_step_s']:.2f}",
                           f"{g['step_s']:.3f}", f"{g['response_len_mean']:.1f}"])  # fmt: skip
    shape, reps = (DRY_SHAPE, 2) if dry else (GPU_SHAPE, 5)
    results: list[dict] = []
    report.results["logprobs"] = {"shape": shape, "reps": reps, "cases": results}
    for case in CASES:
        results.append(one_case(case, shape, device, reps))
        report.save()
    kernel_table(report, results, shape)
    by = {r["case"]: r for r in results}
    ours, naive = by["ours ERA"], by["naive ERA"]
    speed = (
        f"naive/ours {naive['time_s'] / ours['time_s']:.2f}× time, "
        f"{naive['peak_bytes'] / max(ours['peak_bytes'], 1):.2f}× memory"
        if "time_s" in ours and "time_s" in naive
        else "naive vs ours: n/a"
    )
    report.headline = (
        f"GRPO+ERA step {grpo['grpo+era']['step_s']:.3f} s (plain {grpo['grpo']['step_s']:.3f} s); "
        f"log-probs {speed}"
    )
