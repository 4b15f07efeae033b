"""era-llm-train's and era-llm-eval's command lines: the flags stay those of the hand-written
parsers they were generated to replace, and --help shows every default once."""

from __future__ import annotations

import argparse

import pytest
from era_llm_app.config import build_parser as train_parser
from era_llm_app.evaluate import build_parser as eval_parser

SUPPRESS = "==SUPPRESS=="
# (option strings, dest, nargs, type, choices, default, action class, required) of every option
# of the hand-written parsers, in their order.
TRAIN = [
    (("-h", "--help"), "help", 0, None, None, "==SUPPRESS==", "_HelpAction", False),
    (("--out",), "out", None, None, None, "runs/llm", "_StoreAction", False),
    (("--steps",), "steps", None, "int", None, 200, "_StoreAction", False),
    (("--seed",), "seed", None, "int", None, 0, "_StoreAction", False),
    (("--model",), "model", None, None, None, None, "_StoreAction", False),
    (("--hidden-size",), "hidden_size", None, "int", None, 64, "_StoreAction", False),
    (("--layers",), "layers", None, "int", None, 2, "_StoreAction", False),
    (("--device",), "device", None, None, None, "auto", "_StoreAction", False),
    (("--threads",), "threads", None, "int", None, 0, "_StoreAction", False),
    (("--rollout",), "rollout", None, None, ("hf", "vllm"), "hf", "_StoreAction", False),
    (("--task-op",), "task_op", None, None, ("+", "-", "*", "split"), "+", "_StoreAction", False),
    (("--min-digits",), "min_digits", None, "int", None, 1, "_StoreAction", False),
    (("--max-digits",), "max_digits", None, "int", None, 2, "_StoreAction", False),
    (("--data",), "data", None, None, None, None, "_StoreAction", False),
    (
        ("--verifier",),
        "verifier",
        None,
        None,
        ("auto", "exact", "math"),
        "auto",
        "_StoreAction",
        False,
    ),
    (
        ("--prompt-template",),
        "prompt_template",
        None,
        None,
        None,
        "{prompt}",
        "_StoreAction",
        False,
    ),
    (("--max-new-tokens",), "max_new_tokens", None, "int", None, None, "_StoreAction", False),
    (("--warmup-steps",), "warmup_steps", None, "int", None, None, "_StoreAction", False),
    (("--warmup-batch",), "warmup_batch", None, "int", None, 64, "_StoreAction", False),
    (("--warmup-lr",), "warmup_lr", None, "float", None, 0.003, "_StoreAction", False),
    (("--prompts-per-step",), "prompts_per_step", None, "int", None, 16, "_StoreAction", False),
    (("--group-size", "-n"), "group_size", None, "int", None, 8, "_StoreAction", False),
    (("--lr",), "lr", None, "float", None, 0.0003, "_StoreAction", False),
    (("--temperature",), "temperature", None, "float", None, 1.0, "_StoreAction", False),
    (("--max-grad-norm",), "max_grad_norm", None, "float", None, 1.0, "_StoreAction", False),
    (("--micro-batch",), "micro_batch", None, "int", None, 0, "_StoreAction", False),
    (
        ("--loss",),
        "loss",
        None,
        None,
        ("grpo", "gspo", "clip-higher", "kl-cov", "clip-cov", "forking"),
        "grpo",
        "_StoreAction",
        False,
    ),
    (("--era", "--no-era"), "era", 0, None, None, True, "BooleanOptionalAction", False),
    (("--era-low",), "era_low", None, "float", None, 0.45, "_StoreAction", False),
    (("--era-high",), "era_high", None, "float", None, 3.0, "_StoreAction", False),
    (("--era-k",), "era_k", None, "float", None, 2.0, "_StoreAction", False),
    (("--era-topk",), "era_topk", None, "int", None, 20, "_StoreAction", False),
    (
        ("--adv-scale", "--no-adv-scale"),
        "adv_scale",
        0,
        None,
        None,
        False,
        "BooleanOptionalAction",
        False,
    ),
    (
        ("--entropy-bonus-target",),
        "entropy_bonus_target",
        None,
        "float",
        None,
        None,
        "_StoreAction",
        False,
    ),
    (("--entropy-bonus-lr",), "entropy_bonus_lr", None, "float", None, 0.05, "_StoreAction", False),
    (("--eval-every",), "eval_every", None, "int", None, 10, "_StoreAction", False),
    (("--eval-size",), "eval_size", None, "int", None, 128, "_StoreAction", False),
    (("--ckpt-every",), "ckpt_every", None, "int", None, 10, "_StoreAction", False),
    (
        ("--tensorboard", "--no-tensorboard"),
        "tensorboard",
        0,
        None,
        None,
        True,
        "BooleanOptionalAction",
        False,
    ),
    (("--resume",), "resume", 0, None, None, False, "_StoreTrueAction", False),
    (("--quick",), "quick", 0, None, None, False, "_StoreTrueAction", False),
    (("--compare",), "compare", 0, None, None, False, "_StoreTrueAction", False),
    (("--seeds",), "seeds", "+", "int", None, [0, 1, 2], "_StoreAction", False),
    (("--pass-at-k-prompts",), "pass_at_k_prompts", None, "int", None, 0, "_StoreAction", False),
]
EVAL = [
    (("-h", "--help"), "help", 0, None, None, "==SUPPRESS==", "_HelpAction", False),
    (("--model",), "model", None, None, None, None, "_StoreAction", True),
    # optional: a compact-trainer run directory brings its heldout.jsonl
    (("--data",), "data", "+", None, None, [], "_StoreAction", False),
    (("--out",), "out", None, None, None, "runs/eval", "_StoreAction", False),
    (
        ("--mode",),
        "mode",
        None,
        None,
        ("greedy", "sampled", "paper"),
        "greedy",
        "_StoreAction",
        False,
    ),
    (("--k",), "k", None, "int", None, 4, "_StoreAction", False),
    (("--temperature",), "temperature", None, "float", None, 1.0, "_StoreAction", False),
    (("--max-new-tokens",), "max_new_tokens", None, "int", None, 1024, "_StoreAction", False),
    (("--limit",), "limit", None, "int", None, None, "_StoreAction", False),
    (("--batch-size",), "batch_size", None, "int", None, 16, "_StoreAction", False),
    (
        ("--prompt-template",),
        "prompt_template",
        None,
        None,
        None,
        "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
        "_StoreAction",
        False,
    ),
    (
        ("--chat-template",),
        "chat_template",
        None,
        None,
        ("auto", "on", "off"),
        "auto",
        "_StoreAction",
        False,
    ),
    (("--backend",), "backend", None, None, ("hf", "vllm"), "hf", "_StoreAction", False),
    (("--seed",), "seed", None, "int", None, 0, "_StoreAction", False),
    (("--threads",), "threads", None, "int", None, 0, "_StoreAction", False),
]


