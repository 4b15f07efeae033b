"""Benchmark: verl's old-log-prob pass with and without ERA, in verl's own FSDP engine code.

One old-log-prob pass over a batch, micro-batch by micro-batch, through
``FSDPEngineWithLMHead.forward_step`` (verl's code; the engine is ERA's subclass,
``era_llm.integrations.verl_engine``) on a tiny Qwen2 built from a config, on CPU. Cases,
interleaved repetition by repetition (so a load change on the machine hits every case alike):

* ``verl, ERA off``: verl's own pass (log-probs and entropies at the rollout temperature);
* ``ERA, one pass``: ERA's engine pass: the same forward gives verl's fields plus the old
  log-probs under the scales ``k`` and ``1/k`` (what the ERA trainer does now);
* ``ERA, two passes``: verl's pass, then a second forward at the per-response temperature
  ``T / c`` (what an engine without ERA's pass needs).

Reported: median and fastest time per pass, and the ratios to ``verl, ERA off`` (goal for the
one-pass path: <= 1.10). The model is tiny (its vocabulary costs far more, relative to its
body, than a 7B model's), so the ratio here is an upper bound on a real run's.

Usage::

    python bench/llm_verl_old_logprob.py            # B8 x L512, micro-batch 4, 5 repetitions
    python bench/llm_verl_old_logprob.py --quick    # B4 x L128, micro-batch 2, 2 repetitions
    python bench/llm_verl_old_logprob.py --write-docs docs/benchmarks.md

Needs verl (``uv run nox -s llm-verl`` syncs an environment with it; run this script with
that environment's python); without verl it says so and exits 0. ``--write-docs`` rewrites
the section between ``<!-- bench:llm-verl-old-logprob:start -->`` and its end marker.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from docs_section import write_section

SHAPES = {
    "full": {"batch": 8, "length": 512, "micro": 4, "reps": 5},
    "quick": {"batch": 4, "length": 128, "micro": 2, "reps": 2},
}
MODEL = {"vocab": 32_000, "hidden": 256, "layers": 4, "intermediate": 688}
TEMPERATURE, K, GOAL = 1.0, 2.0, 1.10
CASES = ("verl, ERA off", "ERA, one pass", "ERA, two passes")


def build_engine():
    """ERA's engine class around a tiny Qwen2, its device lookups pointed at the CPU."""
    import torch
    import verl.utils.torch_functional as verl_F
    import verl.workers.engine.fsdp.transformer_impl as impl
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from era_llm.integrations.verl_engine import engine_class

    impl.get_device_id = lambda: "cpu"  # pyright: ignore[reportAttributeAccessIssue]
    impl.get_device_name = lambda: "cpu"  # pyright: ignore[reportAttributeAccessIssue]
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=MODEL["vocab"],
        hidden_size=MODEL["hidden"],
        intermediate_size=MODEL["intermediate"],
        num_hidden_layers=MODEL["layers"],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    cls = engine_class()
    eng = cls.__new__(cls)
    eng.module = Qwen2ForCausalLM(config).float().eval()
    eng._autocast_dtype = torch.float32
    eng.pad_to_length = False
    eng.use_ulysses_sp = False
    eng.ulysses_sequence_parallel_size = 1
    eng.engine_config = SimpleNamespace(
        entropy_from_logits_with_chunking=False, entropy_checkpointing=False
    )
    eng.compute_entropy_from_logits = verl_F.entropy_from_logits
    return eng


def micro_batches(shape: dict) -> list[list]:
    import torch

    gen = torch.Generator().manual_seed(1)
    seqs = [
        torch.randint(0, MODEL["vocab"], (shape["length"],), generator=gen)
        for _ in range(shape["batch"])
    ]
    return [seqs[i : i + shape["micro"]] for i in range(0, len(seqs), shape["micro"])]


def one_pass(eng, batches: list[list], case: str) -> None:
    import torch
    from verl.utils import tensordict_utils as tu

    from era_llm.integrations.verl_engine import PASS_KEY

    def forward(seqs, temperature, flags):
        tensors = {
            "input_ids": torch.nested.as_nested_tensor(seqs, layout=torch.jagged),
            "position_ids": torch.nested.as_nested_tensor(
                [torch.arange(len(s)) for s in seqs], layout=torch.jagged
            ),
        }
        if isinstance(temperature, torch.Tensor):
            tensors["temperature"] = temperature
        else:
            flags = {**flags, "temperature": temperature}
        mb = tu.get_tensordict(tensor_dict=tensors, non_tensor_dict=flags)
        eng.forward_step(mb, loss_function=None, forward_only=True)

    with torch.no_grad():
        for seqs in batches:
            flags = {"calculate_entropy": True}
            if case == "ERA, one pass":
                flags[PASS_KEY] = K
            forward(seqs, TEMPERATURE, flags)
        if case == "ERA, two passes":  # the second pass, after the advantages
            for seqs in batches:
                t = torch.full((len(seqs),), TEMPERATURE / K)
                forward(seqs, t, {"calculate_entropy": False})


def measure(shape: dict, reps: int) -> dict[str, list[float]]:
    eng = build_engine()
    batches = micro_batches(shape)
    for case in CASES:  # warm-up
        one_pass(eng, batches, case)
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(reps):
        for case in CASES:
            start = time.perf_counter()
            one_pass(eng, batches, case)
            times[case].append(time.perf_counter() - start)
    return times


def table(
    times: dict[str, list[float]], shape: dict, command: str, threads: int, quick: bool
) -> str:
    base = statistics.median(times[CASES[0]])
    lines = [
        "### verl: the old-log-prob pass with and without ERA (cpu)",
        "",
        f"Batch {shape['batch']} × length {shape['length']} in micro-batches of "
        f"{shape['micro']}; Qwen2 with {MODEL['layers']} layers, hidden size {MODEL['hidden']}, "
        f"vocabulary {MODEL['vocab']} (float32); verl's `FSDPEngineWithLMHead.forward_step`. "
        f"`{command}`, {datetime.date.today().isoformat()}, {platform.machine()}, torch threads "
        f"{threads}.",
        "",
        "| case | time (median) | time (fastest) | / verl, ERA off |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        med = statistics.median(times[case])
        lines.append(f"| {case} | {med:.3f} s | {min(times[case]):.3f} s | {med / base:.2f}× |")
    ratio = statistics.median(times["ERA, one pass"]) / base
    verdict = "met" if ratio <= GOAL else "not met"
    lines += ["", f"* ERA overhead, one pass / ERA off: {ratio:.2f}× (goal ≤ {GOAL:g}×: {verdict})"]
    if quick:
        lines += [
            "",
            "This is a `--quick` check (small batch, two repetitions), not the benchmark: rerun "
            "without `--quick` on a quiet machine to replace it.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batch, 2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per case")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--write-docs", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    try:
        import verl.workers.engine.fsdp.transformer_impl  # noqa: F401
    except ImportError as err:
        print(f"skipped: verl's FSDP engine is not importable here ({err})", file=sys.stderr)
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = SHAPES["quick" if args.quick else "full"]
    times = measure(shape, args.reps or shape["reps"])
    command = "python bench/llm_verl_old_logprob.py" + (" --quick" if args.quick else "")
    section = table(times, shape, command, torch.get_num_threads(), args.quick)
    print(section)
    if args.write_docs:
        write_section(args.write_docs, "llm-verl-old-logprob", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
