"""What `era-llm-train` and `era-llm-eval` share: loading a local checkpoint.

The rollout backends live in `era_llm.rollout` (`Rollout`, `HFRollout`, `VLLMRollout`,
`make_rollout`); they are re-exported here for callers of this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from era_llm.rollout import HFRollout, Rollout, VLLMRollout, make_rollout

__all__ = [
    "HFRollout",
    "Rollout",
    "VLLMRollout",
    "load_checkpoint",
    "make_rollout",
    "quiet_transformers",
]


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and info logs (we draw our own bar)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_checkpoint(
    path: str | os.PathLike, *, dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` from a local Hugging Face checkpoint directory.

    Raises `FileNotFoundError` naming the path when it does not exist or has no ``config.json``
    (we never download: a hub name is not a path), and `ValueError` when its weights, config or
    tokenizer cannot be loaded (a corrupt or truncated file).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--model {path}: no such directory (a local checkpoint is needed)")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"--model {path}: not a checkpoint (no config.json in it)")
    quiet_transformers()
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:  # corrupt weights, a bad config, a missing tokenizer: all one fault
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"--model {path}: the checkpoint cannot be loaded ({type(error).__name__}: {first})"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
