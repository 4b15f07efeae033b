"""Sampling responses from a causal LM policy: one contract, two backends.

``rollout.generate(prompts, n, *, max_new_tokens, temperature=1.0, greedy=False) -> Rollout``
returns ``len(prompts) * n`` responses, prompt-major (row ``p * n + j`` is the ``j``-th response
to prompt ``p``), ready for a teacher-forced pass (left-padded prompts, right-padded responses,
`response_mask` up to and including the first EOS):

* `HFRollout`: transformers ``generate`` on the policy itself (CPU or GPU; always available).
  Sampling is from the unmodified distribution (``top_k=0``, ``top_p=1``) at ``temperature``.
* `VLLMRollout`: vLLM (GPU only; era-llm's optional ``vllm`` extra, imported when the engine is
  built); the policy's current weights are copied into the engine before each generation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase


__all__ = ["ROLLOUT_KINDS", "HFRollout", "Rollout", "VLLMRollout", "make_rollout", "response_mask"]

ROLLOUT_KINDS = ("hf", "vllm")


@dataclass
class Rollout:
    """Sampled responses: ``len(prompts) * n`` rows, prompt-major (row ``p * n + j``).

    ``prompt_ids``/``prompt_mask`` are left-padded; ``response_ids`` are right-padded with
    ``response_mask`` marking the generated tokens up to and including the first EOS.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    texts: list[str]


def response_mask(response_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """``[B, R]`` int64: 1 up to and including the first EOS of each row (all 1 without one).

    With :math:`e_t = [y_t = \\mathrm{eos}]`: :math:`m_t = [\\sum_{s<t} e_s = 0]`.

    >>> response_mask(torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]]), eos_id=2).tolist()
    [[1, 1, 0, 0], [1, 1, 1, 1]]
    """
    is_eos = (response_ids == eos_id).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS strictly before this position
    return (eos_before == 0).long()


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """``(pad_token_id, eos_token_id)`` of `tokenizer` (ints; transformers types them loosely)."""
    return cast(int, tokenizer.pad_token_id), cast(int, tokenizer.eos_token_id)


def _generate_ids(model: PreTrainedModel, **kwargs: Any) -> torch.Tensor:
    """``model.generate(**kwargs)`` of a causal LM (a `GenerationMixin`): the token ids, as
    ``return_dict_in_generate`` is not set."""
    # transformers' self-type for generate lists attributes that PreTrainedModel doesn't declare
    ids = cast("GenerationMixin", model).generate(**kwargs)  # pyright: ignore[reportAttributeAccessIssue]
    return cast(torch.Tensor, ids)


class HFRollout:
    """Sampling with transformers ``generate`` on the policy (temperature 1.0 = unmodified)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
    ) -> Rollout:
        tok = self.tokenizer
        tok.padding_side = "left"
        enc = tok(
            [p for p in prompts for _ in range(n)],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        sampling = (
            {"do_sample": False}
            if greedy
            else {
                "do_sample": True,
                "temperature": temperature,
                "top_k": 0,
                "top_p": 1.0,
            }
        )
        pad_id, eos_id = _special_ids(tok)
        out = _generate_ids(
            self.model,
            input_ids=enc["input_ids"].to(device),
            attention_mask=enc["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            **sampling,
        ).cpu()
        self.model.train(was_training)
        prompt_len = enc["input_ids"].shape[1]
        response_ids = out[:, prompt_len:]
        mask = response_mask(response_ids, eos_id)
        response_ids = torch.where(mask.bool(), response_ids, pad_id)
        texts = tok.batch_decode(response_ids, skip_special_tokens=True)
        return Rollout(enc["input_ids"], enc["attention_mask"], response_ids, mask, texts)


class VLLMRollout:
    """Sampling with vLLM on a GPU; the policy's current weights are loaded before each call.

    The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) with tensor parallel
    size 1 so that ``load_weights`` can reach the model runner.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        checkpoint: str | os.PathLike,
        *,
        gpu_memory: float = 0.3,
    ) -> None:
        if not torch.cuda.is_available():
            raise ValueError("VLLMRollout needs a CUDA GPU; use HFRollout on CPU")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            # vLLM is a GPU-only extra, absent from the CPU environments that type-check
            import vllm  # pyright: ignore[reportMissingImports]
        except ImportError as exc:
            raise ImportError(
                "VLLMRollout needs vLLM: install era-llm's `vllm` extra "
                "(`uv sync --package era-llm --extra vllm`)"
            ) from exc
        self._vllm = vllm
        self.model = model
        self.tokenizer = tokenizer
        self.llm = vllm.LLM(
            model=str(checkpoint),
            tensor_parallel_size=1,
            gpu_memory_utilization=gpu_memory,
            enable_prefix_caching=False,
        )

    def _sync_weights(self) -> None:
        runner = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner
        runner.model.load_weights(self.model.state_dict().items())

    def generate(
        self,
        prompts: list[str],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
    ) -> Rollout:
        tok = self.tokenizer
        pad_id, eos_id = _special_ids(tok)
        self._sync_weights()
        params = self._vllm.SamplingParams(
            n=1 if greedy else n,
            temperature=0.0 if greedy else temperature,
            top_k=-1,
            top_p=1.0,
            max_tokens=max_new_tokens,
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        rows = [o.token_ids for out in outputs for o in out.outputs]
        if greedy and n > 1:
            rows = [r for r in rows for _ in range(n)]
        width = max(1, max(len(r) for r in rows))
        response_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            response_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask = response_mask(response_ids, eos_id)
        mask &= (response_ids != pad_id) | (response_ids == eos_id)
        response_ids = torch.where(mask.bool(), response_ids, pad_id)
        tok.padding_side = "left"
        enc = tok(
            [p for p in prompts for _ in range(n)],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        texts = tok.batch_decode(response_ids, skip_special_tokens=True)
        return Rollout(enc["input_ids"], enc["attention_mask"], response_ids, mask, texts)


def make_rollout(
    kind: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    checkpoint: str | os.PathLike | None = None,
) -> HFRollout | VLLMRollout:
    """`HFRollout` for ``"hf"``, `VLLMRollout` for ``"vllm"`` (needs the checkpoint directory the
    policy was loaded from; vLLM is imported only here)."""
    if kind == "hf":
        return HFRollout(model, tokenizer)
    if kind == "vllm":
        if checkpoint is None:
            raise ValueError("rollout 'vllm' needs a checkpoint directory to start the engine")
        return VLLMRollout(model, tokenizer, checkpoint)
    raise ValueError(f"rollout kind must be one of {ROLLOUT_KINDS}, got {kind!r}")
