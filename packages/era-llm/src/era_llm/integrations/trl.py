"""ERA inside TRL's GRPO trainer: `ERAGRPOTrainer`, a drop-in `trl.GRPOTrainer` subclass.

Sampling stays unmodified. After TRL has generated and scored a batch (its
``_generate_and_score_completions``), the trainer

1. runs one no-grad pass of the current (= sampling) policy over the completions for the token
   entropies of ``softmax(z / temperature)``,
2. computes each response's scale ``c`` and (optionally) scaled advantage with
   :func:`era_llm.era.era_scales`, logs the band statistics as ``era/...`` metrics
   (``era/frac_below``, ``era/frac_inside``, ``era/frac_above``, ``era/top_entropy_mean``,
   ``era/rest_entropy_mean``, ``era/scale_mean``, ...),
3. recomputes TRL's old log-probs (when TRL keeps them: ``num_iterations > 1``, misaligned
   generation, vLLM) under the same per-response scale,

and in the loss every log-prob is that of ``softmax(c * z / temperature)`` (optionally after the
top-k filter), computed by :func:`era_llm.ops.token_logprobs_from_hidden` in chunks from the
final hidden states. TRL's own loss types (``grpo``, ``dapo``, ``bnpo``, ... and GSPO via
``importance_sampling_level="sequence"``), clipping and logging stay as they are.

Limits: text-only models whose logits are ``lm_head(hidden)`` (no final logit soft-capping or
logit multipliers), no MoE auxiliary loss; other cases raise ``NotImplementedError``.

Example (CPU, a tiny model built in code)::

    from datasets import Dataset
    from trl.trainer.grpo_config import GRPOConfig
    from era_llm.era import ERAConfig
    from era_llm.integrations.trl import ERAGRPOTrainer
    from era_llm.toy import char_tokenizer, tiny_causal_lm

    tok = char_tokenizer()
    trainer = ERAGRPOTrainer(
        model=tiny_causal_lm(tok),
        processing_class=tok,
        reward_funcs=lambda completions, **kw: [float("7" in c) for c in completions],
        train_dataset=Dataset.from_dict({"prompt": ["3+4="] * 16}),
        args=GRPOConfig(output_dir="out", per_device_train_batch_size=4, num_generations=4,
                        max_completion_length=4, max_steps=2, use_cpu=True, report_to="none"),
        era_config=ERAConfig(),  # the paper's band [0.45, 3.0] and k = 2
    )
    trainer.train()
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import TYPE_CHECKING, Any, cast

import torch
from accelerate.utils import is_peft_model
from torch.distributed.tensor import DTensor
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import FusedCausalLMOutput, maybe_gather_lm_head_ctx

from era_llm.era import ERAConfig, era_scales, stats_to_floats
from era_llm.ops import token_logprobs_from_hidden

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel
    from trl.trainer.grpo_config import GRPOConfig

__all__ = ["ERAGRPOTrainer", "add_era_lm_head"]

_MULTIMODAL = (
    "pixel_values",
    "image_grid_thw",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


def add_era_lm_head(
    model: PreTrainedModel,
    temperature: float = 1.0,
    compile: bool = False,
    cast_lm_head_to_fp32: bool = False,
) -> None:
    """Let ``model(..., labels=labels, era_scale=c)`` return ERA log-probs without logits.

    Wraps ``model.forward`` (after TRL's own fused-head patch, which stays in place for every
    call without ``era_scale``). With ``era_scale`` (a ``[B]`` tensor), the backbone runs, and
    the next-token log-probs of ``softmax(c_b * z / temperature)`` (``era_topk``: after keeping
    the ``k`` largest logits) and the entropies of ``softmax(z / temperature)`` are computed in
    chunks from the final hidden states; labels ``-100`` are ignored. Returns TRL's
    ``FusedCausalLMOutput`` (``log_probs``, ``entropy``, ``label_mask``; ``loss`` the mean NLL).
    ``compile=True`` uses the fused ``torch.compile`` kernels of :mod:`era_llm.ops`.

    Multi-GPU, as TRL's own fused head (``trl.trainer.utils.add_fused_lm_head``): an FSDP2 head
    (``DTensor`` weight) is gathered with ``full_tensor()``; under DeepSpeed ZeRO-3 the head is
    gathered with TRL's ``maybe_gather_lm_head_ctx`` around the forward and again around the
    backward's recomputation; ``cast_lm_head_to_fp32`` (TRL's ``GRPOConfig`` flag, which casts
    the head's weights to float32) projects float32 hidden states outside autocast.
    """
    _check_plain_head(model)
    inner = model.forward

    @functools.wraps(type(model).forward)
    def forward(
        self: PreTrainedModel,
        *args: Any,
        era_scale: torch.Tensor | None = None,
        era_topk: int | None = None,
        **kwargs: Any,
    ) -> Any:
        if era_scale is None:
            return inner(*args, **kwargs)
        labels = kwargs.pop("labels")
        kwargs.pop("fused_lm_head", None)
        kwargs.pop("num_items_in_batch", None)
        if kwargs.get("output_router_logits"):
            raise NotImplementedError("ERA's fused head does not compute the MoE auxiliary loss")
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        labels = labels[:, 1:]
        # a causal LM's output embedding is its lm_head Linear (transformers leaves it untyped)
        lm_head = cast("torch.nn.Linear", self.get_output_embeddings())
        weight, bias = _full_head(lm_head)
        hidden = hidden.to(weight.device)
        labels = labels.to(weight.device)
        mask = labels != -100
        autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if cast_lm_head_to_fp32:
            hidden = hidden.float()
            autocast = torch.autocast(hidden.device.type, enabled=False)
        head = cast("list[torch.nn.Parameter]", [weight, bias])  # TRL's helper skips None

        def gather() -> contextlib.AbstractContextManager[Any]:
            return maybe_gather_lm_head_ctx(*head)

        with autocast, gather():
            out = token_logprobs_from_hidden(
                hidden,
                weight,
                labels.clamp(min=0),
                bias=bias,
                scale=era_scale.to(weight.device),
                topk=era_topk,
                mask=mask,
                temperature=temperature,
                compile=compile,
                backward_context=gather,
            )
        loss = -out.logprobs.sum() / mask.sum().clamp(min=1)
        return FusedCausalLMOutput(
            loss=loss, log_probs=out.logprobs, entropy=out.entropy, label_mask=mask
        )

    model.forward = types.MethodType(forward, model)


def _check_plain_head(model: PreTrainedModel) -> None:
    """Refuse models whose logits are not the plain ``lm_head`` output (soft-capped, scaled)."""
    text_config = model.config.get_text_config()
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier"):
        if getattr(text_config, attr, None) not in (None, 1.0):
            raise NotImplementedError(
                f"ERA's fused head supports plain lm_head logits; this model has {attr}="
                f"{getattr(text_config, attr)}"
            )


def _full_head(lm_head: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head's weight and bias as full tensors: FSDP2 shards them as ``DTensor`` (gathered
    here, differentiably, as TRL's fused head does); other parameters are returned as they are."""
    weight, bias = lm_head.weight, lm_head.bias
    if isinstance(weight, DTensor):
        weight = weight.full_tensor()
        if isinstance(bias, DTensor):
            bias = bias.full_tensor()
    return weight, bias


