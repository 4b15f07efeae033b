"""`era-llm-train`: a compact GRPO(+ERA) trainer, readable top to bottom.

    uv run era-llm-train --steps 3 --out runs/llm-demo          # CPU, tiny model, seconds

One step (ERA-SPEC §3): draw `prompts_per_step` prompts, sample `group_size` responses each
from the unmodified policy (temperature 1), grade them with a verifier (reward 0/1), compute
group-normalised advantages, drop groups whose rewards are all equal (dynamic sampling), and
take one on-policy gradient step (train batch = mini batch, so old log-probs are the current
ones, detached; no KL loss, no entropy bonus). With ERA, each response's logits are scaled by
``c in {k, 1, 1/k}`` chosen from its top-20 % token entropy and its advantage before the
log-probs enter the loss (`era_llm.era.era_scales`, `era_llm.ops.token_logprobs`).

Baselines from the same loop: `--no-era` (plain GRPO), `--loss` (GSPO, clip-higher, KL-Cov,
Clip-Cov, 20 % forking tokens: `era_llm.losses`), and `--entropy-bonus-target H`: the
loss-side alternative, an entropy bonus whose coefficient is steered toward a target entropy.

Without `--model`, the policy is a tiny Qwen3 built from a config with a character tokenizer
(`era_llm.toy`), first taught the answer format by a short supervised warm-up (logged to
``OUT/warmup/``), then trained by GRPO on synthetic arithmetic (exact-match reward).

Outputs in ``OUT/``: ``config.json``, ``metrics.csv``/``metrics.jsonl``/``tb/`` (one row per
step), ``checkpoint.pt`` (model, optimiser, RNG: exact resume with `--resume`), and at the end
``model/`` (save_pretrained: `era-llm-eval --model OUT/model`), ``entropy.png``,
``reward.png``, ``summary.json`` and ``DONE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from era_core.runlog import MetricsLogger, atomic_write_bytes, atomic_write_text, read_jsonl
from era_llm.toy import ArithmeticTask, Problem, char_tokenizer, tiny_causal_lm
from era_llm.verify import exact_match_reward, math_reward
from era_llm_app.common import load_checkpoint, make_rollout, quiet_transformers

LOSSES = ("grpo", "gspo", "clip-higher", "kl-cov", "clip-cov", "forking")
ADV_EPS = 1e-6  # GRPO: A = (r - mean) / (std + eps); eps only guards a zero std
CHECKPOINT = "checkpoint.pt"


# ------------------------------------------------------------------------------------------
# Configuration: every hyper-parameter lives here (CLI flags map 1:1 onto the fields).
# ------------------------------------------------------------------------------------------
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
    # ERA (ERA-SPEC §3 defaults)
    era: bool = True
    era_low: float = 0.45
    era_high: float = 3.0
    era_k: float = 2.0
    era_topk: int = 20  # 0 = full softmax
    adv_scale: bool = False
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
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="era-llm-train",
        description="GRPO(+ERA) on a tiny built-in model (CPU) or a local checkpoint (GPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
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
    a("--rollout", choices=("hf", "vllm"), default=d.rollout, help="generation backend")
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
    a("--prompts-per-step", type=int, default=d.prompts_per_step)
    a("--group-size", "-n", type=int, default=d.group_size, help="responses per prompt (n)")
    a("--lr", type=float, default=d.lr)
    a("--temperature", type=float, default=d.temperature, help="rollout temperature")
    a("--max-grad-norm", type=float, default=d.max_grad_norm)
    a("--micro-batch", type=int, default=d.micro_batch, help="rows per backward; 0 = all")
    a("--loss", choices=LOSSES, default=d.loss, help="policy loss (era_llm.losses)")
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
    c = p.add_argument_group("comparison (GRPO vs GRPO+ERA vs adaptive entropy bonus)")
    c.add_argument(
        "--compare",
        action="store_true",
        help="run the three methods x --seeds into OUT/<method>/seed<N>/",
    )
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    return quick_preset(cfg) if cfg.quick else cfg


# ------------------------------------------------------------------------------------------
# Validation: bad input fails here, before any model is built or any file is written.
# ------------------------------------------------------------------------------------------
def validate(cfg: TrainConfig) -> None:
    """Raise ValueError / FileNotFoundError naming the flag, the value and the valid range."""
    if cfg.era_low >= cfg.era_high:
        raise ValueError(
            f"--era-low {cfg.era_low} must be < --era-high {cfg.era_high} (an entropy band)"
        )
    if cfg.era_low < 0:
        raise ValueError(f"--era-low {cfg.era_low} must be >= 0 (entropies are non-negative)")
    if not cfg.era_k > 1:
        raise ValueError(f"--era-k {cfg.era_k} must be > 1 (c is k, 1 or 1/k)")
    if cfg.era_topk < 0:
        raise ValueError(f"--era-topk {cfg.era_topk} must be >= 0 (0 = full softmax)")
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
    if cfg.loss not in LOSSES:
        raise ValueError(f"--loss {cfg.loss!r} must be one of {LOSSES}")
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


# ------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------
class PromptSource:
    """Training prompts (drawn with the run's numpy Generator) and a fixed held-out set."""

    def __init__(self, cfg: TrainConfig):
        self.task = (
            None if cfg.data else ArithmeticTask(cfg.task_op, cfg.min_digits, cfg.max_digits)
        )
        self.rows = load_jsonl_problems(cfg.data) if cfg.data else None
        held_out_rng = np.random.default_rng(cfg.seed + 1_000_003)  # never the training stream
        self.eval_set = self.sample(held_out_rng, cfg.eval_size)

    def sample(self, rng: np.random.Generator, n: int) -> list[Problem]:
        if self.task is not None:
            return self.task.sample(rng, n)
        return [self.rows[int(i)] for i in rng.integers(0, len(self.rows), size=n)]


def make_reward_fn(cfg: TrainConfig):
    kind = cfg.verifier if cfg.verifier != "auto" else ("math" if cfg.data else "exact")
    return exact_match_reward if kind == "exact" else math_reward


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(cfg: TrainConfig, device: torch.device) -> None:
    """The tiny model's matmuls are too small to split: one thread is several times faster
    than two (and far faster on a shared machine, where OpenMP threads wait for each other)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu" and cfg.model is None:
        torch.set_num_threads(1)


def sequence_batch(rollout, rows: torch.Tensor | slice, device: torch.device):
    """Prompt + response ids, attention mask and position ids for a teacher-forced pass."""
    ids = torch.cat([rollout.prompt_ids[rows], rollout.response_ids[rows]], dim=1).to(device)
    attn = torch.cat([rollout.prompt_mask[rows], rollout.response_mask[rows]], dim=1).to(device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded prompts
    return ids, attn, pos


def response_logits(model, rollout, rows, device) -> torch.Tensor:
    """``[rows, R, V]`` logits that predict each response token (teacher forcing)."""
    ids, attn, pos = sequence_batch(rollout, rows, device)
    keep = rollout.response_ids.shape[1] + 1  # no logits for the prompt (long for real models)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=keep).logits
    return logits[:, :-1]


def group_advantages(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO advantages ``(r - mean_g) / (std_g + eps)`` and a per-row keep mask.

    A group whose rewards are all equal carries no signal: it is dropped (dynamic sampling).
    """
    g = rewards.view(-1, group_size)
    adv = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + ADV_EPS)
    keep = (g.max(1).values > g.min(1).values).repeat_interleave(group_size)
    return adv.reshape(-1), keep


