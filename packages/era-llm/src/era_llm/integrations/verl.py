r"""ERA in an unmodified verl (>= 0.9): a switch on any policy loss, the sync trainer, config keys.

verl already has the hooks ERA needs: a policy-loss registry
(``verl.trainer.ppo.core_algos.register_policy_loss``), a trainer registry, and per-sample
temperatures in its FSDP engine (``micro_batch["temperature"]`` may be a ``[B]`` tensor). ERA's
per-response factor :math:`c_i` is a per-response temperature :math:`T_i = T / c_i`
(docs/paper.md §3), and ERA changes nothing but the log-probs (through that temperature) and the
advantages, so it is a switch, ``policy_loss.era_enable=true``, combinable with any of verl's
policy losses (``vanilla`` with or without clip-higher, ``gspo``, ``clip_cov``, ``kl_cov``,
``sapo``, ``dppo_tv``, ...). Importing this module registers

* policy losses ``era`` (``vanilla`` with ERA on), ``era_gspo`` (``gspo`` with ERA on) and
  ``forking`` (the 20 % highest-entropy tokens only);
* :class:`ERAPolicyLossConfig`, verl's ``PolicyLossConfig`` plus ``era_enable``, ``era_low``,
  ``era_high``, ``era_k``, ``era_topk_fraction``, ``era_adv_scale``, ``era_logit_topk``,
  ``era_topk_label`` and ``forking_fraction``.

and :func:`setup` (Ray's ``worker_process_setup_hook``) installs the ERA trainer as verl's
``sync`` trainer mode (the mode keeps its name, and with it verl's synchronous replay buffer,
batch sizes and checkpointing) and, in the workers, ERA's FSDP engine
(:mod:`era_llm.integrations.verl_engine`) as verl's ``fsdp`` / ``fsdp2`` language-model
engine. With ERA on, verl's one old-log-prob forward per micro-batch gives the unscaled token
entropies and the old log-probs under each of the three scales :math:`c \in \{k, 1, 1/k\}`
(and, with ``era_logit_topk``, over the top-k logits only); after the advantages the trainer
computes the ERA scales from those entropies and the advantages, keeps each response's old
log-probs at its scale and writes the per-response temperature next to the batch. The update
then runs verl's engine with the per-sample temperature (and the top-k stage) and logs
``era/...`` metrics. With ERA and forking off it is verl's sync trainer unchanged.
``trainer.v1.trainer_mode=era_sync`` is an alias of ``sync``. An actor on another engine
(``strategy=megatron``) gets the per-response temperature through a second old-log-prob pass.

Run with :func:`main` (``python -m era_llm.integrations.verl <hydra overrides>``), which adds the
overrides below (they can also be given by hand to ``python -m verl.trainer.main_ppo``)::

    actor_rollout_ref.actor.policy_loss._target_=era_llm.integrations.verl.ERAPolicyLossConfig
    actor_rollout_ref.model.external_lib=era_llm.integrations.verl
    +ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=era_llm.integrations.verl.setup

and then, for ERA: ``+actor_rollout_ref.actor.policy_loss.era_enable=true`` with any
``loss_mode`` (or ``loss_mode=era`` / ``era_gspo``), and to leave the paper's band
(:class:`~era_llm.era.ERAConfig`'s defaults), e.g.
``+actor_rollout_ref.actor.policy_loss.era_low=0.2`` (likewise ``era_high``, ``era_k``).

Top-k stage: ``+actor_rollout_ref.actor.policy_loss.era_logit_topk=20`` (the paper's first
stage); a label outside the top k gets the authors' constant log-prob by default
(``era_topk_label=constant``: ratio 1, no gradient) or ours (``era_topk_label=renormalise``).

Limits (:func:`check_verl_config` refuses them when the trainer is built, one line naming the
setting): the top-k stage needs an ``fsdp`` / ``fsdp2`` actor; ``use_fused_kernels`` must stay
off and the TorchTitan engine is not supported (they take only a scalar temperature);
rollout-correction bypass mode skips the entropies ERA reads.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from verl.trainer.ppo.core_algos import (
    POLICY_LOSS_REGISTRY,
    get_policy_loss_fn,
    register_policy_loss,
)
from verl.workers.config import PolicyLossConfig

from era_llm.era import ERAConfig, era_scales, stats_to_floats
from era_llm.integrations.verl_engine import (
    CANDIDATE_FIELDS,
    PASS_KEY,
    TOPK_KEY,
    TOPK_LABEL_KEY,
    check_topk_label,
    select_old_log_probs,
)
from era_llm.losses import _forking

__all__ = [
    "ENGINE_PASS",
    "ERA_LOSS_MODES",
    "ERAPolicyLossConfig",
    "apply_era",
    "apply_forking",
    "check_verl_config",
    "engine_pass_keys",
    "entry_argv",
    "era_config_from",
    "era_enabled",
    "main",
    "setup",
]

# ERA loss mode -> verl's loss that runs on the ERA policy's log-probs (names kept; the same as
# that loss with ``era_enable=true``)
ERA_LOSS_MODES = {"era": "vanilla", "era_gspo": "gspo"}
FORKING = "forking"
# actor strategies whose engine is ERA's (the one-forward old-log-prob pass, the top-k stage);
# other engines (megatron) take the per-sample temperature with a second old-log-prob pass
ENGINE_PASS = ("fsdp", "fsdp2")

ENTRY_OVERRIDES = (
    "actor_rollout_ref.actor.policy_loss._target_=era_llm.integrations.verl.ERAPolicyLossConfig",
    "actor_rollout_ref.model.external_lib=era_llm.integrations.verl",
    "+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=era_llm.integrations.verl.setup",
)


_PAPER = ERAConfig()  # the paper's ERA hyper-parameters, spelled once (in ERAConfig)


@dataclass
class ERAPolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus ERA's keys (defaults: the paper's, docs/paper.md §3).

    Args:
      era_enable: apply ERA on top of ``loss_mode`` (any verl policy loss); implied by
        ``loss_mode=era`` / ``era_gspo``.
      era_low, era_high: the response-entropy band.
      era_k: the logit factor (scales ``k``, ``1``, ``1/k``).
      era_topk_fraction: share of each response's highest token entropies in its statistic.
      era_adv_scale: divide advantages by the scale (Eq. 17).
      era_logit_topk: the top-k stage (the paper's first stage uses 20): old and new log-probs
        over the ``era_logit_topk`` largest logits; 0 for the full softmax.
      era_topk_label: a label outside the top k: ``"constant"`` (the authors' code: a constant
        log-prob, ratio 1, no gradient) or ``"renormalise"`` (renormalised over the top k plus
        the label, with a gradient); see :mod:`era_llm.integrations.verl_engine`.
      forking_fraction: share of highest-entropy tokens trained by ``loss_mode=forking``.
    """

    era_enable: bool = False
    era_low: float = _PAPER.low
    era_high: float = _PAPER.high
    era_k: float = _PAPER.k
    era_topk_fraction: float = _PAPER.topk_fraction
    era_adv_scale: bool = _PAPER.adv_scale
    era_logit_topk: int = 0
    era_topk_label: str = "constant"
    forking_fraction: float = 0.2

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if era_enabled(self):
            era_config_from(self)  # validates now, with a clear error, rather than mid-run
            check_topk_label(self.era_topk_label)
        if not 0 < self.forking_fraction <= 1:
            raise ValueError(f"forking_fraction must be in (0, 1], got {self.forking_fraction}")


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    if hasattr(cfg, "get"):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None else value


