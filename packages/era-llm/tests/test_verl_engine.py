"""ERA's one-forward old-log-prob pass and its top-k stage inside verl's FSDP engine, on CPU.

The engine tests run verl's own ``FSDPEngineWithLMHead.forward_step`` / ``prepare_model_inputs``
(ours is that class plus ERA's branch in ``prepare_model_outputs``) on a tiny Hugging Face
Qwen2 built from a config. What needs a GPU is left out: FSDP sharding itself (the module is
the plain model; the engine's device lookups are pointed at the CPU). The trainer test runs
verl's ``_compute_old_log_prob`` and ``_compute_advantage`` on a real TransferQueue, with the
actor worker group played by :class:`EngineActorGroup`, which splits the batch into
micro-batches and runs each through that engine, as verl's worker does.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from era_llm.integrations.verl_engine import (
    CANDIDATE_FIELDS,
    OUTSIDE_TOPK_LOGPROB,
    PASS_KEY,
    TOPK_KEY,
    TOPK_LABEL_KEY,
    era_pass_logprobs,
    topk_label_logprobs,
)

VOCAB, TEMPERATURE, K = 48, 0.9, 2.0


def reference_topk(z: torch.Tensor, labels: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    """Independent top-k log-probs (float64, row by row): the label's rank decides."""
    out = []
    for row, a in zip(z.double(), labels.tolist(), strict=True):
        top = torch.sort(row, descending=True).values[:k]
        inside = int((row > row[a]).sum()) < k
        if inside:
            out.append(row[a] - torch.logsumexp(top, 0))
        elif mode == "constant":
            out.append(torch.tensor(OUTSIDE_TOPK_LOGPROB, dtype=torch.float64))
        else:
            out.append(row[a] - torch.log(top.exp().sum() + row[a].exp()))
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["constant", "renormalise"])
def test_topk_label_logprobs_values_and_gradient_outside(mode):
    """Guards defect 3: a label outside the top k gets a constant log-prob and no gradient (the
    authors' behaviour, the default) or a renormalised one with a gradient (ours)."""
    gen = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(40, VOCAB, generator=gen, dtype=torch.float64)).float()
    labels = torch.randint(0, VOCAB, (40,), generator=gen)
    labels[:5] = z[:5].argmax(-1)  # some inside for sure
    labels[5:10] = z[5:10].argmin(-1)  # and some outside
    rows = z.clone().requires_grad_(True)
    lp = topk_label_logprobs(rows, labels, 5, mode)
    want = reference_topk(z, labels, 5, mode)
    torch.testing.assert_close(lp.double(), want, atol=1e-5, rtol=0)
    assert torch.isfinite(lp).all()
    (g_out,) = torch.autograd.grad(lp[5:10].sum(), rows, retain_graph=True)
    (g_in,) = torch.autograd.grad(lp[:5].sum(), rows)
    assert float(g_in.abs().sum()) > 0
    if mode == "constant":
        assert float(g_out.abs().max()) == 0.0
        assert (lp[5:10] == OUTSIDE_TOPK_LOGPROB).all()
    else:
        # d lp / d z_label = 1 - p_label over the k + 1 candidates: positive
        assert (g_out[torch.arange(5, 10), labels[5:10]] > 0).all()


@pytest.mark.parametrize("topk", [0, 4])
def test_era_pass_logprobs_matches_independent_formulas(topk):
    gen = torch.Generator().manual_seed(1)
    logits = 4 * torch.randn(30, VOCAB, generator=gen)
    labels = torch.randint(0, VOCAB, (30,), generator=gen)
    t = torch.full((30,), TEMPERATURE)
    out = era_pass_logprobs(logits, labels, t, K, topk, "constant", chunk_rows=7)
    z = logits.double() / TEMPERATURE
    logp = torch.log_softmax(z, -1)
    tol = {"atol": 1e-5, "rtol": 0}  # float32 against float64
    torch.testing.assert_close(out["entropy"].double(), -(logp.exp() * logp).sum(-1), **tol)
    want = logp.gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(out["log_probs"].double(), want, **tol)
    for role, c in (("unit", 1.0), ("sharpen", K), ("flatten", 1 / K)):
        if topk:
            want = reference_topk(c * z, labels, topk, "constant")
        else:
            want = torch.log_softmax(c * z, -1).gather(1, labels[:, None])[:, 0]
        torch.testing.assert_close(out[CANDIDATE_FIELDS[role]].double(), want, atol=1e-5, rtol=0)


