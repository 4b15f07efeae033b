"""GPU check, section ``vision``: one training step of timm classifiers, plain vs ERA (torch).

`bench/vision_train_step.py`'s measurement (`measure`: three arms with identical initial
weights -- ``plain``, ``era-paper``, ``era-exact`` through `era_vision.wrap` -- warmed up, then
interleaved with the order rotating; peak step memory from ``max_memory_allocated``), here
with bf16 autocast, channels-last images and weights, and every model through
``torch.compile`` (forward and backward; the SGD step stays eager):

* ResNet-50 (the paper's vision model), batch 128 at 224 px;
* ViT-S/16 (``vit_small_patch16_224``), batch 128 at 224 px.

Reported per arm: median step time, the median (IQR) of the per-round ratio ERA / plain, the
peak memory of one step above what lives across steps, and its ratio to plain. The dry run
uses timm's tiny ``test_resnet`` / ``test_vit`` at 32 px on the CPU.
"""

from __future__ import annotations

import statistics

import vision_train_step as vts
from gpu_check_common import Report, use_eager_compile

GPU_CASES = (
    vts.Case("resnet50", 128, 224, 12.0),
    vts.Case("vit_small_patch16_224", 128, 224, 12.0),
)
DRY_CASES = (
    vts.Case("test_resnet", 2, 32, 0.5),
    vts.Case("test_vit", 2, 32, 0.5, {"img_size": 32}),
)


def run(report: Report) -> None:
    import torch

    dry = report.dry_run
    if dry:
        torch.set_num_threads(1)
        use_eager_compile()
    elif not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    else:
        torch.backends.cudnn.benchmark = True
    device = torch.device("cpu" if dry else "cuda")
    report.results["device"] = torch.cuda.get_device_name(device) if not dry else "cpu"
    table = report.table(
        "Train step, bf16 autocast + channels-last + torch.compile",
        ["model", "batch × size", "arm", "step (ms)", "ratio ERA/plain (IQR)",
         "peak step memory (MiB)", "memory ratio"],
    )  # fmt: skip
    headline = []
    for case in DRY_CASES if dry else GPU_CASES:
        arms, ratios, n = vts.measure(case, device, True, True, 0.02 if dry else 0.4, True)
        plain = arms[0]
        result = {}
        for arm in arms:
            median = statistics.median(arm.samples)
            mem_ratio = arm.peak_bytes / plain.peak_bytes if plain.peak_bytes else None
            q1, q2, q3 = vts.quartiles(ratios[arm.name]) if arm.name in ratios else (1, 1, 1)
            result[arm.name] = {"step_s": median, "samples": arm.samples, "ratio": q2,
                                "ratio_iqr": [q1, q3], "peak_bytes": arm.peak_bytes,
                                "memory_ratio": mem_ratio}  # fmt: skip
            table.rows.append(
                [case.model, f"{case.batch} × {case.img_size}²", arm.name, f"{1e3 * median:.2f}",
                 "1" if arm.name == "plain" else f"{q2:.3f} ({q1:.3f}–{q3:.3f})",
                 f"{arm.peak_bytes / 2**20:.1f}",
                 "n/a" if mem_ratio is None else f"{mem_ratio:.3f}"]
            )  # fmt: skip
        report.results[case.model] = {"batch": case.batch, "img_size": case.img_size,
                                      "rounds": len(ratios["era-paper"]), "steps_per_sample": n,
                                      "arms": result}  # fmt: skip
        paper, exact = result["era-paper"]["ratio"], result["era-exact"]["ratio"]
        headline.append(f"{case.model} ERA/plain {paper:.3f} (paper), {exact:.3f} (exact)")
        report.headline = "; ".join(headline)
        report.save()
        del arms
        if not dry:
            torch.cuda.empty_cache()
    report.notes.append(
        "step: forward, cross-entropy (label smoothing 0.1), backward, SGD momentum 0.9; "
        "1000 classes, ERA H_min = 1.2; random images and labels"
    )
    report.notes.append(
        "peak step memory: max_memory_allocated during one step minus memory_allocated at its "
        "start (parameters and optimizer state excluded)"
    )