def era_enabled(policy_loss_cfg: Any) -> bool:
    """Whether ERA is on for a verl ``policy_loss`` config: ``era_enable`` or an ERA loss mode."""
    mode = _get(policy_loss_cfg, "loss_mode", "vanilla")
    return bool(_get(policy_loss_cfg, "era_enable", False)) or mode in ERA_LOSS_MODES


def era_config_from(policy_loss_cfg: Any) -> ERAConfig:
    """An :class:`ERAConfig` from a verl ``policy_loss`` config (dataclass or DictConfig)."""
    d = ERAConfig()
    topk = _get(policy_loss_cfg, "era_logit_topk", 0)
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 0:
        raise ValueError(f"era_logit_topk must be an int >= 0 (0: full softmax), got {topk!r}")
    return ERAConfig(
        low=float(_get(policy_loss_cfg, "era_low", d.low)),
        high=float(_get(policy_loss_cfg, "era_high", d.high)),
        k=float(_get(policy_loss_cfg, "era_k", d.k)),
        topk_fraction=float(_get(policy_loss_cfg, "era_topk_fraction", d.topk_fraction)),
        adv_scale=bool(_get(policy_loss_cfg, "era_adv_scale", d.adv_scale)),
        logit_topk=topk or None,
    )


# ---------------------------------------------------------------------------------------------
# the batch-level steps (pure torch; the trainer below only moves tensors in and out of verl)


