"""`era-llm-train`: a compact GRPO(+ERA) trainer, readable top to bottom.

    uv run era-llm-train --steps 3 --out runs/llm-demo          # CPU, tiny model, seconds

One step (docs/paper.md §3): draw `prompts_per_step` prompts, sample `group_size` responses each
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

The configuration (`TrainConfig`, its flags and checks) is in `era_llm_app.config` and the
command line in `era_llm_app.cli`; this module is the run itself: `train` = `start_run`, then
`grpo_step` for every step (`rollout_and_rewards`, `token_entropy`, `policy_update`,
`step_metrics`), then `finish_run`.

Outputs in ``OUT/``: ``config.json``, ``metrics.csv``/``metrics.jsonl``/``tb/`` (one row per
step), ``checkpoint.pt`` (model, optimiser, RNG: exact resume with `--resume`), ``heldout.jsonl``
(the held-out prompts and answers, written once at the start: `era-llm-eval --model OUT`
scores them), and at the end
``model/`` (save_pretrained: `era-llm-eval --model OUT/model`), ``entropy.png``,
``reward.png``, ``summary.json`` and ``DONE``. The directory's lifecycle is `era_core.runs`'
(`open_run`): a new run needs a missing or empty ``OUT``, ``--resume`` refuses a configuration
that differs from ``config.json`` (but `TrainConfig.RESUMABLE`), the checkpoint is replaced
atomically and `finish_run` writes ``summary.json``, then ``DONE``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from era_core import runs, threads
from era_core.runlog import MetricsLogger, atomic_write_text, read_jsonl
from era_llm import entropy_bonus
from era_llm.advantages import ADV_EPS, group_advantages
from era_llm.entropy_bonus import EntropyBonusState, masked_entropy_mean
from era_llm.era import ERAConfig, ERAResult, era_scales, stats_to_floats
from era_llm.losses import policy_loss
from era_llm.ops import token_logprobs
from era_llm.rollout import HFRollout, Rollout, VLLMRollout
from era_llm.toy import Problem, char_tokenizer, tiny_causal_lm
from era_llm.verify import exact_match_reward, math_reward
from era_llm_app.common import load_checkpoint, make_rollout, quiet_transformers
from era_llm_app.config import (
    LOSSES,
    TrainConfig,
    build_parser,
    config_from_args,
    load_jsonl_problems,
    quick_preset,
    synthetic_task,
    validate,
)

__all__ = [
    "ADV_EPS",
    "CHECKPOINT",
    "HELDOUT",
    "LOSSES",
    "TrainConfig",
    "build_parser",
    "config_from_args",
    "group_advantages",
    "load_jsonl_problems",
    "masked_entropy_mean",
    "quick_preset",
    "response_logits",
    "summarize_run",
    "train",
    "validate",
]

CHECKPOINT = "checkpoint.pt"
HELDOUT = "heldout.jsonl"  # the fixed held-out prompts, as era-llm-eval reads them


# ------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------
class PromptSource:
    """Training prompts (drawn with the run's numpy Generator) and a fixed held-out set."""

    def __init__(self, cfg: TrainConfig):
        self.task = None if cfg.data else synthetic_task(cfg)
        self.rows = load_jsonl_problems(cfg.data) if cfg.data else None
        held_out_rng = np.random.default_rng(cfg.seed + 1_000_003)  # never the training stream
        self.eval_set = self.sample(held_out_rng, cfg.eval_size)

    def sample(self, rng: np.random.Generator, n: int) -> list[Problem]:
        if self.task is not None:
            return self.task.sample(rng, n)
        return [self.rows[int(i)] for i in rng.integers(0, len(self.rows), size=n)]


def make_reward_fn(cfg: TrainConfig) -> Callable[[str, str], float]:
    kind = cfg.verifier if cfg.verifier != "auto" else ("math" if cfg.data else "exact")
    if kind == "exact" and cfg.data is None:
        return synthetic_task(cfg).reward  # exact for the task: any valid split is right
    return exact_match_reward if kind == "exact" else math_reward


def write_heldout(out: Path, source: PromptSource) -> Path:
    """``out/heldout.jsonl`` (atomically): one ``{"question": ..., "answer": ...}`` row per
    held-out prompt, the fields `era_llm.verify.math_eval_item` reads, so that
    ``era-llm-eval --model OUT`` scores the prompts the run's greedy eval uses."""
    rows = [{"question": p.prompt, "answer": p.answer} for p in source.eval_set]
    path = out / HELDOUT
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(cfg: TrainConfig, stored: Any = None) -> threads.ThreadPlan:
    """Choose and set the CPU threads of torch and the BLAS pools (`era_core.threads`):
    ``--threads N``, else the count a resumed run recorded (``stored``), else 1 for the tiny
    model (its matmuls are too small to split: one thread is several times faster than two,
    and far faster on a shared machine, where OpenMP threads wait for each other) and every
    usable core for a checkpoint (``--model``). Returns the plan as it took effect."""
    if cfg.model is None:
        default, reason = 1, "the tiny model: ops too small to split"
    else:
        default, reason = threads.usable_cores(), "every usable core"
    plan = threads.choose_threads(cfg.threads, default=default, reason=reason, stored=stored)
    threads.apply_blas(plan)
    return threads.apply_torch(plan)


def _recorded_threads(cfg: TrainConfig) -> Any:
    """The thread record of the run ``--resume`` continues (``None`` for a new run)."""
    if not cfg.resume:
        return None
    try:
        return runs.read_config(cfg.out).get(threads.CONFIG_KEY)
    except runs.RunError:  # no run there: `open_run` says so
        return None


def sequence_batch(
    rollout: Rollout, rows: torch.Tensor | slice, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt + response ids, attention mask and position ids for a teacher-forced pass."""
    ids = torch.cat([rollout.prompt_ids[rows], rollout.response_ids[rows]], dim=1).to(device)
    attn = torch.cat([rollout.prompt_mask[rows], rollout.response_mask[rows]], dim=1).to(device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded prompts
    return ids, attn, pos


def response_logits(
    model: torch.nn.Module,
    rollout: Rollout,
    rows: torch.Tensor | slice,
    device: torch.device,
) -> torch.Tensor:
    """``[rows, R, V]`` logits that predict each response token (teacher forcing)."""
    ids, attn, pos = sequence_batch(rollout, rows, device)
    keep = rollout.response_ids.shape[1] + 1  # no logits for the prompt (long for real models)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=keep).logits
    return logits[:, :-1]


# ------------------------------------------------------------------------------------------
# The run directory and its checkpoints (`era_core.runs`): model + optimiser + every RNG.
# ------------------------------------------------------------------------------------------
def open_run(cfg: TrainConfig, cpu_threads: dict[str, Any] | None = None) -> runs.Run:
    """A new run in ``--out`` (missing or empty), or with ``--resume`` the run there, whose
    stored configuration must equal ``cfg`` but for `TrainConfig.RESUMABLE`; a run killed
    before its first checkpoint starts again in place, and ``--resume`` of a directory that
    holds no run is refused. A new run's ``config.json`` records ``cpu_threads`` (the
    `era_core.threads.ThreadPlan` it computes with), when given."""
    status = runs.run_status(cfg.out, checkpoint=CHECKPOINT)
    if cfg.resume and status in ("absent", "empty", "foreign"):
        raise runs.RunError(
            f"--resume --out {str(cfg.out)!r}: no run to resume there ({status}); "
            "start one without --resume"
        )
    if cfg.resume and status == "started":  # killed before its first checkpoint
        return check_resumable(Path(cfg.out), cfg).restart()
    if cfg.resume and status in ("checkpointed", "done"):
        return check_resumable(Path(cfg.out), cfg)
    stored = stored_config(cfg)
    if cpu_threads is not None:
        stored[threads.CONFIG_KEY] = cpu_threads
    return runs.new_run(cfg.out, stored, checkpoint=CHECKPOINT, resume_flag="--resume --out")


def stored_config(cfg: TrainConfig) -> dict[str, Any]:
    """What ``config.json`` holds: every setting but the run's own path (``out``), so that a
    run directory that is moved or copied stays resumable (and, beside them, the thread
    record `threads.CONFIG_KEY`, written by `open_run`)."""
    return {key: value for key, value in dataclasses.asdict(cfg).items() if key != "out"}


def check_resumable(out: Path, cfg: TrainConfig) -> runs.Run:
    """The run in ``out``, reopened; `runs.RunError` naming every setting that differs from
    its ``config.json`` (but those of `TrainConfig.RESUMABLE`)."""
    return runs.resume_run(
        out,
        stored_config(cfg),
        # "out": runs stored before it was dropped; the thread record: runs stored before it
        may_change=(*TrainConfig.RESUMABLE, "out", threads.CONFIG_KEY),
        checkpoint=CHECKPOINT,
        flag_names={"extra": "the comparison's method (extra)"},
    )


def rng_state(np_rng: np.random.Generator) -> dict[str, Any]:
    """Every RNG of a run (`era_core.runs.rng_state`): Python's, NumPy's, the prompt stream
    ``np_rng`` (``generators["numpy_rng"]``) and torch's and CUDA's, as ``torch_rng`` /
    ``cuda_rng`` (``None`` without a GPU)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return runs.rng_state(
        generators={"numpy_rng": np_rng}, torch_rng=torch.get_rng_state(), cuda_rng=cuda
    )


def set_rng_state(state: dict[str, Any], np_rng: np.random.Generator) -> None:
    """Restore what `rng_state` captured (``state`` may hold other keys too)."""
    if "python_rng" in state:  # the layout with one key per RNG, which has no NumPy global state
        state = {
            **state,
            "python": state["python_rng"],
            "numpy": np.random.get_state(),  # noqa: NPY002 (not saved in that layout)
            "generators": {"numpy_rng": state["numpy_rng"]},
        }
    framework = runs.set_rng_state(state, generators={"numpy_rng": np_rng})
    torch.set_rng_state(framework["torch_rng"])
    if framework.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(framework["cuda_rng"])


def _torch_dumps(state: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _torch_loads(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def save_checkpoint(
    run_dir: runs.Run,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    entropy_coef: float,
) -> None:
    """``checkpoint.pt`` (atomically): ``step``, ``model``, ``optimizer``, ``entropy_coef`` and
    the keys of `rng_state`."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "entropy_coef": entropy_coef,
        **rng_state(rng),
    }
    run_dir.save_checkpoint(state, serialize=_torch_dumps)


def load_checkpoint_state(
    run_dir: runs.Run,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> tuple[int, float]:
    """Load ``checkpoint.pt`` into ``model``, ``optimizer`` and the RNGs; ``(step, coef)``."""
    state = run_dir.load_checkpoint(deserialize=_torch_loads)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state, rng)
    return int(state["step"]), float(state["entropy_coef"])


def save_model(out: Path, model: torch.nn.Module, tokenizer: Any) -> Path:
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
def supervised_warmup(
    cfg: TrainConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    source: PromptSource,
    rng: np.random.Generator,
    device: torch.device,
    out: Path,
) -> None:
    """Teach ``model`` the answer format: ``cfg.warmup_steps`` supervised steps on the
    task's prompts and answers, logged to ``out/warmup/``."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.warmup_lr, weight_decay=0.0)
    model.train()
    with MetricsLogger(out / "warmup", tensorboard=cfg.tensorboard) as log:
        bar = tqdm(range(1, cfg.warmup_steps + 1), desc="warm-up", leave=False, file=sys.stderr)
        for step in bar:
            batch = source.sample(rng, cfg.warmup_batch)
            prompts = [cfg.prompt_template.format(prompt=p.prompt) for p in batch]
            p_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in prompts]
            answers = [demonstration(source, p, rng) for p in batch]
            a_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
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


def demonstration(source: PromptSource, problem: Problem, rng: np.random.Generator) -> str:
    """The warm-up's target for `problem`: the synthetic task's (one valid answer, drawn from
    `rng` where there are several), else the data's answer."""
    return source.task.demonstration(problem, rng) if source.task else problem.answer


def greedy_accuracy(
    cfg: TrainConfig, engine: HFRollout | VLLMRollout, source: PromptSource
) -> float:
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
@dataclass
class RunState:
    """Everything one training run holds between steps."""

    cfg: TrainConfig
    era_cfg: ERAConfig
    run_dir: runs.Run
    device: torch.device
    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    np_rng: np.random.Generator
    source: PromptSource
    reward_fn: Callable[[str, str], float]
    rollout: HFRollout | VLLMRollout
    bonus: EntropyBonusState
    start: int

    @property
    def out(self) -> Path:
        return self.run_dir.path

    @property
    def resuming(self) -> bool:
        return self.run_dir.resumed


def build_policy(cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)``: the local checkpoint, or the tiny built-in model, on ``device``."""
    if cfg.model is not None:
        model, tokenizer = load_checkpoint(cfg.model)
    else:
        tokenizer = char_tokenizer()
        model = tiny_causal_lm(
            tokenizer, hidden_size=cfg.hidden_size, num_layers=cfg.layers, seed=cfg.seed
        )
    return model.to(device), tokenizer


def start_run(cfg: TrainConfig) -> RunState:
    """Validate, open the run directory, seed, build the policy; resume or warm up."""
    era_cfg = validate(cfg)
    plan = set_threads(cfg, _recorded_threads(cfg))
    run_dir = open_run(cfg, plan.to_dict())
    try:
        return _start(cfg, era_cfg, run_dir)
    except BaseException:
        run_dir.discard()  # a new run that failed before its first checkpoint leaves nothing
        raise


def _start(cfg: TrainConfig, era_cfg: ERAConfig, run_dir: runs.Run) -> RunState:
    # Seeding: one block. numpy draws the prompts, torch samples responses.
    random.seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    quiet_transformers()
    model, tokenizer = build_policy(cfg, device)
    source = PromptSource(cfg)
    reward_fn = make_reward_fn(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    warmup_steps = (
        cfg.warmup_steps
        if cfg.warmup_steps is not None
        else (0 if cfg.model else DEFAULT_WARMUP_STEPS)
    )
    start, bonus = 0, entropy_bonus.init()
    if not run_dir.resumed:
        write_heldout(run_dir.path, source)
    if run_dir.resumed:
        start, coef = load_checkpoint_state(run_dir, model, optimizer, np_rng)
        bonus = EntropyBonusState(coef)
    elif warmup_steps > 0:
        warm_cfg = dataclasses.replace(cfg, warmup_steps=warmup_steps)
        supervised_warmup(warm_cfg, model, tokenizer, source, np_rng, device, run_dir.path)
        save_checkpoint(run_dir, 0, model, optimizer, np_rng, bonus.coef)
    rollout = make_rollout(cfg.rollout, model, tokenizer, cfg.model)
    return RunState(
        cfg=cfg,
        era_cfg=era_cfg,
        run_dir=run_dir,
        device=device,
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        np_rng=np_rng,
        source=source,
        reward_fn=reward_fn,
        rollout=rollout,
        bonus=bonus,
        start=start,
    )


def train(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Run (or resume) one training run; returns its directory. A finished run resumed with no
    more steps to take is left exactly as it is."""
    run = start_run(cfg)
    if run.run_dir.done:
        if run.start >= cfg.steps:
            return run.out
        (run.out / runs.DONE).unlink()  # it goes on: `finish_run` writes DONE again
    logger = MetricsLogger(
        run.out, tensorboard=cfg.tensorboard, resume_step=run.start if run.resuming else None
    )
    bar = tqdm(
        range(run.start + 1, cfg.steps + 1),
        desc="GRPO",
        disable=not progress,
        file=sys.stderr,
        initial=run.start,
        total=cfg.steps,
    )
    try:
        for step in bar:
            row = grpo_step(run, step)
            logger.log(row)
            bar.set_postfix(
                acc=f"{row['accuracy']:.2f}",
                H=f"{row['top_entropy_mean']:.2f}",
                c=f"{row['scale_mean']:.2f}",
            )
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save_checkpoint(
                    run.run_dir, step, run.model, run.optimizer, run.np_rng, run.bonus.coef
                )
    except BaseException:
        logger.close()
        run.run_dir.discard()  # only a new run that has no checkpoint yet
        raise
    logger.close()
    finish_run(run)
    return run.out


def grpo_step(run: RunState, step: int) -> dict:
    """One GRPO(+ERA) step on ``run`` (updates its model, optimiser and bonus); its metrics row."""
    cfg, device = run.cfg, run.device
    t0 = time.perf_counter()
    # 1-2. Rollout from the unmodified policy; rewards and group advantages (dynamic sampling).
    roll, rewards = rollout_and_rewards(run)
    advantages, keep = group_advantages(rewards, cfg.group_size)
    advantages = advantages * keep  # dropped groups: A = 0 (and no rows in the loss)
    mask = roll.response_mask.to(device)
    # 3. Token entropies of the unmodified policy (no grad): ERA's statistic, and logs.
    rows_per_pass = cfg.micro_batch or len(rewards)
    run.model.train()
    entropy = token_entropy(run, roll, rows_per_pass)
    era = era_scales(entropy, mask, advantages.to(device), run.era_cfg)
    # 4. One on-policy update on the kept rows (old log-probs = current ones, detached).
    kept = torch.nonzero(keep).flatten()
    row: dict = {"step": step, "loss": float("nan")}
    if len(kept) > 0:
        row.update(policy_update(run, roll, era, advantages, entropy, kept, rows_per_pass))
    era_stats = stats_to_floats(era.stats)  # the one host transfer of ERA's statistics
    # Adaptive entropy bonus: the coefficient follows the gap to the target (dual ascent).
    if cfg.entropy_bonus_target is not None:
        run.bonus = entropy_bonus.update(
            run.bonus,
            era_stats["top_entropy_mean"],
            target=cfg.entropy_bonus_target,
            lr=cfg.entropy_bonus_lr,
        )
    # 5. Log.
    scale = era.scale if cfg.era else torch.ones_like(era.scale)
    row.update(step_metrics(run, rewards, keep, mask, entropy, era_stats, scale))
    row["step_time_s"] = time.perf_counter() - t0
    if step % cfg.eval_every == 0 or step == cfg.steps:
        row["eval_accuracy"] = greedy_accuracy(cfg, run.rollout, run.source)
    return row


def rollout_and_rewards(run: RunState) -> tuple[Rollout, torch.Tensor]:
    """``group_size`` responses to each of ``prompts_per_step`` fresh prompts, and their
    ``[B]`` rewards (prompt-major)."""
    cfg, n = run.cfg, run.cfg.group_size
    problems = run.source.sample(run.np_rng, cfg.prompts_per_step)
    prompts = [cfg.prompt_template.format(prompt=p.prompt) for p in problems]
    roll = run.rollout.generate(
        prompts, n, max_new_tokens=max_new_tokens(cfg, run.source), temperature=cfg.temperature
    )
    answers = [p.answer for p in problems for _ in range(n)]
    texts = zip(roll.texts, answers, strict=True)
    return roll, torch.tensor([run.reward_fn(t, a) for t, a in texts])


@torch.no_grad()
def token_entropy(run: RunState, roll: Rollout, rows_per_pass: int) -> torch.Tensor:
    """``[B, R]`` token entropies of the unmodified policy, ``rows_per_pass`` rows at a time."""
    mask = roll.response_mask.to(run.device)
    labels = roll.response_ids.to(run.device)
    return torch.cat(
        [
            token_logprobs(
                response_logits(run.model, roll, slice(i, i + rows_per_pass), run.device),
                labels[i : i + rows_per_pass],
                mask=mask[i : i + rows_per_pass],
            ).entropy
            for i in range(0, len(mask), rows_per_pass)
        ]
    )


def policy_update(
    run: RunState,
    roll: Rollout,
    era: ERAResult,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    kept: torch.Tensor,
    rows_per_pass: int,
) -> dict:
    """One optimiser step on the ``kept`` rows, micro-batched; ``loss``, ``loss/*`` and
    ``grad_norm`` as floats (read from the device once, after the step)."""
    cfg, device = run.cfg, run.device
    mask = roll.response_mask.to(device)
    labels = roll.response_ids.to(device)
    scale = era.scale if cfg.era else None
    adv_used = era.advantages if cfg.era else advantages.to(device)
    run.optimizer.zero_grad(set_to_none=True)
    kept_tokens = mask[kept].sum().clamp(min=1)
    parts = []  # per micro-batch: (loss, weight, stats), all 0-d tensors
    for i in range(0, len(kept), rows_per_pass):
        rows = kept[i : i + rows_per_pass]
        logits = response_logits(run.model, roll, rows.cpu(), device)
        out_lp = token_logprobs(
            logits,
            labels[rows],
            scale=scale[rows] if scale is not None else None,
            topk=run.era_cfg.logit_topk if cfg.era else None,
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
            loss = entropy_bonus.apply(loss, masked_entropy_mean(logits, mask[rows]), run.bonus)
        weight = mask[rows].sum() / kept_tokens  # token-mean over all micro-batches
        (loss * weight).backward()
        parts.append((loss.detach(), weight, stats))
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
    run.optimizer.step()
    return weighted_loss_metrics(parts, grad_norm)


def weighted_loss_metrics(parts: list, grad_norm: torch.Tensor) -> dict:
    """The micro-batches' token-weighted sums of the loss and its stats, and the grad norm.

    All tensors are read in one transfer; the sums are then taken in Python floats, micro-batch
    by micro-batch.
    """
    names = list(parts[0][2])
    flat = [t for loss, weight, stats in parts for t in (loss, weight, *stats.values())]
    values = torch.stack([t.float() for t in (*flat, grad_norm)]).tolist()
    width = 2 + len(names)
    loss_value, loss_stats = 0.0, {}
    for j in range(len(parts)):
        loss, weight, *stats = values[j * width : (j + 1) * width]
        loss_value += loss * weight
        for k, v in zip(names, stats, strict=True):
            loss_stats[k] = loss_stats.get(k, 0.0) + v * weight
    return {
        **{f"loss/{k}": v for k, v in loss_stats.items()},
        "loss": loss_value,
        "grad_norm": values[-1],
    }


def step_metrics(
    run: RunState,
    rewards: torch.Tensor,
    keep: torch.Tensor,
    mask: torch.Tensor,
    entropy: torch.Tensor,
    era_stats: dict,
    scale: torch.Tensor,
) -> dict:
    """The step's logged rollout and ERA metrics (Python floats)."""
    n_tok = mask.sum().clamp(min=1)
    return {
        "reward_mean": float(rewards.mean()),
        "accuracy": float((rewards >= 1.0).float().mean()),
        "groups_kept_frac": float(keep.float().mean()),
        "response_len_mean": float(mask.sum(1).float().mean()),
        "token_entropy_mean": float((entropy * mask).sum() / n_tok),
        **era_stats,
        "scale_mean": float(scale.mean()),
        "entropy_coef": run.bonus.coef,
    }


def finish_run(run: RunState) -> None:
    """The model for era-llm-eval, plots, a summary, and the DONE marker."""
    from era_llm_app.plots import plot_run

    save_model(run.out, run.model, run.tokenizer)
    rows = read_jsonl(run.out / "metrics.jsonl")
    plot_run(run.out, rows, run.cfg.era_low, run.cfg.era_high)
    run.run_dir.finish(summarize_run(rows, run.cfg))  # summary.json, then DONE


def summarize_run(rows: list[dict], cfg: TrainConfig) -> dict:
    """Final and last-20 %-of-steps averages of the headline metrics."""
    tail = rows[-max(1, len(rows) // 5) :]
    evals = [r["eval_accuracy"] for r in rows if r.get("eval_accuracy") is not None]

    def avg(key: str) -> float | None:
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
