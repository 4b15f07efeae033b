"""`era-llm-eval`: math evaluation with mean@k / pass@k, greedy or sampled (paper Table 2).

    uv run era-llm-eval --model runs/llm-demo/model \\
        --data path/to/math-eval/math500.jsonl path/to/math-eval/aime24.jsonl \\
        --mode paper --k 16 --out runs/eval

For each data set (JSON lines; fields per `era_llm.verify.math_eval_item`), every question is
put in the prompt template (and the tokenizer's chat template, if it has one), ``k`` responses
are generated, and each is graded by `era_llm.verify.math_reward` (last ``\\boxed{}``,
symbolic equivalence by math-verify). Per set:

* ``mean@k``: mean accuracy over the ``k`` responses of each question, averaged over questions
  (the paper's AIME/AMC metric, with temperature sampling);
* ``pass@k``: the unbiased estimate ``1 - C(n-c, k) / C(n, k)`` with ``n = k`` samples, i.e.
  the share of questions with at least one correct response.

Modes: ``greedy`` (one greedy response; mean@1 = pass@1), ``sampled`` (k samples at
`--temperature`), ``paper`` (sampled for AIME24/AIME25/AMC23, greedy for the others, as the
paper reports). Output in ``OUT/``: ``results.md``, ``results.csv``, ``results.json`` (one row
per set plus the average) and ``responses/<set>.jsonl`` (every response and its grade).

``--model`` may also be an ``era-llm-train`` run directory of the built-in model: its
checkpoint, prompt format and exact verifier are used, ``--data`` defaults to its
``heldout.jsonl``, and sampled mode reports pass@1/4/8 from 8 draws (`era_llm_app.run_eval`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from era_core import threads
from era_core.cli import add_dataclass_arguments, dataclass_from_args, option
from era_core.runlog import atomic_write_text
from era_llm.rollout import ROLLOUT_KINDS, make_rollout
from era_llm.verify import math_reward
from era_llm_app.common import load_checkpoint
from era_llm_app.math_data import DATA_HINT
from era_llm_app.run_eval import evaluate_run, is_run_dir
from era_llm_app.scoring import load_items, pass_at_k, score_set

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# A format string: the question, then the instruction (its braces doubled).
DEFAULT_TEMPLATE = "{question}\n" + INSTRUCTION.replace("{", "{{").replace("}", "}}")
SAMPLED_IN_PAPER = ("aime24", "aime25", "amc23")
RESULT_COLUMNS = ("dataset", "items", "mode", "k", "mean_at_k", "pass_at_k", "seconds")


def score_item(responses: list[str], reference: str) -> tuple[list[float], float, float]:
    """Grades of `responses` against `reference`, and their mean@k and pass@k (k = n)."""
    grades = [math_reward(r, reference) for r in responses]
    n, c = len(grades), int(sum(grades))
    return grades, c / n, pass_at_k(n, c, n)


def _opt(default: Any = MISSING, help: str = "", **kwargs: Any) -> Any:
    """An `EvalConfig` field with its command-line form (`era_core.cli.option`); without a
    default, a required flag."""
    return field(default=default, metadata=option(help, **kwargs))


@dataclass
class EvalConfig:
    """One evaluation; one ``era-llm-eval`` flag per field (but ``top_p``)."""

    model: str = _opt(
        help="local checkpoint directory (save_pretrained), or an era-llm-train run directory"
    )
    data: list[str] = field(
        default_factory=list,
        metadata=option(
            "JSONL set(s), e.g. path/to/math-eval/math500.jsonl (make them with "
            "era-llm-eval-convert); needed for a checkpoint",
            default_text="a run directory's heldout.jsonl",
        ),
    )
    out: str = _opt("runs/eval", "results directory")
    mode: str = _opt(
        "greedy",
        "paper: sampled for AIME24/25 and AMC23, greedy for the rest",
        choices=("greedy", "sampled", "paper"),
    )
    k: int = _opt(4, "responses per question when sampling")
    temperature: float = _opt(1.0, "sampling temperature")
    top_p: float = _opt(1.0, cli=False)
    max_new_tokens: int = _opt(1024, "response length limit")
    limit: int | None = _opt(None, "first N questions of each set", default_text="all")
    batch_size: int = _opt(16, "questions per generate call")
    prompt_template: str = _opt(
        DEFAULT_TEMPLATE,
        "format string with {question} (write a literal brace twice)",
        default_text=f"the question, a new line, then '{INSTRUCTION}'",
    )
    chat_template: str = _opt(
        "auto",
        "wrap the prompt in the tokenizer's chat template (auto: if it has one)",
        choices=("auto", "on", "off"),
    )
    backend: str = _opt("hf", "generation backend", choices=ROLLOUT_KINDS)
    seed: int = _opt(0)
    threads: int = _opt(
        0, "CPU threads of torch and the BLAS pools (0: every usable core); in results.json"
    )


def build_prompt(question: str, tokenizer: Any, cfg: EvalConfig) -> str:
    text = cfg.prompt_template.format(question=question)
    use_chat = cfg.chat_template == "on" or (
        cfg.chat_template == "auto" and getattr(tokenizer, "chat_template", None)
    )
    if use_chat:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


def evaluate(cfg: EvalConfig, *, progress: bool = True) -> list[dict]:
    """Evaluate every data set of `cfg`; writes the tables and returns the result rows."""
    validate(cfg)
    if is_run_dir(cfg.model):  # a compact-trainer run: its model, prompts and verifier
        results, plan = evaluate_run(cfg, progress=progress)
        write_tables(Path(cfg.out), results, cfg, cpu_threads=plan.to_dict())
        return results
    datasets = {Path(p).stem: load_items(p, cfg.limit) for p in cfg.data}
    torch.manual_seed(cfg.seed)
    plan = threads.choose_threads(
        cfg.threads, default=threads.usable_cores(), reason="every usable core"
    )
    threads.apply_blas(plan)
    plan = threads.apply_torch(plan)
    model, tokenizer = load_checkpoint(cfg.model)
    if torch.cuda.is_available():
        model.to("cuda")
    rollout = make_rollout(cfg.backend, model, tokenizer, cfg.model)
    out = Path(cfg.out)
    (out / "responses").mkdir(parents=True, exist_ok=True)
    results = []
    for name, items in datasets.items():
        greedy = cfg.mode == "greedy" or (cfg.mode == "paper" and name not in SAMPLED_IN_PAPER)
        k = 1 if greedy else cfg.k

        def generate(prompts: list[str], k: int = k, greedy: bool = greedy) -> list[str]:
            return rollout.generate(
                prompts,
                k,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                greedy=greedy,
            ).texts

        def score(responses: list[str], reference: str, k: int = k) -> Any:
            grades, mean_k, pass_k = score_item(responses, reference)
            return grades, mean_k, {k: pass_k}

        mean, at_k, seconds = score_set(
            items,
            out / "responses" / f"{name}.jsonl",
            prompt=lambda q: build_prompt(q, tokenizer, cfg),
            generate=generate,
            score=score,
            batch_size=cfg.batch_size,
            progress=progress,
        )
        results.append(
            {
                "dataset": name,
                "items": len(items),
                "mode": "greedy" if greedy else f"sampled (T={cfg.temperature:g})",
                "k": k,
                "mean_at_k": mean,
                "pass_at_k": at_k[k],
                "seconds": seconds,
            }
        )
    results = with_average(results)
    write_tables(out, results, cfg, cpu_threads=plan.to_dict())
    return results


def with_average(results: list[dict]) -> list[dict]:
    """``results`` and, for more than one set, an ``Avg`` row (means of mean@k and pass@k)."""
    if len(results) > 1:
        results.append(
            {
                "dataset": "Avg",
                "items": sum(r["items"] for r in results),
                "mode": "",
                "k": "",
                "mean_at_k": float(np.mean([r["mean_at_k"] for r in results])),
                "pass_at_k": float(np.mean([r["pass_at_k"] for r in results])),
                "seconds": sum(r["seconds"] for r in results),
            }
        )
    return results


def write_tables(
    out: Path,
    results: list[dict],
    cfg: EvalConfig,
    *,
    cpu_threads: dict[str, Any] | None = None,
) -> None:
    """``results.csv``, ``results.json`` (with the config and the thread counts) and
    ``results.md``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_text(
        out / "results.json",
        json.dumps(
            {"config": asdict(cfg), "cpu_threads": cpu_threads, "results": results}, indent=2
        ),
    )
    lines = [
        f"# Evaluation of `{cfg.model}`",
        "",
        "mean@k: accuracy averaged over k responses per question; pass@k: share of questions "
        "with a correct response (in %). Greedy rows use one response.",
        "",
        "| dataset | items | mode | k | mean@k | pass@k |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['items']} | {r['mode']} | {r['k']} | "
            f"{r['mean_at_k']:.1f} | {r['pass_at_k']:.1f} |"
        )
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")