def apply_era(
    entropy: torch.Tensor,
    response_mask: torch.Tensor,
    advantages: torch.Tensor,
    cfg: ERAConfig,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
    """ERA for one verl batch.

    Args:
      entropy: ``[B, R]`` token entropies of the unmodified policy (verl's old-log-prob pass).
      response_mask: ``[B, R]``.
      advantages: ``[B, R]`` token advantages (GRPO's: constant over each response).
      cfg: the band.
      temperature: the rollout temperature :math:`T`.

    Returns:
      ``(advantages, per_sample_temperature, scale, metrics)``: the advantages to train on,
      ``[B]`` temperatures :math:`T / c_i` for verl's engine, the scales and ``era/...``
      metrics.
    """
    res = era_scales(entropy, response_mask, advantages, cfg)
    per_sample_t = (temperature / res.scale).to(torch.float32)
    metrics = {f"era/{k}": v for k, v in stats_to_floats(res.stats).items()}  # one transfer
    return res.advantages, per_sample_t, res.scale, metrics


def apply_forking(
    entropy: torch.Tensor, response_mask: torch.Tensor, advantages: torch.Tensor, fraction: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Zero the advantages of all but the ``fraction`` highest-entropy tokens of the batch.

    With a zero advantage a token's clipped-surrogate loss is 0 and it still counts in the token
    mean, exactly the paper's "multiply the loss by the entropy mask" (arXiv 2506.01939).
    """
    keep = _forking(entropy, response_mask.bool(), fraction)
    share = float(keep.sum()) / max(1, int(response_mask.bool().sum()))
    return torch.where(keep, advantages, 0.0), {"forking/selected_frac": share}


# ---------------------------------------------------------------------------------------------
# policy losses


def _delegate(name: str, base: str) -> Callable[..., tuple[torch.Tensor, dict[str, Any]]]:
    def loss_fn(
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        loss_agg_mode: str = "token-mean",
        config: Any = None,  # verl's policy-loss config (a dataclass or a DictConfig)
        rollout_is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        # verl types its registry entries as positional-only callables; its losses take keywords
        base_loss: Callable[..., tuple[torch.Tensor, dict[str, Any]]] = get_policy_loss_fn(base)
        return base_loss(
            old_log_prob=old_log_prob,
            log_prob=log_prob,
            advantages=advantages,
            response_mask=response_mask,
            loss_agg_mode=loss_agg_mode,
            config=config,
            rollout_is_weights=rollout_is_weights,
        )

    loss_fn.__name__ = f"compute_policy_loss_{name}"
    loss_fn.__doc__ = (
        f"``{name}``: verl's ``{base}`` loss on log-probs that the ERA trainer computed "
        "under the per-response temperature (ERA) or with the low-entropy tokens' advantages set "
        "to 0 (forking)."
    )
    return loss_fn


def _register() -> None:
    for name, base in (*ERA_LOSS_MODES.items(), (FORKING, "vanilla")):
        fn = POLICY_LOSS_REGISTRY.get(name)
        if fn is not None and getattr(fn, "__module__", None) != __name__:
            raise ValueError(f"verl policy loss {name!r} is already registered by {fn.__module__}")
        register_policy_loss(name)(_delegate(name, base))


_register()


def setup() -> None:
    """Ray ``worker_process_setup_hook``: the ERA trainer (driver) and engine (workers)."""
    _register_trainer()
    _install_engine()


def _install_engine() -> None:
    """ERA's engine over verl's FSDP one; a process without verl's FSDP engine keeps verl's
    (the trainer then falls back to a second old-log-prob pass)."""
    from era_llm.integrations.verl_engine import install_engine

    try:
        install_engine()
    except ImportError:
        pass


# ---------------------------------------------------------------------------------------------
# configuration checks (the whole verl config; run when the trainer is built, before any worker)


def check_verl_config(config: Any) -> None:
    """Refuse, with one line naming the setting, verl configurations ERA cannot run under.

    * ``algorithm.rollout_correction.bypass_mode=true``: verl then skips the old-log-prob pass
      that computes the token entropies ERA and forking read.
    * With ERA (a per-response temperature tensor): ``actor_rollout_ref.model.use_fused_kernels
      =true`` (verl's fused linear-cross-entropy kernels, FSDP's and Megatron's, take one scalar
      temperature) and ``actor_rollout_ref.actor.strategy=torchtitan`` (its engine divides the
      packed logits by the temperature without expanding a ``[B]`` tensor).
    """
    loss_cfg = config.actor_rollout_ref.actor.policy_loss
    era, forking = era_enabled(loss_cfg), _get(loss_cfg, "loss_mode", "vanilla") == FORKING
    if not (era or forking):
        return
    what = "ERA" if era else "the forking loss"
    correction = config.algorithm.get("rollout_correction", None)
    if correction is not None and correction.get("bypass_mode", False):
        raise ValueError(
            f"algorithm.rollout_correction.bypass_mode=true is not supported with {what}: bypass "
            "mode skips the old-log-prob pass whose token entropies it reads; set it to false"
        )
    if not era:
        return
    actor_strategy = config.actor_rollout_ref.actor.get("strategy", "fsdp")
    if era_config_from(loss_cfg).logit_topk is not None and actor_strategy not in ENGINE_PASS:
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.era_logit_topk is not supported with "
            f"actor_rollout_ref.actor.strategy={actor_strategy}: the top-k stage runs in ERA's "
            "FSDP engine pass; use fsdp or fsdp2, or set era_logit_topk=0"
        )
    if bool(config.actor_rollout_ref.model.get("use_fused_kernels", False)):
        raise ValueError(
            "actor_rollout_ref.model.use_fused_kernels=true is not supported with ERA: verl's fused "
            "kernels take one scalar temperature, ERA a per-response one; set it to false"
        )
    for role in ("actor", "ref"):
        strategy = config.actor_rollout_ref.get(role, {}).get("strategy", "fsdp")
        if strategy == "torchtitan":
            raise ValueError(
                f"actor_rollout_ref.{role}.strategy=torchtitan is not supported with ERA: its engine "
                "does not take a per-sample temperature tensor; use fsdp, fsdp2 or megatron"
            )


# ---------------------------------------------------------------------------------------------
# the V1 trainer (imported lazily: it pulls Ray and TransferQueue)

_TRAINER: type | None = None


def _register_trainer() -> type:
    """Build the ERA trainer once, install it as verl's ``sync`` trainer, register ``era_sync``."""
    global _TRAINER
    if _TRAINER is None:
        _TRAINER = _build_trainer()
    _install(_TRAINER)
    return _TRAINER


def _install(cls: type) -> None:
    """Make ``cls`` (a subclass of verl's ``PPOTrainerSync``) the trainer of mode ``sync``.

    verl picks the trainer class by ``trainer.v1.trainer_mode`` and tests that mode as the
    literal ``"sync"`` for its synchronous semantics (replay buffer, batch sizes, checkpointing);
    so the mode keeps its name and its entry in verl's registry points to the ERA trainer, which
    is verl's own sync trainer whenever ERA and forking are off. ``era_sync`` stays an alias:
    a trainer built under it switches the mode back to ``sync`` before verl reads it.
    """
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    current = TRAINER_REGISTRY.get("sync")
    if current is not None and current not in (PPOTrainerSync, cls):
        raise ValueError(
            f"verl's trainer mode 'sync' is already replaced by {current.__module__}."
            f"{current.__name__}; ERA's trainer cannot be installed over it"
        )
    TRAINER_REGISTRY["sync"] = cls
    if "era_sync" not in TRAINER_REGISTRY:

        class ERAPPOTrainerSyncAlias(cls):
            """``trainer.v1.trainer_mode=era_sync``: the ERA trainer under verl's ``sync`` mode."""

            def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
                config.trainer.v1.trainer_mode = "sync"
                super().__init__(config, *args, **kwargs)

        register_trainer("era_sync")(ERAPPOTrainerSyncAlias)


# the class body holds verl's three overridden steps; the tensor work is in apply_era /
# apply_forking and the TransferQueue moves in _era_batch_step
def _build_trainer() -> type:
    """verl's synchronous V1 trainer plus ERA / forking after the advantages (built lazily)."""
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    class ERAPPOTrainerSync(PPOTrainerSync):
        """verl's synchronous V1 trainer with ERA / forking tokens applied after the advantages."""

        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            check_verl_config(config)
            super().__init__(config, *args, **kwargs)

        def _policy_loss_cfg(self) -> Any:
            return self.config.actor_rollout_ref.actor.policy_loss

        # batches are TransferQueue's KVBatchMeta (typed Any: that package is optional)
        def _compute_old_log_prob(self, batch: Any, metrics: dict[str, Any]) -> Any:
            keys = engine_pass_keys(self.config, old_log_prob=True)
            if keys is None:
                return super()._compute_old_log_prob(batch, metrics)
            batch.extra_info.update(keys)
            try:
                out = super()._compute_old_log_prob(batch, metrics)
            finally:
                for key in keys:  # the reference pass that follows is verl's own
                    batch.extra_info.pop(key, None)
            for key in keys:
                out.extra_info.pop(key, None)
            return _store_candidates(self, out)

        def _compute_advantage(self, batch: Any, metrics: dict[str, Any]) -> Any:
            batch = super()._compute_advantage(batch, metrics)
            return _era_batch_step(self, batch, metrics)

        def _update_actor(self, batch: Any, metrics: dict[str, Any]) -> Any:
            if not era_enabled(self._policy_loss_cfg()):
                return super()._update_actor(batch, metrics)
            # verl writes the scalar rollout temperature into the batch's extra info, which would
            # override the per-sample field: drop it on the way to the workers
            wg = self.actor_rollout_wg
            original = wg.update_actor
            keys = engine_pass_keys(self.config, old_log_prob=False) or {}

            def update_actor(b: Any, *args: Any, **kwargs: Any) -> Any:
                b.extra_info.pop("temperature", None)
                b.extra_info.update(keys)  # the top-k stage, when on
                try:
                    return original(b, *args, **kwargs)
                finally:
                    for key in keys:
                        b.extra_info.pop(key, None)

            wg.update_actor = update_actor
            try:
                return super()._update_actor(batch, metrics)
            finally:
                wg.update_actor = original

    return ERAPPOTrainerSync


def _era_batch_step(trainer: Any, batch: Any, metrics: dict[str, Any]) -> Any:
    """ERA (or forking) on a batch in TransferQueue, after verl's advantages: read entropies,
    mask and advantages; write the new advantages (and per-response temperatures); recompute
    the old log-probs when a scale is not 1."""
    import transfer_queue as tq  # pyright: ignore[reportMissingImports]
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_to_nested

    loss_cfg = trainer.config.actor_rollout_ref.actor.policy_loss
    era, forking = era_enabled(loss_cfg), _get(loss_cfg, "loss_mode", "vanilla") == FORKING
    if not (era or forking):
        return batch
    fields = ["entropy", "advantages", "response_mask"]
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    nested_mask = data["response_mask"]
    padded = data.to_padded_tensor()
    entropy, mask, adv = padded["entropy"], padded["response_mask"], padded["advantages"]
    out, scale = {}, None
    if era:
        t = float(trainer.config.actor_rollout_ref.rollout.temperature)
        adv, per_t, scale, m = apply_era(entropy, mask, adv, era_config_from(loss_cfg), t)
        out["temperature"] = per_t
    else:
        adv, m = apply_forking(entropy, mask, adv, _get(loss_cfg, "forking_fraction", 0.2))
    metrics.update(m)
    out["advantages"] = response_to_nested(adv, nested_mask)
    batch = tq.kv_batch_put(
        keys=batch.keys,
        partition_id=batch.partition_id,
        fields=TensorDict(out, batch_size=len(batch)),
    )
    if scale is None:
        return batch
    if set(batch.keys) <= getattr(trainer, "_era_candidates", frozenset()):
        return _select_old_log_prob(trainer, batch, scale)
    if bool((scale != 1).any()):  # an engine without ERA's pass: a second forward
        batch = _recompute_old_log_prob(trainer, batch)
    return batch


def engine_pass_keys(config: Any, *, old_log_prob: bool) -> dict[str, Any] | None:
    """The non-tensor keys that ask ERA's engine (:mod:`~era_llm.integrations.verl_engine`)
    for its pass, or ``None`` when verl's own pass is what is needed: with ERA on an
    :data:`ENGINE_PASS` actor, the old-log-prob pass always; the update with the top-k stage."""
    loss_cfg = config.actor_rollout_ref.actor.policy_loss
    if not era_enabled(loss_cfg):
        return None
    if config.actor_rollout_ref.actor.get("strategy", "fsdp") not in ENGINE_PASS:
        return None
    cfg = era_config_from(loss_cfg)
    keys: dict[str, Any] = {}
    if old_log_prob:
        keys[PASS_KEY] = cfg.k
    if cfg.logit_topk is not None:
        keys[TOPK_KEY] = cfg.logit_topk
        keys[TOPK_LABEL_KEY] = check_topk_label(str(_get(loss_cfg, "era_topk_label", "constant")))
    return keys or None


def _store_candidates(trainer: Any, batch: Any) -> Any:
    """After ERA's old-log-prob pass: keep its three candidates' response tokens in
    TransferQueue (``old_<field>``) and remember that this batch has them."""
    import transfer_queue as tq  # pyright: ignore[reportMissingImports]
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_from_nested

    names = list(CANDIDATE_FIELDS.values())
    try:
        data = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=[*names, "response_mask"],
        )
    except (KeyError, ValueError) as err:  # an engine without ERA's pass: two passes, then
        warnings.warn(
            f"ERA's old-log-prob candidates are missing ({err}); the actor's engine is not ERA's "
            "(is era_llm.integrations.verl.setup Ray's worker_process_setup_hook?), so the old "
            "log-probs take a second pass",
            stacklevel=2,
        )
        return batch
    out = {f"old_{n}": response_from_nested(data[n], data["response_mask"]) for n in names}
    batch = tq.kv_batch_put(
        keys=batch.keys,
        partition_id=batch.partition_id,
        fields=TensorDict(out, batch_size=len(batch)),
    )
    trainer._era_candidates = frozenset(batch.keys)
    return batch


def _select_old_log_prob(trainer: Any, batch: Any, scale: torch.Tensor) -> Any:
    """Old log-probs under each response's scale, from the candidates of ERA's one pass."""
    import transfer_queue as tq  # pyright: ignore[reportMissingImports]
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_to_nested

    fields = {role: f"old_{name}" for role, name in CANDIDATE_FIELDS.items()}
    data = tq.kv_batch_get(
        keys=batch.keys,
        partition_id=batch.partition_id,
        select_fields=[*fields.values(), "response_mask"],
    )
    nested_mask = data["response_mask"]
    padded = data.to_padded_tensor()
    old = select_old_log_probs(scale, {role: padded[f] for role, f in fields.items()})
    trainer._era_candidates = getattr(trainer, "_era_candidates", frozenset()) - set(batch.keys)
    return tq.kv_batch_put(
        keys=batch.keys,
        partition_id=batch.partition_id,
        fields=TensorDict(
            {"old_log_probs": response_to_nested(old, nested_mask)}, batch_size=len(batch)
        ),
    )


def _recompute_old_log_prob(trainer: Any, batch: Any) -> Any:
    """Old log-probs under the per-response temperature stored with the batch."""
    import transfer_queue as tq  # pyright: ignore[reportMissingImports]
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_from_nested

    batch.extra_info.update({"calculate_entropy": False, "compute_loss": False})
    batch.extra_info.pop("temperature", None)  # the per-sample field is used instead
    trainer.actor_rollout_wg.compute_log_prob(batch)
    data = tq.kv_batch_get(
        keys=batch.keys,
        partition_id=batch.partition_id,
        select_fields=["log_probs", "response_mask"],
    )
    old = response_from_nested(data.pop("log_probs"), data["response_mask"])
    return tq.kv_batch_put(
        keys=batch.keys,
        partition_id=batch.partition_id,
        fields=TensorDict({"old_log_probs": old}, batch_size=len(batch)),
    )


def entry_argv(argv: list[str]) -> list[str]:
    """The Hydra overrides :func:`main` passes to verl: :data:`ENTRY_OVERRIDES` that the user
    did not set, then the user's."""
    given = {a.split("=", 1)[0].lstrip("+") for a in argv}
    extra = [o for o in ENTRY_OVERRIDES if o.split("=", 1)[0].lstrip("+") not in given]
    return [*extra, *argv]


def main(argv: list[str] | None = None) -> None:
    """``python -m era_llm.integrations.verl [hydra overrides]``: verl's ``main_ppo`` with the
    ERA trainer, losses and config class registered (user overrides win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _register_trainer()
    except ModuleNotFoundError as err:
        raise SystemExit(
            f"verl's V1 trainer needs {err.name!r}: install verl with its core extra "
            "(the era-llm[verl-core] extra: pip install --find-links dist 'era-llm[verl-core]' "
            "with the wheels built by uv build, or uv sync --package era-llm --extra verl-core; it brings "
            "TransferQueue and tensordict>=0.10)"
        ) from err
    from verl.trainer import main_ppo

    sys.argv = [sys.argv[0], *entry_argv(argv)]
    main_ppo.main()


if __name__ == "__main__":
    main()