def test_topk_stage_config_reaches_the_engine_and_is_checked(compose_verl):
    """The config keys of the top-k stage: parsed and validated, turned into the engine's
    micro-batch keys (the label mode defaults to the authors'), refused off the FSDP engine."""
    from verl.utils.config import omega_conf_to_dataclass

    import era_llm.integrations.verl as era_verl

    topk = "+actor_rollout_ref.actor.policy_loss.era_logit_topk=20"
    cfg = compose_verl(0.45, 3.0, K, topk)
    loss = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor.policy_loss)
    assert era_verl.era_config_from(loss).logit_topk == 20 and loss.era_topk_label == "constant"
    era_verl.check_verl_config(cfg)
    topk_keys = {TOPK_KEY: 20, TOPK_LABEL_KEY: "constant"}
    assert era_verl.engine_pass_keys(cfg, old_log_prob=True) == {PASS_KEY: K, **topk_keys}
    assert era_verl.engine_pass_keys(cfg, old_log_prob=False) == topk_keys
    plain = compose_verl(0.45, 3.0, K)
    assert era_verl.engine_pass_keys(plain, old_log_prob=True) == {PASS_KEY: K}
    assert era_verl.engine_pass_keys(plain, old_log_prob=False) is None
    megatron = compose_verl(0.45, 3.0, K, topk, "actor_rollout_ref.actor.strategy=megatron")
    with pytest.raises(ValueError, match=r"era_logit_topk .*strategy=megatron") as err:
        era_verl.check_verl_config(megatron)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="era_topk_label"):
        era_verl.ERAPolicyLossConfig(loss_mode="era", era_topk_label="nearest")
    with pytest.raises(ValueError, match="era_logit_topk"):
        era_verl.ERAPolicyLossConfig(loss_mode="era", era_logit_topk=-1)


# ---------------------------------------------------------------------------------------------
# verl's engine


def tiny_qwen2(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).float()
    with torch.no_grad():  # sharper logits than the 0.02-std init, so the scales matter
        model.lm_head.weight.mul_(40)
    return model.eval()


@pytest.fixture
def engine(monkeypatch):
    impl = pytest.importorskip("verl.workers.engine.fsdp.transformer_impl")
    import verl.utils.torch_functional as verl_F

    from era_llm.integrations.verl_engine import engine_class

    # the engine's device lookups, pointed at the CPU (they ask the accelerator otherwise)
    monkeypatch.setattr(impl, "get_device_id", lambda: "cpu")
    monkeypatch.setattr(impl, "get_device_name", lambda: "cpu")
    cls = engine_class()
    eng = cls.__new__(cls)
    eng.module = tiny_qwen2()
    eng.forwards = 0

    def count(*_):
        eng.forwards += 1

    eng.module.register_forward_pre_hook(count)
    eng._autocast_dtype = torch.float32
    eng.pad_to_length = False
    eng.use_ulysses_sp = False
    eng.ulysses_sequence_parallel_size = 1
    eng.engine_config = SimpleNamespace(
        entropy_from_logits_with_chunking=False, entropy_checkpointing=False
    )
    eng.compute_entropy_from_logits = verl_F.entropy_from_logits
    eng.get_data_parallel_group = lambda: None
    return eng


def sequences(n: int, seed: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (4 + (3 * i) % 7,), generator=gen) for i in range(n)]


def micro_batch(seqs, temperature, **flags):
    """A micro-batch as verl's worker hands it to the engine (jagged, no padding)."""
    from verl.utils import tensordict_utils as tu

    tensors = {
        "input_ids": torch.nested.as_nested_tensor(seqs, layout=torch.jagged),
        "position_ids": torch.nested.as_nested_tensor(
            [torch.arange(len(s)) for s in seqs], layout=torch.jagged
        ),
    }
    non_tensor = dict(flags)
    if isinstance(temperature, torch.Tensor):
        tensors["temperature"] = temperature
    else:
        non_tensor["temperature"] = temperature
    return tu.get_tensordict(tensor_dict=tensors, non_tensor_dict=non_tensor)


def infer(eng, seqs, temperature, **flags):
    with torch.no_grad():
        _, out = eng.forward_step(
            micro_batch(seqs, temperature, **flags), loss_function=None, forward_only=True
        )
    return out["model_output"]


def values(nested: torch.Tensor) -> torch.Tensor:
    return nested.values().double()