def masked_entropy_mean(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Differentiable mean token entropy over masked positions (for the entropy bonus)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    return (ent * mask).sum() / mask.sum().clamp(min=1)


# ------------------------------------------------------------------------------------------
# Checkpoints: model + optimiser + every RNG, written atomically.
# ------------------------------------------------------------------------------------------
def save_checkpoint(out: Path, step: int, model, optimizer, rng, entropy_coef: float) -> None:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python_rng": random.getstate(),
        "entropy_coef": entropy_coef,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(out / CHECKPOINT, buffer.getvalue())


def load_checkpoint_state(out: Path, model, optimizer, rng) -> tuple[int, float]:
    state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    return int(state["step"]), float(state["entropy_coef"])


def save_model(out: Path, model, tokenizer) -> Path:
    """save_pretrained into ``out/model`` (via a temporary directory, then a rename)."""
    final, tmp = out / "model", out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


# ------------------------------------------------------------------------------------------
# Supervised warm-up: teach a random model the answer format (and some arithmetic).
# ------------------------------------------------------------------------------------------
def supervised_warmup(cfg, model, tokenizer, source, rng, device, out: Path) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.warmup_lr, weight_decay=0.0)
    model.train()
    with MetricsLogger(out / "warmup", tensorboard=cfg.tensorboard) as log:
        bar = tqdm(range(1, cfg.warmup_steps + 1), desc="warm-up", leave=False, file=sys.stderr)
        for step in bar:
            batch = source.sample(rng, cfg.warmup_batch)
            prompts = [cfg.prompt_template.format(prompt=p.prompt) for p in batch]
            p_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in prompts]
            a_ids = [tokenizer(p.answer, add_special_tokens=False)["input_ids"] for p in batch]
            seqs = [p + a + [tokenizer.eos_token_id] for p, a in zip(p_ids, a_ids, strict=True)]
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full_like(ids, -100)  # loss on answer + EOS only
            for i, (s, p) in enumerate(zip(seqs, p_ids, strict=True)):
                ids[i, : len(s)] = torch.tensor(s)
                labels[i, len(p) : len(s)] = torch.tensor(s[len(p) :])
            attn = torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]
            loss = model(
                input_ids=ids.to(device),
                attention_mask=attn.long().to(device),
                labels=labels.to(device),
            ).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % 10 == 0 or step == cfg.warmup_steps:
                log.log({"step": step, "sft_loss": loss.item()})
        acc = greedy_accuracy(cfg, make_rollout("hf", model, tokenizer), source)
        log.log({"step": cfg.warmup_steps, "sft_loss": loss.item(), "eval_accuracy": acc})


