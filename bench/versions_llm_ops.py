"""Benchmark: ``era_llm.ops`` at an earlier commit vs the working tree, side by side in one run.

For checking that a change to the ops is not a slowdown. Each version runs in its own
subprocess with its own ``packages/era-llm/src`` first on ``sys.path`` (the earlier one is
extracted with ``git archive``); rounds alternate the order of the two versions, so a change in
the machine's load hits both alike. A subprocess times forward + backward of ``sum(logprobs)``
on bfloat16 logits ``[B, T, V]`` that require grad, ERA scales ``c = (2, 0.5, 1, 1, ...)`` per
response, one torch thread, after an untimed warm-up step (which also compiles).

Usage::

    uv run --package era-llm python bench/versions_llm_ops.py --ref 609d361
    uv run --package era-llm python bench/versions_llm_ops.py --ref HEAD~3 --rounds 5 --cases eager

Not part of ``nox -s bench``: it compares two versions, it does not measure one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "eager": {"scale": True, "compile": False},
    "eager plain": {"scale": False, "compile": False},
    "eager top-k 20": {"scale": True, "compile": False, "topk": 20},
    "compiled": {"scale": True, "compile": True},
}

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from era_llm.ops import token_logprobs
B, T, V, reps, case = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
torch.manual_seed(0)
logits = torch.randn(B, T, V, dtype=torch.bfloat16).mul_(3).requires_grad_(True)
labels = torch.randint(0, V, (B, T))
scale = torch.tensor([(2.0, 0.5, 1.0, 1.0)[b % 4] for b in range(B)])
kw = {"compile": case["compile"], "scale": scale if case["scale"] else None}
if "topk" in case:
    kw["topk"] = case["topk"]
def step():
    logits.grad = None
    token_logprobs(logits, labels, **kw).logprobs.sum().backward()
step()
times = []
for _ in range(reps):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def extract(ref: str, into: Path) -> Path:
    """``packages/era-llm/src`` of commit ``ref``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "packages/era-llm/src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "packages" / "era-llm" / "src"


def time_version(src: Path, shape: tuple[int, int, int], reps: int, case: dict) -> list[float]:
    env = {"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-c", CHILD, *map(str, shape), str(reps), json.dumps(case)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--shape", default="4,512,32000", help="B,T,V (default: 4,512,32000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    parser.add_argument("--reps", type=int, default=3, help="timed steps per round (default: 3)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        versions = {
            args.ref: extract(args.ref, Path(tmp)),
            "working tree": ROOT / "packages/era-llm/src",
        }
        print(f"| case | {args.ref} median ms | working tree median ms | ratio |")
        print("|---|---|---|---|")
        for name in args.cases.split(","):
            times: dict[str, list[float]] = {v: [] for v in versions}
            for r in range(args.rounds):
                order = list(versions) if r % 2 == 0 else list(versions)[::-1]
                for version in order:
                    times[version] += time_version(versions[version], shape, args.reps, CASES[name])
            old, new = (statistics.median(times[v]) for v in versions)
            print(f"| {name} | {old * 1e3:.0f} | {new * 1e3:.0f} | {new / old:.3f} |", flush=True)


if __name__ == "__main__":
    main()
