"""A synthetic verifiable task, a character tokenizer and a tiny causal LM, all built in code.

Everything here runs on CPU in seconds with no downloads, so trainers and integrations (our
own GRPO trainer, the TRL hook) can be tested end to end:

* `ArithmeticTask`: ``"37+485="`` -> ``"522"``; exact answers, graded by
  `era_llm.verify.exact_match_reward`. Operands have `min_digits`..`max_digits` digits.
* `SplitTask`: ``"57="`` -> any ``"a+b"`` with ``a + b = 57`` (``a, b >= 0``): a task with
  several valid answers, graded by `SplitTask.reward`; `SplitTask.demonstration` draws one of
  them uniformly (the supervised warm-up's target).
* `char_tokenizer()`: one token per printable ASCII character (plus newline), with
  ``<pad>``, ``<eos>`` and ``<unk>``, wrapped in `transformers.PreTrainedTokenizerFast` so it
  saves and loads with `save_pretrained` / `AutoTokenizer.from_pretrained`.
* `tiny_causal_lm(tokenizer)`: a randomly initialised `Qwen3ForCausalLM` (default 2 layers,
  width 64, about 0.1 M parameters) that saves and loads with `save_pretrained` /
  `AutoModelForCausalLM.from_pretrained`. (Qwen3 rather than Qwen2: for a `qwen2` config,
  transformers 5's `AutoTokenizer` swaps in its Qwen2 tokenizer class, which drops spaces.)

>>> import numpy as np
>>> task = ArithmeticTask(op="+", min_digits=2, max_digits=2)
>>> p = task.sample(np.random.default_rng(0), 1)[0]
>>> int(p.prompt[:2]) + int(p.prompt[3:5]) == int(p.answer), p.prompt[-1]
(True, '=')
>>> tok = char_tokenizer()
>>> tok.decode(tok("12+3=")["input_ids"])
'12+3='
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen3ForCausalLM

import numpy as np

from era_llm.verify import exact_match_reward

__all__ = [
    "SPECIAL_TOKENS",
    "ArithmeticTask",
    "Problem",
    "SplitTask",
    "char_tokenizer",
    "tiny_causal_lm",
]

SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "<eos>", "unk_token": "<unk>"}
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class Problem:
    """A prompt and its exact reference answer."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class ArithmeticTask:
    """``a <op> b =`` with operands of `min_digits`..`max_digits` digits; exact integer answer.

    Draws use the caller's `numpy.random.Generator`, so a run is reproducible (and resumable)
    from that generator's state.
    """

    op: str = "+"
    min_digits: int = 1
    max_digits: int = 3

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {self.op!r}")
        if not 1 <= self.min_digits <= self.max_digits <= 9:
            raise ValueError(
                "need 1 <= min_digits <= max_digits <= 9, got "
                f"min_digits={self.min_digits}, max_digits={self.max_digits}"
            )

    def _operand(self, rng: np.random.Generator) -> int:
        digits = int(rng.integers(self.min_digits, self.max_digits + 1))
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return int(rng.integers(low, 10**digits))

    def sample(self, rng: np.random.Generator, n: int) -> list[Problem]:
        """`n` problems drawn from `rng`."""
        out = []
        for _ in range(n):
            a, b = self._operand(rng), self._operand(rng)
            out.append(Problem(f"{a}{self.op}{b}=", str(_OPS[self.op](a, b))))
        return out

    @staticmethod
    def demonstration(problem: Problem, rng: np.random.Generator) -> str:
        """The supervised warm-up's target for `problem`: its one answer (`rng` unused)."""
        return problem.answer

    @staticmethod
    def reward(response: str, answer: str) -> float:
        """`era_llm.verify.exact_match_reward`: the answer is unique."""
        return exact_match_reward(response, answer)

    def max_answer_chars(self) -> int:
        """Longest possible answer, in characters (for `max_new_tokens`)."""
        top = 10**self.max_digits - 1
        if self.op == "-":
            return len(str(-top))  # 0 - top
        return len(str(_OPS[self.op](top, top)))


@dataclass(frozen=True)
class SplitTask:
    """``N=`` with ``N`` of `min_digits`..`max_digits` digits; a response ``a+b`` is right when
    ``a`` and ``b`` are non-negative integers with ``a + b = N``, so each prompt has ``N + 1``
    valid answers. `Problem.answer` holds ``N``."""

    min_digits: int = 1
    max_digits: int = 2

    def __post_init__(self) -> None:
        ArithmeticTask("+", self.min_digits, self.max_digits)  # the same digit checks

    def sample(self, rng: np.random.Generator, n: int) -> list[Problem]:
        """`n` problems drawn from `rng`."""
        operand = ArithmeticTask("+", self.min_digits, self.max_digits)._operand
        return [Problem(f"{total}=", str(total)) for total in (operand(rng) for _ in range(n))]

    @staticmethod
    def demonstration(problem: Problem, rng: np.random.Generator) -> str:
        """One valid answer to `problem`, ``a`` drawn uniformly from ``0..N``."""
        total = int(problem.answer)
        a = int(rng.integers(0, total + 1))
        return f"{a}+{total - a}"

    @staticmethod
    def reward(response: str, answer: str) -> float:
        """1.0 if `response` (first line, stripped) is ``a+b`` with digits only and
        ``a + b`` equal to `answer`, else 0.0.

        >>> SplitTask.reward("20+37", "57"), SplitTask.reward("57+0", "57")
        (1.0, 1.0)
        >>> SplitTask.reward("20+36", "57"), SplitTask.reward("57", "57")
        (0.0, 0.0)
        """
        parts = response.split("\n", 1)[0].strip().split("+")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return 0.0
        return 1.0 if int(parts[0]) + int(parts[1]) == int(answer) else 0.0

    def max_answer_chars(self) -> int:
        """Longest valid answer without leading zeros, in characters (``a+b``, each of at
        most `max_digits` digits)."""
        return 2 * self.max_digits + 1


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level `PreTrainedTokenizerFast`: printable ASCII + newline + 3 specials.

    Ids: ``<pad>`` 0, ``<eos>`` 1, ``<unk>`` 2, then one id per character. Characters outside
    the alphabet map to ``<unk>``. No BOS is added, so ``tok(text)`` has one id per character.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [*string.printable[:95], "\n"]  # digits, letters, punctuation, space
    chars = list(dict.fromkeys(c for c in chars if c not in "\t\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    # BPE with no merges over the whole string is exactly a character-level model.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS.values()))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS
    )
    tok.padding_side = "left"  # generation pads prompts on the left
    return tok


def tiny_causal_lm(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 256,
    seed: int = 0,
) -> Qwen3ForCausalLM:
    """A randomly initialised `Qwen3ForCausalLM` sized for `tokenizer` (tied embeddings).

    Initialisation is seeded by `seed` (the global torch RNG is left as it was).
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
    # special-token ids are ints (transformers types the attributes loosely)
    pad_id = cast("int | None", tokenizer.pad_token_id)
    eos_id = cast("int | None", tokenizer.eos_token_id)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    return model