def _snapshot(parser: argparse.ArgumentParser) -> list[tuple]:
    return [
        (
            tuple(a.option_strings),
            a.dest,
            a.nargs,
            a.type.__name__ if a.type is not None else None,
            tuple(a.choices) if a.choices else None,
            SUPPRESS if a.default is argparse.SUPPRESS else a.default,
            type(a).__name__,
            a.required,
        )
        for a in parser._actions
    ]


@pytest.mark.parametrize(("build", "expected"), [(train_parser, TRAIN), (eval_parser, EVAL)])
def test_the_flags_are_those_of_the_hand_written_parsers(build, expected):
    assert _snapshot(build()) == expected


@pytest.mark.parametrize("build", [train_parser, eval_parser])
def test_help_shows_each_default_once(build):
    parser = build()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = formatter._expand_help(action)
        shown = text.count("default:") + text.count("(default ")
        assert shown == (0 if action.required else 1), (action.option_strings, text)
        assert "{{" not in text and "}}" not in text, (action.option_strings, text)


def test_the_default_prompt_template_is_unchanged():
    from era_llm_app.evaluate import DEFAULT_TEMPLATE, EvalConfig

    assert DEFAULT_TEMPLATE == (
        "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    )
    assert EvalConfig(model="m", data=[]).prompt_template == DEFAULT_TEMPLATE