def validate(cfg: EvalConfig) -> None:
    if cfg.mode not in ("greedy", "sampled", "paper"):
        raise ValueError(f"--mode {cfg.mode!r} must be greedy, sampled or paper")
    if cfg.k < 1:
        raise ValueError(f"--k {cfg.k} must be >= 1")
    if not cfg.temperature > 0:
        raise ValueError(f"--temperature {cfg.temperature} must be > 0")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"--limit {cfg.limit} must be >= 1")
    if cfg.batch_size < 1:
        raise ValueError(f"--batch-size {cfg.batch_size} must be >= 1")
    if cfg.threads < 0:
        raise ValueError(f"--threads {cfg.threads} must be >= 0 (0: every usable core)")
    if cfg.seed < 0:
        raise ValueError(f"--seed {cfg.seed} must be >= 0")
    if "{question}" not in cfg.prompt_template:
        raise ValueError(f"--prompt-template {cfg.prompt_template!r} must contain {{question}}")
    path = Path(cfg.model)
    if not path.is_dir():
        raise FileNotFoundError(f"--model {cfg.model}: no such directory")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"--model {cfg.model}: not a checkpoint (no config.json)")
    if is_run_dir(path):
        _check_run_dir_flags(cfg)
    elif not cfg.data:
        raise ValueError(f"--model {cfg.model} is a checkpoint: --data is required. {DATA_HINT}")
    if cfg.backend == "vllm" and not torch.cuda.is_available():
        raise ValueError("--backend vllm needs a CUDA GPU; use --backend hf on CPU")
    for p in cfg.data:
        if not Path(p).is_file():
            raise FileNotFoundError(f"--data {p}: no such file")


