"""`era-llm-train`'s configuration: the `TrainConfig` dataclass, its CLI and its validation.

Every hyper-parameter is a field of `TrainConfig`; `build_parser` maps the flags 1:1 onto the
fields (``--era-low`` -> ``era_low``). ERA's defaults are `ERAConfig`'s (the paper's band and
factor), the ``--loss`` choices are `era_llm.losses.LOSS_NAMES` and the ``--rollout`` choices
`era_llm.rollout.ROLLOUT_KINDS`. `validate` fails on bad input before any model is built or any
file is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from era_llm.era import ERAConfig
from era_llm.losses import LOSS_NAMES
from era_llm.rollout import ROLLOUT_KINDS
from era_llm.toy import ArithmeticTask, Problem

__all__ = [
    "ERA_FLAGS",
    "LOSSES",
    "PAPER_ERA",
    "TrainConfig",
    "build_parser",
    "config_from_args",
    "era_config",
    "load_jsonl_problems",
    "quick_preset",
    "validate",
]

PAPER_ERA = ERAConfig()  # the paper's ERA hyper-parameters (ERA-SPEC §3)
LOSSES = LOSS_NAMES
# ERAConfig field -> the flag that sets it (ERAConfig's errors name these).
ERA_FLAGS = {
    "low": "--era-low",
    "high": "--era-high",
    "k": "--era-k",
    "adv_scale": "--adv-scale",
    "logit_topk": "--era-topk",
}


@dataclass
class TrainConfig:
    out: str = "runs/llm"
    steps: int = 200
    seed: int = 0
    # policy: a local checkpoint, or the tiny built-in model
    model: str | None = None
    hidden_size: int = 64
    layers: int = 2
    device: str = "auto"
    threads: int = 0  # CPU threads; 0 = 1 for the built-in model on CPU, else torch's default
    rollout: str = "hf"  # hf | vllm
    # task: synthetic arithmetic, or a JSONL file with `prompt` and `answer` fields
    task_op: str = "+"
    min_digits: int = 1
    max_digits: int = 2
    data: str | None = None
    verifier: str = "auto"  # auto | exact | math
    prompt_template: str = "{prompt}"
    max_new_tokens: int | None = None
    # supervised warm-up (built-in model only by default)
    warmup_steps: int | None = None
    warmup_batch: int = 64
    warmup_lr: float = 3e-3
    # GRPO
    prompts_per_step: int = 16
    group_size: int = 8
    lr: float = 3e-4  # Adam's sign-like first steps at 1e-3 wreck the tiny model's warm-up
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    micro_batch: int = 0  # rows per backward pass; 0 = all at once
    loss: str = "grpo"
    # ERA (defaults: the paper's, from ERAConfig)
    era: bool = True
    era_low: float = PAPER_ERA.low
    era_high: float = PAPER_ERA.high
    era_k: float = PAPER_ERA.k
    era_topk: int = 20  # 0 = full softmax
    adv_scale: bool = PAPER_ERA.adv_scale
    # adaptive entropy bonus (off unless a target is given)
    entropy_bonus_target: float | None = None
    entropy_bonus_lr: float = 0.05
    # evaluation, logging, checkpoints
    eval_every: int = 10
    eval_size: int = 128
    ckpt_every: int = 10
    tensorboard: bool = True
    resume: bool = False
    quick: bool = False
    extra: dict = field(default_factory=dict)  # free-form tags (the comparison's method name)

    # Fields that may change when a run is resumed.
    RESUMABLE = ("steps", "resume", "eval_every", "ckpt_every", "tensorboard", "device", "threads")


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
    """The ``era-llm-train`` parser: one flag per `TrainConfig` field, plus the comparison's."""
    p = argparse.ArgumentParser(
        prog="era-llm-train",
        description="GRPO(+ERA) on a tiny built-in model (CPU) or a local checkpoint (GPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    _add_run_and_task_flags(p.add_argument, defaults)
    _add_grpo_era_and_logging_flags(p.add_argument, defaults)
    c = p.add_argument_group("comparison (GRPO vs GRPO+ERA vs adaptive entropy bonus)")
    c.add_argument(
        "--compare",
        action="store_true",
        help="run the three methods x --seeds into OUT/<method>/seed<N>/",
    )
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return p


def _add_run_and_task_flags(a, d: TrainConfig) -> None:
    a("--out", default=d.out, help="run directory")
    a("--steps", type=int, default=d.steps, help="GRPO steps")
    a("--seed", type=int, default=d.seed)
    a("--model", default=None, help="local HF checkpoint dir (default: tiny built-in model)")
    a("--hidden-size", type=int, default=d.hidden_size, help="built-in model width")
    a("--layers", type=int, default=d.layers, help="built-in model depth")
    a("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    a(
        "--threads",
        type=int,
        default=d.threads,
        help="CPU threads (0: 1 for the tiny model, whose ops are too small to split)",
    )
    a("--rollout", choices=ROLLOUT_KINDS, default=d.rollout, help="generation backend")
    a("--task-op", choices=("+", "-", "*"), default=d.task_op, help="synthetic task operator")
    a("--min-digits", type=int, default=d.min_digits)
    a("--max-digits", type=int, default=d.max_digits)
    a("--data", default=None, help="JSONL training prompts with 'prompt' and 'answer' fields")
    a(
        "--verifier",
        choices=("auto", "exact", "math"),
        default=d.verifier,
        help="auto: exact for the synthetic task, math (boxed answer, math-verify) for --data",
    )
    a("--prompt-template", default=d.prompt_template, help="format string with {prompt}")
    a("--max-new-tokens", type=int, default=None, help="default: answer length + 1 (task), 1024")
    a(
        "--warmup-steps",
        type=int,
        default=None,
        help="supervised warm-up steps (default 300 for the built-in model, 0 with --model)",
    )
    a("--warmup-batch", type=int, default=d.warmup_batch)
    a("--warmup-lr", type=float, default=d.warmup_lr)


def _add_grpo_era_and_logging_flags(a, d: TrainConfig) -> None:
    a("--prompts-per-step", type=int, default=d.prompts_per_step)
    a("--group-size", "-n", type=int, default=d.group_size, help="responses per prompt (n)")
    a("--lr", type=float, default=d.lr)
    a("--temperature", type=float, default=d.temperature, help="rollout temperature")
    a("--max-grad-norm", type=float, default=d.max_grad_norm)
    a("--micro-batch", type=int, default=d.micro_batch, help="rows per backward; 0 = all")
    a("--loss", choices=LOSS_NAMES, default=d.loss, help="policy loss (era_llm.losses)")
    a("--era", action=argparse.BooleanOptionalAction, default=d.era, help="adaptive ERA")
    a("--era-low", type=float, default=d.era_low, help="band lower bound omega_low (nats)")
    a("--era-high", type=float, default=d.era_high, help="band upper bound omega_high (nats)")
    a("--era-k", type=float, default=d.era_k, help="logit scale factor k > 1")
    a("--era-topk", type=int, default=d.era_topk, help="top-k logits in ERA's pass; 0 = all")
    a(
        "--adv-scale",
        action=argparse.BooleanOptionalAction,
        default=d.adv_scale,
        help="ERA advantage scaling A/c (Eq. 17)",
    )
    a(
        "--entropy-bonus-target",
        type=float,
        default=None,
        help="adaptive entropy bonus: steer the top-20%% response entropy toward this (nats)",
    )
    a(
        "--entropy-bonus-lr",
        type=float,
        default=d.entropy_bonus_lr,
        help="step size of the bonus coefficient",
    )
    a("--eval-every", type=int, default=d.eval_every, help="greedy held-out eval every N steps")
    a("--eval-size", type=int, default=d.eval_size)
    a("--ckpt-every", type=int, default=d.ckpt_every)
    a("--tensorboard", action=argparse.BooleanOptionalAction, default=d.tensorboard)
    a("--resume", action="store_true", help="continue OUT from its checkpoint")
    a("--quick", action="store_true", help="smoke-test budget")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    return quick_preset(cfg) if cfg.quick else cfg


def validate(cfg: TrainConfig) -> ERAConfig:
    """Raise ValueError / FileNotFoundError naming the flag, the value and the valid range.

    Returns the run's `ERAConfig` (whose own checks name the ``--era-*`` flags)."""
    if cfg.era_topk < 0:
        raise ValueError(f"--era-topk {cfg.era_topk} must be >= 0 (0 = full softmax)")
    era_cfg = era_config(cfg)
    positive = {
        "--steps": cfg.steps,
        "--prompts-per-step": cfg.prompts_per_step,
        "--eval-size": cfg.eval_size,
        "--warmup-batch": cfg.warmup_batch,
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
        ArithmeticTask(cfg.task_op, cfg.min_digits, cfg.max_digits)  # checks the digits
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


def load_jsonl_problems(path: str) -> list[Problem]:
    """Rows ``{"prompt": ..., "answer": ...}``; a missing file/field is a clear error."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--data {path}: no such file")
    problems = []
    with p.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--data {path}: line {lineno} is not JSON ({exc})") from exc
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
