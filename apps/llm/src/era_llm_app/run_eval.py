"""`era-llm-eval --model OUT` on a compact-trainer run directory (``era-llm-train --out OUT``).

    uv run era-llm-eval --model runs/llm-demo --mode sampled --out runs/llm-demo-eval

A run directory is told from a Hugging Face checkpoint by its ``config.json``: the trainer's
holds `TrainConfig`'s fields. The run's final ``checkpoint.pt`` is loaded into the built-in
model (built from the run's own settings, with its character tokenizer), every question is put
in the run's ``--prompt-template`` (no chat template) and each response is graded by the
trainer's own verifier (`era_llm_app.train.make_reward_fn`: exact match for the synthetic
task). Without ``--data`` the questions are the run's ``heldout.jsonl``. Responses are at most
the run's response length and, sampled, at the run's ``--temperature``.

``--mode greedy``: one greedy response per question, one row (k = 1). ``--mode sampled`` (and
``paper``): `SAMPLES` responses per question drawn once, and rows for k = 1, 4, 8 from those
draws (`era_llm_app.scoring.pass_at_k`, the unbiased estimator with n = 8); ``mean_at_k`` is
the mean accuracy over the 8 responses on every row.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from era_llm_app.scoring import load_items, pass_at_k, score_set

SAMPLES = 8  # responses per question in sampled mode
PASS_KS = (1, 4, 8)  # the k of the reported pass@k, from the same SAMPLES draws
TRAINER_KEYS = ("prompts_per_step", "group_size", "prompt_template", "hidden_size")


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a compact-trainer run (its ``config.json`` is `TrainConfig`'s)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        stored = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(stored, dict) and all(key in stored for key in TRAINER_KEYS)


def run_config(path: Path) -> Any:
    """The run's `TrainConfig` (its stored settings; unknown keys are ignored)."""
    from era_llm_app.config import TrainConfig

    stored = json.loads((path / "config.json").read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in stored.items() if k in names and k != "out"})
    if cfg.model is not None:
        raise ValueError(
            f"--model {path}: a run of a local checkpoint (--model {cfg.model}); "
            f"evaluate its saved model with --model {path / 'model'} and --data"
        )
    return dataclasses.replace(cfg, out=str(path))


def load_run_policy(path: Path, cfg: Any) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)``: the built-in model with the weights of ``checkpoint.pt``."""
    from era_llm_app.train import CHECKPOINT, build_policy

    checkpoint = path / CHECKPOINT
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"--model {path}: a compact-trainer run without {CHECKPOINT} "
            "(it has not reached its first checkpoint)"
        )
    model, tokenizer = build_policy(cfg, torch.device("cpu"))
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
    except Exception as error:  # truncated, not a torch file, other weights: one fault
        raise ValueError(
            f"--model {path}: {CHECKPOINT} cannot be loaded ({type(error).__name__}); "
            "it is corrupt or from another model"
        ) from None
    model.eval()
    return model, tokenizer


def default_data(path: Path) -> list[str]:
    """The run's ``heldout.jsonl``, the data when ``--data`` is not given."""
    from era_llm_app.train import HELDOUT

    heldout = path / HELDOUT
    if not heldout.is_file():
        raise FileNotFoundError(
            f"--model {path}: the run has no {HELDOUT} (written by era-llm-train at its start); "
            "give --data"
        )
    return [str(heldout)]


def score_run_item(
    responses: list[str], reference: str, reward_fn: Any, ks: tuple[int, ...]
) -> tuple[list[float], float, dict[int, float]]:
    """Grades of ``responses`` by ``reward_fn``, their mean accuracy and pass@k for each of
    ``ks`` (all from the same ``n = len(responses)`` draws)."""
    grades = [float(reward_fn(r, reference)) for r in responses]
    n, c = len(grades), int(sum(g >= 1.0 for g in grades))
    return grades, c / n, {k: pass_at_k(n, c, k) for k in ks}


def evaluate_run(cfg: Any, *, progress: bool = True) -> tuple[list[dict], Any]:
    """Evaluate the run directory ``cfg.model`` (an `EvalConfig`); writes ``responses/`` and
    returns the result rows and the run's thread plan (`era_core.threads`)."""
    from era_llm_app.common import make_rollout
    from era_llm_app.train import PromptSource, make_reward_fn, max_new_tokens, set_threads

    path = Path(cfg.model)
    run_cfg = run_config(path)
    data = list(cfg.data) or default_data(path)
    datasets = {Path(p).stem: load_items(p, cfg.limit) for p in data}
    plan = set_threads(dataclasses.replace(run_cfg, threads=cfg.threads))
    model, tokenizer = load_run_policy(path, run_cfg)
    rollout = make_rollout("hf", model, tokenizer)
    reward_fn = make_reward_fn(run_cfg)
    length = max_new_tokens(run_cfg, PromptSource(run_cfg))
    greedy = cfg.mode == "greedy"
    n, ks = (1, (1,)) if greedy else (SAMPLES, PASS_KS)
    mode = "greedy" if greedy else f"sampled (T={run_cfg.temperature:g}, n={n})"
    out = Path(cfg.out)
    (out / "responses").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    results = []

    def generate(prompts: list[str]) -> list[str]:
        return rollout.generate(
            prompts, n, max_new_tokens=length, temperature=run_cfg.temperature, greedy=greedy
        ).texts

    def score(responses: list[str], reference: str) -> Any:
        return score_run_item(responses, reference, reward_fn, ks)

    for name, items in datasets.items():
        mean, at_k, seconds = score_set(
            items,
            out / "responses" / f"{name}.jsonl",
            prompt=lambda q: run_cfg.prompt_template.format(prompt=q),
            generate=generate,
            score=score,
            batch_size=cfg.batch_size,
            progress=progress,
        )
        for k in ks:
            results.append(
                {"dataset": name, "items": len(items), "mode": mode, "k": k,
                 "mean_at_k": mean, "pass_at_k": at_k[k], "seconds": seconds}
            )  # fmt: skip
    return results, plan