# flags a compact-trainer run directory takes from the run itself (`era_llm_app.run_eval`)
RUN_DIR_FIXED = (
    "k",
    "temperature",
    "max_new_tokens",
    "prompt_template",
    "chat_template",
    "backend",
)


def _check_run_dir_flags(cfg: EvalConfig) -> None:
    """A run directory is scored with its own sampling settings: a flag that would change them
    is refused rather than ignored, and so is ``--mode paper`` (it names the paper's math sets)."""
    defaults = EvalConfig(model=cfg.model)
    for name in RUN_DIR_FIXED:
        value = getattr(cfg, name)
        if value != getattr(defaults, name):
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"{flag} {value!r}: --model {cfg.model} is a compact-trainer run, scored with "
                "the run's own prompt template, temperature and response length (8 samples, "
                f"pass@1/4/8); drop {flag}"
            )
    if cfg.mode == "paper":
        raise ValueError(
            f"--mode paper: --model {cfg.model} is a compact-trainer run; use --mode greedy or sampled"
        )


class _EvalParser(argparse.ArgumentParser):
    """An argparse parser whose error for a missing ``--data`` says where the sets come from."""

    def error(self, message: str) -> NoReturn:
        if "--data" in message and "required" in message:
            message = f"{message}. {DATA_HINT}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``era-llm-eval`` parser, generated from `EvalConfig` (`era_core.cli`)."""
    parser = _EvalParser(
        prog="era-llm-eval",
        description="mean@k / pass@k on math sets (math-verify grading), greedy or sampled.",
        epilog=DATA_HINT,
    )
    add_dataclass_arguments(parser, EvalConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg: EvalConfig = dataclass_from_args(EvalConfig, args)
    try:
        results = evaluate(cfg)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        parser.error(str(exc))
    print((Path(cfg.out) / "results.md").read_text())
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