class ERAGRPOTrainer(GRPOTrainer):
    """`trl.GRPOTrainer` with adaptive ERA (docs/paper.md §3); takes ``era_config`` besides TRL's
    arguments (default :class:`era_llm.era.ERAConfig`, the paper's band) and ``era_compile``
    (fused ``torch.compile`` kernels for the ERA log-probs; off by default)."""

    def __init__(
        self,
        *args: Any,
        era_config: ERAConfig | None = None,
        era_compile: bool = False,
        **kwargs: Any,
    ) -> None:
        self.era_config = ERAConfig() if era_config is None else era_config
        if not isinstance(self.era_config, ERAConfig):
            raise TypeError(f"era_config must be an ERAConfig, got {type(self.era_config)}")
        super().__init__(*args, **kwargs)
        model = self.model
        assert model is not None  # GRPOTrainer.__init__ always builds or receives one
        base = cast("PeftModel", model).get_base_model() if is_peft_model(model) else model
        add_era_lm_head(
            cast("PreTrainedModel", base),
            temperature=self.temperature,
            compile=bool(era_compile),
            cast_lm_head_to_fp32=self._grpo_args.cast_lm_head_to_fp32,
        )
        if self.beta != 0.0:
            if self.ref_model is None:
                raise NotImplementedError(
                    "ERAGRPOTrainer with beta != 0 needs a reference model; a PEFT model's "
                    "disabled adapter as the reference is not supported"
                )
            add_era_lm_head(
                cast("PreTrainedModel", self.accelerator.unwrap_model(self.ref_model)),
                temperature=self.temperature,
                compile=bool(era_compile),
                cast_lm_head_to_fp32=self._grpo_args.cast_lm_head_to_fp32,
            )
        self._era_scale: torch.Tensor | None = None
        # TRL's own no-grad pass over the policy (its old log-probs), captured with entropies
        self._era_capture: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def _grpo_args(self) -> GRPOConfig:
        return cast("GRPOConfig", self.args)  # GRPOTrainer always holds a GRPOConfig

    # -- scoring --------------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        capture = self._era_capture
        if self._era_scale is None and capture is not None and not capture and model is self.model:
            # TRL's old-log-prob pass: the same forward at scale 1 also gives ERA's entropies
            self._era_scale = torch.ones(input_ids.size(0), device=input_ids.device)
            try:
                logps, ent, aux = self._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
                )
            finally:
                self._era_scale = None
            assert ent is not None
            capture.append((logps, ent))
            return logps, ent, aux
        if self._era_scale is None:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
            )
        if kwargs.get("compute_aux_loss"):
            raise NotImplementedError("ERAGRPOTrainer does not support the MoE auxiliary loss")
        if any(kwargs.get(name) is not None for name in _MULTIMODAL):
            raise NotImplementedError("ERAGRPOTrainer supports text-only models")
        scale = self._era_scale
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, am = input_ids[start:end], attention_mask[start:end]
            labels = ids.masked_fill(am == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                out = model(
                    input_ids=ids,
                    attention_mask=am,
                    labels=labels,
                    era_scale=scale[start:end],
                    era_topk=self.era_config.logit_topk,
                )
            logps.append(out.log_probs[:, -logits_to_keep:])
            entropies.append(out.entropy[:, -logits_to_keep:])
        return torch.cat(logps), torch.cat(entropies), None

    @torch.no_grad()
    def _era_pass(
        self,
        ids: torch.Tensor,
        am: torch.Tensor,
        keep: int,
        scale: torch.Tensor,
        model: Any = None,  # the policy (default) or TRL's reference model, possibly wrapped
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._era_scale = scale
        model = self.model if model is None else model
        assert model is not None  # set by GRPOTrainer.__init__
        try:
            logps, ent, _ = self._get_per_token_logps_and_entropies(
                model, ids, am, keep, batch_size=self.args.per_device_train_batch_size
            )
        finally:
            self._era_scale = None
        assert ent is not None  # the ERA branch above always returns entropies
        return logps, ent

    def _trl_computes_old_logps(self) -> bool:
        """Whether TRL's ``_generate_and_score_completions`` runs its own no-grad old-log-prob pass
        over the policy (the condition TRL tests)."""
        # GRPOConfig resolves steps_per_generation in __post_init__
        generate_every = (self._grpo_args.steps_per_generation or 1) * self.num_iterations
        return bool(
            self.args.gradient_accumulation_steps % generate_every != 0
            or (self.use_vllm and self.vllm_importance_sampling_correction)
        )

    def _generate_and_score_completions(
        self, inputs: list[dict[str, torch.Tensor | Any]]
    ) -> dict[str, torch.Tensor | Any]:
        # no-grad passes per generation batch: one for the entropies (TRL's own old-log-prob
        # pass when it runs one, else ours), one more when a scale is not 1 and old log-probs,
        # off-policy masking or the KL need the ERA policy's, plus the reference model's with KL
        self._era_capture = [] if self._trl_computes_old_logps() else None
        try:
            output = super()._generate_and_score_completions(inputs)
            captured = self._era_capture
        finally:
            self._era_capture = None
        if any(output.get(name) is not None for name in _MULTIMODAL):
            raise NotImplementedError("ERAGRPOTrainer supports text-only models")
        assert self.model is not None  # set by GRPOTrainer.__init__
        mode = "train" if self.model.training else "eval"
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        am = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        keep = output["completion_ids"].size(1)
        mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            mask = mask * output["tool_mask"]
        if captured:
            unscaled_logps, entropy = captured[0]
        else:
            ones = torch.ones(ids.size(0), device=ids.device)
            unscaled_logps, entropy = self._era_pass(ids, am, keep, ones)
        res = era_scales(entropy, mask, output["advantages"], self.era_config)
        output["advantages"] = res.advantages
        output["era_scale"] = res.scale
        scaled = bool((res.scale != 1).any()) or self.era_config.logit_topk is not None
        era_old = None
        if output.get("old_per_token_logps") is not None or (
            self.off_policy_mask_threshold is not None
            and output.get("sampling_per_token_logps") is not None
        ):
            # old log-probs under the same per-response scale (and top-k) as the update
            era_old = self._era_pass(ids, am, keep, res.scale)[0] if scaled else unscaled_logps
        if output.get("old_per_token_logps") is not None:
            output["old_per_token_logps"] = era_old
        if self.off_policy_mask_threshold is not None and era_old is not None:
            # the off-policy mask compares the sampling policy's log-probs with the update's: both
            # of the ERA policy (TRL's vLLM correction above compared the unscaled ones)
            output["sampling_per_token_logps"] = era_old
        if self.beta != 0.0 and scaled:
            # the KL compares the update's ERA log-probs with the reference's under the same scale
            output["ref_per_token_logps"] = self._era_pass(
                ids, am, keep, res.scale, model=self.ref_model
            )[0]
        for name, value in stats_to_floats(res.stats).items():  # one transfer per batch
            self._metrics[mode][f"era/{name}"].append(value)
        return output

    def _compute_loss(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor | Any]
    ) -> torch.Tensor:
        self._era_scale = inputs["era_scale"]
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._era_scale = None
