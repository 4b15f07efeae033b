"""Benchmark: one training step of a timm classifier with and without the ERA head.

What it measures
----------------
One step = forward, label-smoothing cross-entropy (0.1, timm's default), backward and an SGD
(momentum 0.9) update, on fixed random images and labels, for

* ResNet-50 (the paper's vision model) and a ViT (vit_tiny_patch16_224 on CPU,
  vit_small_patch16_224 on CUDA), 1000 classes (ImageNet's head, ``H_min = 1.2``);
* three arms with identical initial weights: ``plain`` (``timm.create_model``), ``era-paper``
  and ``era-exact`` (the same model through ``era_vision.wrap``, ``mode="paper"``/``"exact"``).

Time: every arm is warmed up, then the arms are interleaved (order rotating each round) until
the case's budget is spent; a sample is ``n`` consecutive steps timed with
``time.perf_counter`` (CUDA: synchronised before reading the clock). The table gives each
arm's median step time and the median (with interquartile range) of the per-round ratios
ERA / plain, so drifts of a shared machine hit both arms alike.

Peak memory of one step (after a warm-up step, so optimizer state exists):

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` — the caching
  allocator's high-water mark of live tensor bytes during the step.
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus
  ``memory_allocated`` at the step's start.
* CPU: PyTorch keeps no CPU allocator statistics, and process RSS is a high-water mark that
  cannot be reset and includes freed pages malloc keeps. We run the step under
  ``torch.profiler`` with ``profile_memory=True``: the CPU allocator then reports every
  allocation and free, each ``[memory]`` event carrying the running total of bytes allocated
  since profiling started ("Total Allocated" in the exported trace); its maximum is the peak.

Both are the peak of bytes allocated *during* the step on top of what lives across steps
(parameters, optimizer state): activations, gradients and temporaries. The ERA head adds only
its elementwise temporaries on the (batch x 1000) logits.

Run ``python bench/vision_train_step.py`` on CPU (about 8 minutes on 2 cores), ``--quick``
(tiny sizes, a check of the script only), or ``--device cuda --amp`` on a GPU (bf16 autocast, larger
batches). ``--write-docs docs/benchmarks.md`` puts the table between the
``<!-- bench:vision:start -->`` and ``<!-- bench:vision:end -->`` markers.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from docs_section import write_section

import era_vision

NUM_CLASSES = 1000
MIN_ENTROPY = 1.2
ARMS = ("plain", "era-paper", "era-exact")


@dataclass
class Case:
    model: str
    batch: int
    img_size: int
    budget_s: float
    kwargs: dict = field(default_factory=dict)


def cases(device: str, quick: bool) -> list[Case]:
    if quick:
        return [
            Case("resnet50", 2, 32, 5.0),
            Case("vit_tiny_patch16_224", 2, 32, 5.0, {"img_size": 32}),
        ]
    if device == "cuda":
        return [
            Case("resnet50", 128, 224, 60.0),
            Case("vit_small_patch16_224", 128, 224, 60.0),
        ]
    return [
        Case("resnet50", 16, 224, 150.0),
        Case("vit_tiny_patch16_224", 32, 224, 90.0),
    ]


@dataclass
class Arm:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    samples: list[float] = field(default_factory=list)  # seconds per step
    peak_bytes: int = 0


def build_arms(
    case: Case, device: torch.device, channels_last: bool, compile: bool = False
) -> list[Arm]:
    torch.manual_seed(0)
    plain = timm.create_model(case.model, num_classes=NUM_CLASSES, **case.kwargs)
    arms = []
    for name in ARMS:
        model = copy.deepcopy(plain)
        if name != "plain":
            era_vision.wrap(model, MIN_ENTROPY, mode=name.removeprefix("era-"))
        model.to(device).train()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if compile:  # forward and backward through torch.compile (the optimizer stays eager)
            model = torch.compile(model)
        arms.append(Arm(name, model, optimizer))
    return arms


def make_step(arm: Arm, images, labels, device: torch.device, amp: bool):
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(arm.model(images), labels)
        arm.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        arm.optimizer.step()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_step_bytes(step, device: torch.device) -> int:
    """Peak bytes allocated during one step above those live at its start (see the docstring)."""
    gc.collect()
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    memory = [
        e["args"]
        for e in sorted(events, key=lambda e: e.get("ts", 0))
        if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0
    ]
    if not memory:
        return 0
    # the running total is process-wide: measure from its value just before the first event
    base = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return int(max(m["Total Allocated"] for m in memory) - base)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def measure(
    case: Case,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    sample_s: float,
    compile: bool = False,
):
    arms = build_arms(case, device, channels_last, compile)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(case.batch, 3, case.img_size, case.img_size, generator=g).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (case.batch,), generator=g).to(device)
    steps = {arm.name: make_step(arm, images, labels, device, amp) for arm in arms}
    for arm in arms:  # warm-up: creates optimizer state, allocator caches, kernels
        for _ in range(2):
            steps[arm.name]()
        sync(device)
        arm.optimizer.zero_grad(set_to_none=True)  # the step starts without gradients
        arm.peak_bytes = peak_step_bytes(steps[arm.name], device)
    start = time.perf_counter()
    steps[arms[0].name]()
    sync(device)
    one = time.perf_counter() - start
    n = max(1, round(sample_s / max(one, 1e-6)))
    ratios: dict[str, list[float]] = {arm.name: [] for arm in arms[1:]}
    deadline = time.perf_counter() + case.budget_s
    round_index = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while time.perf_counter() < deadline or round_index < 3:
            order = arms[round_index % len(arms) :] + arms[: round_index % len(arms)]
            this_round = {}
            for arm in order:
                sync(device)
                t0 = time.perf_counter()
                for _ in range(n):
                    steps[arm.name]()
                sync(device)
                this_round[arm.name] = (time.perf_counter() - t0) / n
                arm.samples.append(this_round[arm.name])
            for name in ratios:
                ratios[name].append(this_round[name] / this_round["plain"])
            round_index += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return arms, ratios, n


def environment(device: torch.device, threads: int, amp: bool) -> str:
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU {platform.processor() or platform.machine()}, {threads} threads"
    return (
        f"{where}; torch {torch.__version__}, timm {timm.__version__}, "
        f"Python {platform.python_version()}; {'bf16 autocast' if amp else 'float32'}"
    )


def command_line() -> str:
    args = [a for a in sys.argv[1:]]
    return (
        "python bench/vision_train_step.py " + shlex.join(args)
        if args
        else ("python bench/vision_train_step.py")
    )


def table(results) -> str:
    lines = [
        "| model | batch × size | arm | step (ms) | ratio ERA/plain (IQR) | peak step memory (MiB) "
        "| memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, arms, ratios, _n in results:
        plain = arms[0]
        for arm in arms:
            median = statistics.median(arm.samples) * 1e3
            if arm.name == "plain":
                ratio = "1"
            else:
                q1, q2, q3 = quartiles(ratios[arm.name])
                ratio = f"{q2:.3f} ({q1:.3f}–{q3:.3f})"
            mem_ratio = arm.peak_bytes / plain.peak_bytes if plain.peak_bytes else float("nan")
            lines.append(
                f"| {case.model} | {case.batch} × {case.img_size}² | {arm.name} | {median:.1f} "
                f"| {ratio} | {arm.peak_bytes / 2**20:.1f} | {mem_ratio:.3f} |"
            )
    rounds = ", ".join(f"{case.model}: {len(ratios['era-paper'])} rounds × {n} steps"
                       for case, _, ratios, n in results)  # fmt: skip
    return "\n".join(lines) + f"\n\nSamples: {rounds}."


def write_docs(path: Path, section: str) -> None:
    write_section(path, "vision", section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about 1 minute)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--sample-ms", type=float, default=None, help="length of one sample")
    parser.add_argument("--write-docs", type=Path, metavar="PATH", help="rewrite our section")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal weights/grads otherwise slow CPU steps ~3x
    threads = torch.get_num_threads()
    sample_s = (args.sample_ms or (300.0 if args.quick else 1500.0)) / 1e3
    results = []
    for case in cases(device.type, args.quick):
        print(f"measuring {case.model} (batch {case.batch}, {case.img_size}px) ...", flush=True)
        arms, ratios, n = measure(case, device, args.amp, args.channels_last, sample_s)
        results.append((case, arms, ratios, n))
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            "## era-vision: a training step with and without the ERA head",
            "",
            f"`{command_line()}` — {when}; {environment(device, threads, args.amp)}.",
            "",
            table(results),
            "",
            "* Step: forward, cross-entropy with label smoothing 0.1, backward, SGD momentum "
            f"update; {NUM_CLASSES} classes, ERA `H_min = {MIN_ENTROPY}`; random images/labels.",
            *(
                [
                    "* CPU: denormals flushed to zero (`torch.set_flush_denormal(True)`) in every "
                    "arm."
                ]
                if device.type == "cpu"
                else []
            ),
            "* Ratio: median over rounds of (ERA step time / plain step time) in the same round, "
            "with its interquartile range; arms interleaved, order rotating.",
            "* Peak step memory: the most bytes allocated during one step on top of those live "
            "at its start (parameters, optimizer state): activations, gradients, temporaries. "
            "CUDA: `max_memory_allocated` − `memory_allocated` at the start; CPU: the maximum "
            "running total of the CPU allocator's alloc/free events recorded by "
            "`torch.profiler(profile_memory=True)`.",
            *(
                [
                    "",
                    "This is a `--quick` check (tiny sizes, a few rounds), not the benchmark: "
                    "rerun without `--quick` (CPU: `uv run nox -s \"bench(domain='vision')\" -- "
                    "--write-docs docs/benchmarks.md`; GPU: `python bench/vision_train_step.py "
                    "--device cuda --amp --write-docs docs/benchmarks.md`) to replace it.",
                ]
                if args.quick
                else []
            ),
        ]
    )
    print(section)
    if args.write_docs:
        write_docs(args.write_docs, section)
        print(f"wrote {args.write_docs}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