def greedy_accuracy(cfg, engine, source) -> float:
    """Greedy accuracy on the fixed held-out prompts (`engine`: a rollout backend)."""
    reward_fn = make_reward_fn(cfg)
    problems = source.eval_set
    prompts = [cfg.prompt_template.format(prompt=p.prompt) for p in problems]
    roll = engine.generate(prompts, 1, max_new_tokens=max_new_tokens(cfg, source), greedy=True)
    rewards = [reward_fn(t, p.answer) for t, p in zip(roll.texts, problems, strict=True)]
    return float(np.mean(rewards))


def max_new_tokens(cfg: TrainConfig, source: PromptSource) -> int:
    if cfg.max_new_tokens is not None:
        return cfg.max_new_tokens
    return source.task.max_answer_chars() + 1 if source.task is not None else 1024


DEFAULT_WARMUP_STEPS = 300  # built-in model: ~20-30 % greedy accuracy on 1-2 digit addition


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Run (or resume) one training run; returns its directory."""
    from era_llm.era import ERAConfig, era_scales
    from era_llm.losses import policy_loss
    from era_llm.ops import token_logprobs

    validate(cfg)
    out = Path(cfg.out)
    resuming = cfg.resume and (out / CHECKPOINT).is_file()
    if (out / "config.json").exists() and not resuming:
        if cfg.resume:
            raise FileExistsError(f"--out {out} holds a run without a checkpoint: use a new --out")
        raise FileExistsError(f"--out {out} already holds a run: pass --resume or a new --out")
    if resuming:
        check_resumable(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "DONE").unlink(missing_ok=True)
    atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))

    # Seeding: one block. numpy draws the prompts, torch samples responses.
    random.seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    set_threads(cfg, device)
    quiet_transformers()

    # Policy and data.
    if cfg.model is not None:
        model, tokenizer = load_checkpoint(cfg.model)
    else:
        tokenizer = char_tokenizer()
        model = tiny_causal_lm(
            tokenizer, hidden_size=cfg.hidden_size, num_layers=cfg.layers, seed=cfg.seed
        )
    model.to(device)
    source = PromptSource(cfg)
    reward_fn = make_reward_fn(cfg)
    era_cfg = ERAConfig(
        low=cfg.era_low,
        high=cfg.era_high,
        k=cfg.era_k,
        adv_scale=cfg.adv_scale,
        logit_topk=cfg.era_topk or None,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    warmup_steps = (
        cfg.warmup_steps
        if cfg.warmup_steps is not None
        else (0 if cfg.model else DEFAULT_WARMUP_STEPS)
    )

    start, entropy_coef = 0, 0.0
    if resuming:
        start, entropy_coef = load_checkpoint_state(out, model, optimizer, np_rng)
    elif warmup_steps > 0:
        supervised_warmup(
            dataclasses.replace(cfg, warmup_steps=warmup_steps),
            model,
            tokenizer,
            source,
            np_rng,
            device,
            out,
        )
        save_checkpoint(out, 0, model, optimizer, np_rng, entropy_coef)

    rollout_engine = make_rollout(cfg.rollout, model, tokenizer, cfg.model)
    new_tokens = max_new_tokens(cfg, source)
    n = cfg.group_size
    logger = MetricsLogger(
        out, tensorboard=cfg.tensorboard, resume_step=start if resuming else None
    )
    bar = tqdm(
        range(start + 1, cfg.steps + 1),
        desc="GRPO",
        disable=not progress,
        file=sys.stderr,
        initial=start,
        total=cfg.steps,
    )
    for step in bar:
        t0 = time.perf_counter()
        # 1. Rollout: n responses per prompt from the unmodified policy.
        problems = source.sample(np_rng, cfg.prompts_per_step)
        prompts = [cfg.prompt_template.format(prompt=p.prompt) for p in problems]
        roll = rollout_engine.generate(
            prompts, n, max_new_tokens=new_tokens, temperature=cfg.temperature
        )
        # 2. Rewards and group advantages; dynamic sampling drops all-equal groups.
        answers = [p.answer for p in problems for _ in range(n)]
        rewards = torch.tensor([reward_fn(t, a) for t, a in zip(roll.texts, answers, strict=True)])
        advantages, keep = group_advantages(rewards, n)
        advantages = advantages * keep  # dropped groups: A = 0 (and no rows in the loss)
        mask = roll.response_mask.to(device)
        labels = roll.response_ids.to(device)

        # 3. Token entropies of the unmodified policy (no grad): ERA's statistic, and logs.
        rows_per_pass = cfg.micro_batch or len(rewards)
        model.train()
        with torch.no_grad():
            entropy = torch.cat(
                [
                    token_logprobs(
                        response_logits(model, roll, slice(i, i + rows_per_pass), device),
                        labels[i : i + rows_per_pass],
                        mask=mask[i : i + rows_per_pass],
                    ).entropy
                    for i in range(0, len(rewards), rows_per_pass)
                ]
            )
        era = era_scales(entropy, mask, advantages.to(device), era_cfg)
        scale = era.scale if cfg.era else torch.ones_like(era.scale)
        adv_used = era.advantages if cfg.era else advantages.to(device)

        # 4. One on-policy update on the kept rows (old log-probs = current ones, detached).
        kept = torch.nonzero(keep).flatten()
        row = {"step": step, "loss": float("nan")}
        if len(kept) > 0:
            optimizer.zero_grad(set_to_none=True)
            kept_tokens = mask[kept].sum().clamp(min=1)
            loss_value, loss_stats = 0.0, {}
            for i in range(0, len(kept), rows_per_pass):
                rows = kept[i : i + rows_per_pass]
                logits = response_logits(model, roll, rows.cpu(), device)
                out_lp = token_logprobs(
                    logits,
                    labels[rows],
                    scale=scale[rows] if cfg.era else None,
                    topk=era_cfg.logit_topk if cfg.era else None,
                    mask=mask[rows],
                    return_entropy=False,
                )
                loss, stats = policy_loss(
                    cfg.loss,
                    out_lp.logprobs,
                    out_lp.logprobs.detach(),
                    adv_used[rows],
                    mask[rows],
                    token_entropy=entropy[rows],
                )
                if cfg.entropy_bonus_target is not None:
                    loss = loss - entropy_coef * masked_entropy_mean(logits, mask[rows])
                weight = mask[rows].sum() / kept_tokens  # token-mean over all micro-batches
                (loss * weight).backward()
                loss_value += float(loss.detach()) * float(weight)
                for k, v in stats.items():
                    loss_stats[k] = loss_stats.get(k, 0.0) + float(v) * float(weight)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            row.update({f"loss/{k}": v for k, v in loss_stats.items()})
            row.update({"loss": loss_value, "grad_norm": float(grad_norm)})
        # Adaptive entropy bonus: the coefficient follows the gap to the target (dual ascent).
        if cfg.entropy_bonus_target is not None:
            gap = cfg.entropy_bonus_target - float(era.stats["top_entropy_mean"])
            entropy_coef = max(0.0, entropy_coef + cfg.entropy_bonus_lr * gap)

        # 5. Log.
        n_tok = mask.sum().clamp(min=1)
        row.update(
            {
                "reward_mean": float(rewards.mean()),
                "accuracy": float((rewards >= 1.0).float().mean()),
                "groups_kept_frac": float(keep.float().mean()),
                "response_len_mean": float(mask.sum(1).float().mean()),
                "token_entropy_mean": float((entropy * mask).sum() / n_tok),
                **{k: float(v) for k, v in era.stats.items()},
                "scale_mean": float(scale.mean()),
                "entropy_coef": entropy_coef,
                "step_time_s": time.perf_counter() - t0,
            }
        )
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row["eval_accuracy"] = greedy_accuracy(cfg, rollout_engine, source)
        logger.log(row)
        bar.set_postfix(
            acc=f"{row['accuracy']:.2f}",
            H=f"{row['top_entropy_mean']:.2f}",
            c=f"{row['scale_mean']:.2f}",
        )
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(out, step, model, optimizer, np_rng, entropy_coef)
    logger.close()

    # Final artefacts: the model for era-llm-eval, plots, a summary, and the DONE marker.
    save_model(out, model, tokenizer)
    rows = read_jsonl(out / "metrics.jsonl")
    from era_llm_app.plots import plot_run

    plot_run(out, rows, cfg.era_low, cfg.era_high)
    summary = summarize_run(rows, cfg)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "DONE", "")
    return out


def summarize_run(rows: list[dict], cfg: TrainConfig) -> dict:
    """Final and last-20 %-of-steps averages of the headline metrics."""
    tail = rows[-max(1, len(rows) // 5) :]
    evals = [r["eval_accuracy"] for r in rows if r.get("eval_accuracy") is not None]

    def avg(key):
        vals = [r[key] for r in tail if r.get(key) is not None and math.isfinite(r[key])]
        return float(np.mean(vals)) if vals else None

    return {
        "steps": len(rows),
        "final_eval_accuracy": evals[-1] if evals else None,
        "best_eval_accuracy": max(evals) if evals else None,
        "tail_accuracy": avg("accuracy"),
        "tail_top_entropy_mean": avg("top_entropy_mean"),
        "tail_rest_entropy_mean": avg("rest_entropy_mean"),
        "tail_frac_inside": avg("frac_inside"),
        "tail_frac_below": avg("frac_below"),
        "tail_scale_mean": avg("scale_mean"),
        "era": cfg.era,
        "era_low": cfg.era_low,
        "era_high": cfg.era_high,
        "entropy_bonus_target": cfg.entropy_bonus_target,
    }


def check_resumable(out: Path, cfg: TrainConfig) -> None:
    saved = json.loads((out / "config.json").read_text())
    now = dataclasses.asdict(cfg)
    diff = [k for k in now if k not in TrainConfig.RESUMABLE and saved.get(k) != now[k]]
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"--resume with a different configuration ({changes})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    try:
        if args.compare:
            from era_llm_app.compare import run_comparison

            run_comparison(cfg, args.seeds)
        else:
            train(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        parser.error(str(exc))
    print(f"done: {cfg.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
