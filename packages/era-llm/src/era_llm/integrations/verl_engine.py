r"""ERA inside verl's FSDP engine: the old-log-prob pass in one forward, and the top-k stage.

verl's actor computes log-probs and entropies from the logits of one forward per micro-batch
(``FSDPEngineWithLMHead.prepare_model_outputs``). ERA needs three things from that pass: the
entropies of the **unscaled** policy (its band statistic), the log-probs under the per-response
scale :math:`c_i \in \{k, 1, 1/k\}`, and (with the paper's first stage) both restricted to the
``k`` largest logits. The scale depends on the response's entropies and on its advantage, which
verl computes after this pass; so the pass returns the log-probs under all three scales (three
log-sum-exps over the vocabulary, no second forward) and the trainer keeps, per response, the
one its scale selects (:func:`select_old_log_probs`).

:class:`ERAFSDPEngineWithLMHead` (built by :func:`engine_class`, installed over verl's own
``fsdp`` / ``fsdp2`` language-model engine by :func:`install_engine`) is verl's engine plus one
branch, taken only when the micro-batch carries ERA's keys (the trainer sets them, see
:data:`PASS_KEY`, :data:`TOPK_KEY`, :data:`TOPK_LABEL_KEY`):

* the old-log-prob pass (:data:`PASS_KEY` = ``k``): ``log_probs`` and ``entropy`` as verl
  computes them (temperature :math:`T`), plus ``era_log_probs`` (:math:`c = 1`, top-k filtered
  when the top-k stage is on), ``era_log_probs_sharpen`` (:math:`c = k`) and
  ``era_log_probs_flatten`` (:math:`c = 1/k`);
* the update with the top-k stage (:data:`TOPK_KEY` = ``k_top``): ``log_probs`` over the
  ``k_top`` largest logits under the per-sample temperature :math:`T / c_i`, differentiable.

Every candidate divides the logits by the temperature :math:`T / c` in the logits' dtype, as
verl's engine does in the update, so the first update step's ratio is 1 up to float32 rounding.

Top-k stage (the paper's first stage, ``k_top = 20``): the log-prob of label :math:`a` is taken
over the ``k_top`` largest logits of its token. For a label outside them two behaviours exist:

* ``"constant"`` (default, the authors' code): its log-prob is the constant
  :data:`OUTSIDE_TOPK_LOGPROB` in both the old and the new pass, so its PPO ratio is 1 and it
  gets no gradient;
* ``"renormalise"`` (``era_llm.ops.token_logprobs(topk=...)``): it is a ``(k_top+1)``-th
  candidate, renormalised over the ``k_top`` largest logits plus its own, a finite log-prob with
  a gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from era_llm.ops import default_chunk_size

__all__ = [
    "CANDIDATE_FIELDS",
    "OUTSIDE_TOPK_LOGPROB",
    "PASS_KEY",
    "TOPK_KEY",
    "TOPK_LABEL_KEY",
    "TOPK_LABEL_MODES",
    "PassRequest",
    "check_topk_label",
    "engine_class",
    "era_pass_logprobs",
    "install_engine",
    "pass_request",
    "select_old_log_probs",
    "topk_label_logprobs",
]

# the log-prob of a label outside the top k under the authors' behaviour (their fill value)
OUTSIDE_TOPK_LOGPROB = -1e4
TOPK_LABEL_MODES = ("constant", "renormalise")

# non-tensor keys of a verl micro-batch that switch the engine's ERA branch on
PASS_KEY = "era_pass_k"  # the old-log-prob pass: ERA's factor k
TOPK_KEY = "era_logit_topk"  # the top-k stage: how many logits (0: off)
TOPK_LABEL_KEY = "era_topk_label"  # a label outside the top k: one of TOPK_LABEL_MODES

# model-output fields of the old-log-prob pass, by the scale they hold
CANDIDATE_FIELDS = {
    "unit": "era_log_probs",
    "sharpen": "era_log_probs_sharpen",
    "flatten": "era_log_probs_flatten",
}


def check_topk_label(mode: str) -> str:
    """``mode`` if it is one of :data:`TOPK_LABEL_MODES`, else ValueError naming it."""
    if mode not in TOPK_LABEL_MODES:
        raise ValueError(f"era_topk_label must be one of {TOPK_LABEL_MODES}, got {mode!r}")
    return mode


def _topk_from(
    label_logit: torch.Tensor,
    top_values: torch.Tensor,
    inside: torch.Tensor,
    label_mode: str,
) -> torch.Tensor:
    """Log-prob of the label over the top-k values (float32), for a label inside or outside."""
    lse = torch.logsumexp(top_values, dim=-1)
    if label_mode == "constant":
        outside = torch.full_like(lse, OUTSIDE_TOPK_LOGPROB)
        return torch.where(inside, label_logit - lse, outside)
    return label_logit - torch.where(inside, lse, torch.logaddexp(lse, label_logit))


def topk_label_logprobs(
    rows: torch.Tensor, labels: torch.Tensor, k: int, label_mode: str = "constant"
) -> torch.Tensor:
    """Log-probs of ``labels`` over the ``k`` largest of each row of ``rows``, differentiable.

    Args:
      rows: ``[N, V]`` logits (already divided by the temperature), any float dtype.
      labels: ``[N]`` token ids.
      k: how many logits to keep, ``1 <= k <= V``.
      label_mode: ``"constant"`` (a label outside the top k gets :data:`OUTSIDE_TOPK_LOGPROB`
        and no gradient) or ``"renormalise"`` (it joins the top k as a ``(k+1)``-th candidate).

    Returns:
      ``[N]`` float32. Gradients reach only the top-k logits and the label's.
    """
    check_topk_label(label_mode)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= rows.shape[-1]:
        raise ValueError(f"k must be an int in [1, {rows.shape[-1]}], got {k!r}")
    top_values, top_index = torch.topk(rows, k, dim=-1)
    labels = labels.long()
    label_logit = rows.gather(-1, labels[:, None])[:, 0].float()
    inside = (top_index == labels[:, None]).any(-1)
    return _topk_from(label_logit, top_values.float(), inside, label_mode)


@torch.no_grad()
def era_pass_logprobs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: torch.Tensor,
    k: float,
    topk: int = 0,
    label_mode: str = "constant",
    chunk_rows: int | None = None,
) -> dict[str, torch.Tensor]:
    """The old-log-prob pass's per-token quantities, in chunks of rows (float32, no gradient).

    Args:
      logits: ``[N, V]`` raw logits (not divided by the temperature).
      labels: ``[N]`` next-token ids.
      temperature: ``[N]`` float32 per-row sampling temperature :math:`T`.
      k: ERA's factor (candidates at temperatures :math:`T`, :math:`T/k`, :math:`kT`).
      topk: the top-k stage's size (0: full softmax).
      label_mode: see :func:`topk_label_logprobs`.
      chunk_rows: rows per chunk (default :func:`era_llm.ops.default_chunk_size`).

    Returns:
      ``log_probs`` and ``entropy`` (full softmax at :math:`T`: verl's fields) and the three
      :data:`CANDIDATE_FIELDS`, each ``[N]``.
    """
    check_topk_label(label_mode)
    n, vocab = logits.shape
    step = chunk_rows or default_chunk_size(vocab, logits.device)
    names = ("log_probs", "entropy", *CANDIDATE_FIELDS.values())
    out = {name: torch.empty(n, dtype=torch.float32, device=logits.device) for name in names}
    factors = {"unit": 1.0, "sharpen": float(k), "flatten": 1.0 / float(k)}
    labels = labels.long()
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        raw, label = logits[rows], labels[rows, None]
        t = temperature[rows, None].float()
        top_index = inside = None
        for name, c in factors.items():
            # z / (T / c) in the logits' dtype: the update's own arithmetic (verl's engine)
            z = (raw / (t / c).clamp(min=1e-8).to(raw.dtype)).float()
            z_label = z.gather(-1, label)[:, 0]
            if name == "unit":  # one exp gives the log-partition and the entropy
                top = z.amax(-1, keepdim=True)
                e = (z - top).exp_()
                total = e.sum(-1)
                lse = top[:, 0] + total.log()
                out["log_probs"][rows] = z_label - lse
                out["entropy"][rows] = lse - (e.mul_(z)).sum(-1) / total
                del e
            if topk:
                if top_index is None or inside is None:  # the same k logits at every scale c > 0
                    top_index = torch.topk(z, topk, dim=-1).indices
                    inside = (top_index == label).any(-1)
                lp = _topk_from(z_label, z.gather(-1, top_index), inside, label_mode)
            elif name == "unit":
                lp = out["log_probs"][rows]
            else:
                lp = z_label - torch.logsumexp(z, dim=-1)
            out[CANDIDATE_FIELDS[name]][rows] = lp
    return out


def select_old_log_probs(scale: torch.Tensor, candidates: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per response, the candidate its scale selects: ``[B, R]`` float32 from ``[B]`` scales in
    ``{k, 1, 1/k}`` and ``[B, R]`` candidates keyed as :data:`CANDIDATE_FIELDS`."""
    s = scale[:, None].to(candidates["unit"].device)
    flat_or_unit = torch.where(s < 1, candidates["flatten"], candidates["unit"])
    return torch.where(s > 1, candidates["sharpen"], flat_or_unit).to(torch.float32)


class PassRequest(NamedTuple):
    """What a micro-batch asks of the engine's ERA branch (from its non-tensor keys)."""

    k: float | None  # the old-log-prob pass: ERA's factor; None in the update
    topk: int  # the top-k stage's size, 0 when off
    label_mode: str


def pass_request(micro_batch: Any) -> PassRequest | None:
    """The ERA request a verl micro-batch carries, or ``None`` (verl's own path)."""
    from verl.utils import tensordict_utils as tu

    k = tu.get_non_tensor_data(data=micro_batch, key=PASS_KEY, default=None)
    topk = int(tu.get_non_tensor_data(data=micro_batch, key=TOPK_KEY, default=0) or 0)
    if k is None and not topk:
        return None
    mode = tu.get_non_tensor_data(data=micro_batch, key=TOPK_LABEL_KEY, default="constant")
    return PassRequest(None if k is None else float(k), topk, check_topk_label(str(mode)))


class _Rows(NamedTuple):
    logits: torch.Tensor  # [N, V] raw logits of every packed token
    labels: torch.Tensor  # [N]
    temperature: torch.Tensor  # [N] float32
    finish: Callable[[torch.Tensor], torch.Tensor]  # [N] -> verl's nested per-sample layout


def _rows(engine: Any, output: Any, output_args: dict, micro_batch: Any) -> _Rows:
    """The logits of a micro-batch as packed rows, in either of verl's layouts."""
    from torch.distributed.tensor import DTensor
    from verl.utils import tensordict_utils as tu

    cu_seqlens = micro_batch["input_ids"].offsets()
    logits = output.logits
    if isinstance(logits, DTensor):  # tensor parallel: sharded over the vocabulary
        logits = logits.full_tensor()
    if tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
        pad_size = output_args["pad_size"]

        def finish_packed(x: torch.Tensor) -> torch.Tensor:
            x = engine._gather_and_unpad_packed(x, pad_size)
            return torch.nested.nested_tensor_from_jagged(x, cu_seqlens)

        return _Rows(
            logits.squeeze(0),
            output_args["input_ids_rmpad_rolled"],
            output_args["temperature_rmpad"].float(),
            finish_packed,
        )
    lengths = cu_seqlens.diff().tolist()
    rows = torch.cat([logits[i, :n] for i, n in enumerate(lengths)])
    t = output_args["temperature"].float().repeat_interleave(cu_seqlens.diff())
    return _Rows(
        rows,
        output_args["input_ids_rmpad_rolled"],
        t,
        lambda x: torch.nested.nested_tensor_from_jagged(x, cu_seqlens),
    )


def _refuse(micro_batch: Any) -> None:
    from verl.utils import tensordict_utils as tu

    for key, what in (
        ("use_fused_kernels", "actor_rollout_ref.model.use_fused_kernels=true"),
        ("distillation_use_topk", "top-k distillation"),
        ("calculate_sum_pi_squared", "calculate_sum_pi_squared"),
    ):
        if tu.get_non_tensor_data(data=micro_batch, key=key, default=False):
            raise ValueError(f"{what} is not supported with ERA's engine pass; turn it off")


def era_model_outputs(
    engine: Any, output: Any, output_args: dict, micro_batch: Any, request: PassRequest
) -> dict[str, torch.Tensor]:
    """The engine's ERA branch: the model-output fields for ``request`` (see the module doc)."""
    from verl.utils import tensordict_utils as tu

    _refuse(micro_batch)
    rows = _rows(engine, output, output_args, micro_batch)
    if request.k is not None:  # the old-log-prob pass (forward only)
        stats = era_pass_logprobs(
            rows.logits, rows.labels, rows.temperature, request.k, request.topk, request.label_mode
        )
        return {name: rows.finish(value) for name, value in stats.items()}
    scaled = rows.logits / rows.temperature[:, None].clamp(min=1e-8).to(rows.logits.dtype)
    lp = topk_label_logprobs(scaled, rows.labels, request.topk, request.label_mode)
    out = {"log_probs": rows.finish(lp)}
    if tu.get_non_tensor_data(data=micro_batch, key="calculate_entropy", default=False):
        out["entropy"] = rows.finish(engine.compute_entropy_from_logits(scaled))
    return out


_ENGINE: type | None = None


def engine_class() -> type:
    """verl's ``FSDPEngineWithLMHead`` plus ERA's branch (built once, lazily: it imports FSDP)."""
    global _ENGINE
    if _ENGINE is None:
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

        class ERAFSDPEngineWithLMHead(FSDPEngineWithLMHead):
            """verl's FSDP language-model engine; micro-batches with ERA's keys get ERA's pass."""

            def prepare_model_outputs(
                self, output: Any, output_args: Any, micro_batch: Any, logits_processor_func: Any
            ) -> dict[str, Any]:
                request = pass_request(micro_batch)
                if request is None:
                    verl_engine: Any = super()  # verl's registry decorator leaves it untyped
                    return verl_engine.prepare_model_outputs(
                        output, output_args, micro_batch, logits_processor_func
                    )
                return era_model_outputs(self, output, output_args, micro_batch, request)

        _ENGINE = ERAFSDPEngineWithLMHead
    return _ENGINE


def install_engine() -> type:
    """Make :func:`engine_class` verl's ``language_model`` engine for ``fsdp`` / ``fsdp2`` on
    every device verl registered its own for; returns the class."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    cls = engine_class()
    registry = EngineRegistry._engines.get("language_model", {})  # pyright: ignore[reportPrivateUsage]
    for backend in ("fsdp", "fsdp2"):
        entries = registry.get(backend, {})
        for key, value in list(entries.items()):
            if value is FSDPEngineWithLMHead:
                entries[key] = cls
    return cls