@pytest.mark.parametrize("remove_padding", [True, False])
def test_engine_pass_gives_verls_fields_and_the_scaled_log_probs(engine, remove_padding):
    """Guards defect 2 in verl's engine: the ERA pass is one forward; its ``log_probs`` and
    ``entropy`` are verl's own pass's, its candidates verl's pass at temperatures T/k, kT."""
    seqs = sequences(4)
    era = infer(
        engine,
        seqs,
        TEMPERATURE,
        calculate_entropy=True,
        use_remove_padding=remove_padding,
        **{PASS_KEY: K},
    )
    assert engine.forwards == 1
    plain = infer(
        engine, seqs, TEMPERATURE, calculate_entropy=True, use_remove_padding=remove_padding
    )
    torch.testing.assert_close(
        values(era["log_probs"]), values(plain["log_probs"]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(values(era["entropy"]), values(plain["entropy"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        values(era[CANDIDATE_FIELDS["unit"]]), values(plain["log_probs"]), atol=1e-5, rtol=0
    )
    for role, c in (("sharpen", K), ("flatten", 1 / K)):
        t = torch.full((len(seqs),), TEMPERATURE / c)
        second = infer(engine, seqs, t, use_remove_padding=remove_padding)
        got = values(era[CANDIDATE_FIELDS[role]])
        torch.testing.assert_close(got, values(second["log_probs"]), atol=1e-5, rtol=0)
        assert not torch.allclose(got, values(plain["log_probs"]), atol=1e-2)
    assert era["log_probs"].offsets().tolist() == plain["log_probs"].offsets().tolist()


@pytest.mark.parametrize("mode", ["constant", "renormalise"])
def test_engine_topk_update_starts_at_ratio_one_with_the_modes_gradients(engine, mode):
    """Guards defect 3 in verl's engine: the update's top-k log-probs under T/k equal the old
    pass's ``c = k`` candidate (ratio 1) and the independent formula; the tokens whose label is
    outside the top k give the model no gradient (authors) or some (ours)."""
    seqs, topk = sequences(3, seed=3), 3
    flags = {TOPK_KEY: topk, TOPK_LABEL_KEY: mode}
    old = infer(engine, seqs, TEMPERATURE, calculate_entropy=True, **{PASS_KEY: K}, **flags)
    t = torch.full((len(seqs),), TEMPERATURE / K)
    seen = {}

    def loss_function(model_output, data, dp_group):
        lp = model_output["log_probs"].values()
        seen["lp"] = lp
        outside = lp.detach() == OUTSIDE_TOPK_LOGPROB if mode == "constant" else seen["outside"]
        return lp[outside].sum(), {}

    # which labels are outside the top k, from an independent pass over the same logits
    with torch.no_grad():
        ids = torch.cat(seqs)
        position_ids = torch.cat([torch.arange(len(s)) for s in seqs])[None]
        # as the engine calls it (without a cache the packed sequences do not see each other)
        logits = engine.module(input_ids=ids[None], position_ids=position_ids, use_cache=False)
        logits = logits.logits[0]
    labels = torch.roll(ids, -1)
    z = logits.double() / (TEMPERATURE / K)
    rank = (z > z.gather(1, labels[:, None])).sum(1)
    seen["outside"] = rank >= topk
    assert 0 < int(seen["outside"].sum()) < len(ids)

    engine.module.zero_grad()
    loss, _ = engine.forward_step(
        micro_batch(seqs, t, **flags), loss_function=loss_function, forward_only=False
    )
    loss.backward()
    lp = seen["lp"].detach().double()
    torch.testing.assert_close(lp, values(old[CANDIDATE_FIELDS["sharpen"]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(lp, reference_topk(z, labels, topk, mode), atol=1e-4, rtol=0)
    grad = sum(float(p.grad.abs().sum()) for p in engine.module.parameters() if p.grad is not None)
    if mode == "constant":
        assert (lp[seen["outside"]] == OUTSIDE_TOPK_LOGPROB).all() and grad == 0.0
    else:
        assert math.isfinite(grad) and grad > 0


# ---------------------------------------------------------------------------------------------
# verl's trainer around the engine, on a real TransferQueue

RUN = (
    "algorithm.adv_estimator=grpo",
    "actor_rollout_ref.rollout.n=3",
    f"actor_rollout_ref.rollout.temperature={TEMPERATURE}",
)
REWARDS = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
MICRO = 3  # two micro-batches of three sequences


@pytest.fixture(scope="module")
def transfer_queue():
    tq = pytest.importorskip("transfer_queue", reason="the llm-verl nox session has TransferQueue")
    ray = pytest.importorskip("ray")
    from omegaconf import OmegaConf

    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    tq.close()
    ray.shutdown()


class EngineActorGroup:
    """The actor worker group's ``compute_log_prob``: the batch from TransferQueue, split into
    micro-batches of :data:`MICRO` run through the engine, every output field written back."""

    def __init__(self, tq, eng):
        self.tq, self.engine = tq, eng

    def outputs(self, seqs, temperature, flags):
        fields: dict[str, list] = {}
        for i in range(0, len(seqs), MICRO):
            t = (
                temperature
                if not isinstance(temperature, torch.Tensor)
                else temperature[i : i + MICRO]
            )
            for key, value in infer(self.engine, seqs[i : i + MICRO], t, **flags).items():
                fields.setdefault(key, []).extend(value.unbind())
        return {k: torch.nested.as_nested_tensor(v, layout=torch.jagged) for k, v in fields.items()}

    def compute_log_prob(self, batch):
        from tensordict import TensorDict

        data = self.tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["input_ids"]
        )
        flags = dict(batch.extra_info)
        t = flags.pop("temperature")
        flags.pop("compute_loss", None)
        out = self.outputs(list(data["input_ids"].unbind()), t, flags)
        return self.tq.kv_batch_put(
            keys=batch.keys,
            partition_id=batch.partition_id,
            fields=TensorDict(out, batch_size=len(batch)),
        )


def test_old_log_prob_pass_is_one_forward_per_micro_batch(transfer_queue, compose_verl, engine):
    """Guards defect 2 through verl's trainer steps: the old-log-prob pass and the advantage
    step together run one forward per micro-batch (a second pass would double it), and the old
    log-probs are those of the two-pass path (verl's pass at the per-response temperature)."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict
    from verl.workers.utils.padding import response_from_nested

    import era_llm.integrations.verl as era_verl
    from era_llm.era import ERAConfig, era_scales

    tq = transfer_queue
    cfg = ERAConfig(low=5.0, high=6.0, k=K)  # above every entropy (ln 48 < 4): c = k when A > 0
    trainer_cls = era_verl._register_trainer()
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.config = compose_verl(cfg.low, cfg.high, cfg.k, *RUN)
    trainer.actor_rollout_wg = group = EngineActorGroup(tq, engine)
    seqs, lens = sequences(6, seed=4), [3, 2, 4, 3, 2, 4]
    # the rollout's own log-probs (vLLM's, unscaled at T), for verl's rollout-vs-actor check
    rollout = group.outputs(seqs, TEMPERATURE, {})["log_probs"].unbind()
    engine.forwards = 0
    rows = []
    for i, (ids, n) in enumerate(zip(seqs, lens, strict=True)):
        score = torch.zeros(n)
        score[-1] = REWARDS[i]
        extra = {"responses": ids[-n:], "rollout_log_probs": rollout[i][-n - 1 : -1]}
        rows.append(
            {
                "uid": f"e{i // 3}",
                "input_ids": ids,
                "response_mask": torch.ones(n, dtype=torch.int64),
                "rm_scores": score,
                **extra,
            }
        )
    keys = [f"e{i // 3}_{i % 3}_0" for i in range(6)]
    batch = tq.kv_batch_put(
        keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows)
    )
    batch.extra_info["temperature"] = TEMPERATURE
    metrics = {}
    batch = trainer._compute_old_log_prob(batch, metrics)
    batch = trainer._compute_advantage(batch, metrics)
    assert engine.forwards == 2  # one per micro-batch
    # verl compared the rollout's log-probs with the unscaled old ones: like for like
    assert metrics["training/rollout_probs_diff_max"] < 1e-5

    got = tq.kv_batch_get(
        keys=batch.keys,
        partition_id=batch.partition_id,
        select_fields=["old_log_probs", "entropy", "response_mask", "temperature"],
    )
    mask = got["response_mask"]
    entropy, pmask = got["entropy"].to_padded_tensor(0.0), mask.to_padded_tensor(0)
    r = torch.tensor(REWARDS).view(-1, 3)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)).reshape(-1, 1) * pmask
    want = era_scales(entropy, pmask, adv, cfg)
    assert want.scale.tolist() == [K if x > 0 else 1.0 for x in REWARDS]
    torch.testing.assert_close(got["temperature"], TEMPERATURE / want.scale)
    two_pass = group.outputs(seqs, TEMPERATURE / want.scale, {})["log_probs"]
    two_pass = response_from_nested(two_pass, mask)
    torch.testing.assert_close(got["old_log_probs"].values(), two_pass.values(), atol=1e-5, rtol=0)
    assert PASS_KEY not in batch.extra_info
