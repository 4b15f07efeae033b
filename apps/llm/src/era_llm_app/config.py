"""`era-llm-train`'s configuration: the `TrainConfig` dataclass, its CLI and its validation.

Every hyper-parameter is a field of `TrainConfig`, and each field's metadata
(`era_core.cli.option`) says its flag, help and choices; `build_parser` generates the parser
from it (``--era-low`` -> ``era_low``), plus the comparison's flags (`CompareOptions`). ERA's
defaults are `ERAConfig`'s (the paper's band and factor), the ``--loss`` choices are
`era_llm.losses.LOSS_NAMES` and the ``--rollout`` choices `era_llm.rollout.ROLLOUT_KINDS`.
`validate` fails on bad input before any model is built or any file is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from era_core.cli import add_dataclass_arguments, dataclass_from_args, option
from era_llm.era import ERAConfig
from era_llm.losses import LOSS_NAMES
from era_llm.rollout import ROLLOUT_KINDS
from era_llm.toy import ArithmeticTask, Problem, SplitTask
from era_llm_app.jsonl import read_objects

__all__ = [
    "ERA_FLAGS",
    "LOSSES",
    "PAPER_ERA",
    "CompareOptions",
    "TrainConfig",
    "build_parser",
    "compare_options",
    "config_from_args",
    "era_config",
    "load_jsonl_problems",
    "quick_preset",
    "synthetic_task",
    "validate",
]

PAPER_ERA = ERAConfig()  # the paper's ERA hyper-parameters (docs/paper.md §3)
LOSSES = LOSS_NAMES
# ERAConfig field -> the flag that sets it (ERAConfig's errors name these).
ERA_FLAGS = {
    "low": "--era-low",
    "high": "--era-high",
    "k": "--era-k",
    "adv_scale": "--adv-scale",
    "logit_topk": "--era-topk",
}


def _opt(default: Any, help: str = "", **kwargs: Any) -> Any:
    """A `TrainConfig` field with its command-line form (`era_core.cli.option`)."""
    return field(default=default, metadata=option(help, **kwargs))


@dataclass
class TrainConfig:
    """Every hyper-parameter of one run; one ``era-llm-train`` flag per field."""

    out: str = _opt("runs/llm", "run directory")
    steps: int = _opt(200, "GRPO steps")
    seed: int = _opt(0)
    # policy: a local checkpoint, or the tiny built-in model
    model: str | None = _opt(
        None, "local HF checkpoint dir", default_text="the tiny built-in model"
    )
    hidden_size: int = _opt(64, "built-in model width")
    layers: int = _opt(2, "built-in model depth")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = _opt(
        0,
        "CPU threads of torch and the BLAS pools (0: the resumed run's count, else 1 for the "
        "tiny model, whose ops are too small to split, else every usable core); recorded in "
        "config.json (cpu_threads)",
    )
    rollout: str = _opt("hf", "generation backend", choices=ROLLOUT_KINDS)
    # task: synthetic arithmetic, or a JSONL file with `prompt` and `answer` fields
    task_op: str = _opt(
        "+",
        "synthetic task operator; split: 'N=' -> any 'a+b' with a+b=N (several valid answers)",
        choices=("+", "-", "*", "split"),
    )
    min_digits: int = _opt(1)
    max_digits: int = _opt(2)
    data: str | None = _opt(
        None,
        "JSONL training prompts with 'prompt' and 'answer' fields",
        default_text="the synthetic task",
    )
    verifier: str = _opt(
        "auto",
        "auto: exact for the synthetic task, math (boxed answer, math-verify) for --data",
        choices=("auto", "exact", "math"),
    )
    prompt_template: str = _opt("{prompt}", "format string with {prompt}")
    max_new_tokens: int | None = _opt(
        None, "response length limit", default_text="answer length + 1 (task), 1024 (--data)"
    )
    # supervised warm-up (built-in model only by default)
    warmup_steps: int | None = _opt(
        None,
        "supervised warm-up steps",
        default_text="300 for the built-in model, 0 with --model",
    )
    warmup_batch: int = _opt(64)
    warmup_lr: float = _opt(3e-3)
    # GRPO
    prompts_per_step: int = _opt(16)
    group_size: int = _opt(8, "responses per prompt (n)", aliases=("-n",))
    # Adam's sign-like first steps at 1e-3 wreck the tiny model's warm-up
    lr: float = _opt(3e-4)
    temperature: float = _opt(1.0, "rollout temperature")
    max_grad_norm: float = _opt(1.0)
    micro_batch: int = _opt(0, "rows per backward; 0 = all")
    loss: str = _opt("grpo", "policy loss (era_llm.losses)", choices=LOSS_NAMES)
    # ERA (defaults: the paper's, from ERAConfig)
    era: bool = _opt(True, "adaptive ERA")
    era_low: float = _opt(PAPER_ERA.low, "band lower bound omega_low (nats)")
    era_high: float = _opt(PAPER_ERA.high, "band upper bound omega_high (nats)")
    era_k: float = _opt(PAPER_ERA.k, "logit scale factor k > 1")
    era_topk: int = _opt(20, "top-k logits in ERA's pass; 0 = all")
    adv_scale: bool = _opt(PAPER_ERA.adv_scale, "ERA advantage scaling A/c (Eq. 17)")
    # adaptive entropy bonus (off unless a target is given)
    entropy_bonus_target: float | None = _opt(
        None,
        "adaptive entropy bonus: steer the top-20% response entropy toward this (nats)",
        default_text="off",
    )
    entropy_bonus_lr: float = _opt(0.05, "step size of the bonus coefficient")
    # evaluation, logging, checkpoints
    eval_every: int = _opt(10, "greedy held-out eval every N steps")
    eval_size: int = _opt(128)
    ckpt_every: int = _opt(10)
    tensorboard: bool = _opt(True)
    resume: bool = _opt(False, "continue OUT from its checkpoint", action="store_true")
    quick: bool = _opt(False, "smoke-test budget", action="store_true")
    # free-form tags (the comparison's method name)
    extra: dict = field(default_factory=dict, metadata=option(cli=False))

    # Fields that may change when a run is resumed.
    RESUMABLE = ("steps", "resume", "eval_every", "ckpt_every", "tensorboard", "device", "threads")


COMPARISON = "comparison (GRPO vs GRPO+ERA vs adaptive entropy bonus)"


@dataclass
class CompareOptions:
    """``--compare`` and ``--seeds``: the flags of `era_llm_app.compare` (not run settings)."""

    compare: bool = _opt(
        False,
        "run the three methods x --seeds into OUT/<method>/seed<N>/",
        action="store_true",
        group=COMPARISON,
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata=option(group=COMPARISON))
    pass_at_k_prompts: int = _opt(
        0,
        "after the runs, each run's pass@1/4/8 from 8 sampled responses to each of its first N "
        "held-out prompts (era-llm-eval --mode sampled on the run); 0: off",
        group=COMPARISON,
        metavar="N",
    )


def quick_preset(cfg: TrainConfig) -> TrainConfig:
    """`--quick`: a smoke-test budget (seconds on CPU)."""
    return dataclasses.replace(
        cfg,
        warmup_steps=min(cfg.warmup_steps or 40, 40),
        prompts_per_step=min(cfg.prompts_per_step, 8),
        group_size=min(cfg.group_size, 4),
        eval_size=min(cfg.eval_size, 32),
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``era-llm-train`` parser: one flag per `TrainConfig` field (`era_core.cli`), then
    the comparison's (`CompareOptions`)."""
    parser = argparse.ArgumentParser(
        prog="era-llm-train",
        description="GRPO(+ERA) on a tiny built-in model (CPU) or a local checkpoint (GPU).",
    )
    add_dataclass_arguments(parser, TrainConfig)
    add_dataclass_arguments(parser, CompareOptions)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig` from parsed flags (`--quick` applied)."""
    cfg: TrainConfig = dataclass_from_args(TrainConfig, args)
    return quick_preset(cfg) if cfg.quick else cfg


def compare_options(args: argparse.Namespace) -> CompareOptions:
    """``--compare`` / ``--seeds`` from parsed flags."""
    return dataclass_from_args(CompareOptions, args)


def validate(cfg: TrainConfig) -> ERAConfig:
    """Raise ValueError / FileNotFoundError naming the flag, the value and the valid range.

    Returns the run's `ERAConfig` (whose own checks name the ``--era-*`` flags)."""
    if cfg.era_topk < 0:
        raise ValueError(f"--era-topk {cfg.era_topk} must be >= 0 (0 = full softmax)")
    if cfg.seed < 0:
        raise ValueError(f"--seed {cfg.seed} must be >= 0")
    if cfg.threads < 0:
        raise ValueError(f"--threads {cfg.threads} must be >= 0 (0: the app's choice)")
    era_cfg = era_config(cfg)
    positive = {
        "--steps": cfg.steps,
        "--prompts-per-step": cfg.prompts_per_step,
        "--eval-size": cfg.eval_size,
        "--warmup-batch": cfg.warmup_batch,
        "--eval-every": cfg.eval_every,
        "--ckpt-every": cfg.ckpt_every,
    }
    for flag, value in positive.items():
        if value < 1:
            raise ValueError(f"{flag} {value} must be >= 1")
    if cfg.group_size < 2:
        raise ValueError(f"--group-size {cfg.group_size} must be >= 2 (GRPO compares a group)")
    for flag, value in {"--lr": cfg.lr, "--temperature": cfg.temperature}.items():
        if not value > 0:
            raise ValueError(f"{flag} {value} must be > 0")
    if cfg.loss not in LOSS_NAMES:
        raise ValueError(f"--loss {cfg.loss!r} must be one of {LOSS_NAMES}")
    if cfg.entropy_bonus_target is not None and cfg.entropy_bonus_target < 0:
        raise ValueError(f"--entropy-bonus-target {cfg.entropy_bonus_target} must be >= 0")
    if cfg.model is not None:
        path = Path(cfg.model)
        if not path.is_dir():
            raise FileNotFoundError(f"--model {cfg.model}: no such directory")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--model {cfg.model}: not a checkpoint (no config.json)")
    if cfg.data is None:
        synthetic_task(cfg)  # checks the digits
    else:
        load_jsonl_problems(cfg.data)
    if cfg.rollout == "vllm":
        if cfg.model is None:
            raise ValueError("--rollout vllm needs --model PATH (vLLM loads a checkpoint dir)")
        if not torch.cuda.is_available():
            raise ValueError("--rollout vllm needs a CUDA GPU; use --rollout hf on CPU")
        if importlib.util.find_spec("vllm") is None:
            raise ImportError(
                "--rollout vllm needs vLLM: `uv sync --package era-llm-app --extra vllm`"
            )
    if "{prompt}" not in cfg.prompt_template:
        raise ValueError(f"--prompt-template {cfg.prompt_template!r} must contain {{prompt}}")
    return era_cfg


def era_config(cfg: TrainConfig) -> ERAConfig:
    """The run's `ERAConfig`; a bad band or factor fails with ERAConfig's own message, which
    names the flags (``--era-low 3.0 must be < --era-high 0.45 ...``)."""
    return ERAConfig.checked(
        ERA_FLAGS,
        low=cfg.era_low,
        high=cfg.era_high,
        k=cfg.era_k,
        adv_scale=cfg.adv_scale,
        logit_topk=cfg.era_topk or None,
    )


def synthetic_task(cfg: TrainConfig) -> ArithmeticTask | SplitTask:
    """The synthetic task of ``--task-op`` and ``--min-digits`` / ``--max-digits``."""
    if cfg.task_op == "split":
        return SplitTask(cfg.min_digits, cfg.max_digits)
    return ArithmeticTask(cfg.task_op, cfg.min_digits, cfg.max_digits)


def load_jsonl_problems(path: str) -> list[Problem]:
    """Rows ``{"prompt": ..., "answer": ...}``; a missing file/field is a clear error."""
    problems = []
    for lineno, row in read_objects(path):
        missing = [k for k in ("prompt", "answer") if row.get(k) in (None, "")]
        if missing:
            raise ValueError(
                f"--data {path}: line {lineno} lacks field(s) {missing}; every row needs "
                f"'prompt' and 'answer' (got {sorted(row)})"
            )
        problems.append(Problem(str(row["prompt"]), str(row["answer"])))
    if not problems:
        raise ValueError(f"--data {path}: no rows")
    return problems
