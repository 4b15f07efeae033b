"""The ``era_sync`` trainer inside verl's V1 pipeline, on CPU, with a real TransferQueue.

verl's V1 trainer keeps every batch in TransferQueue (Ray actors) and hands the GPU work to a
worker group. Here Ray runs locally, TransferQueue is verl's own, and the batch is stored in
the format verl's agent loop writes (``{uid}_{session}_{index}`` keys, jagged tensors). verl's
own ``_compute_advantage`` (GRPO) runs, then ours. The one piece that cannot run on CPU, the
FSDP actor worker group, is played by :class:`TinyActorGroup`: it honours the worker's contract
(read the batch from TransferQueue, log-probs of the next token over the whole sequence at the
per-sample temperature, written back as ``log_probs``) with a tiny torch model.

Needs ``verl[verl-core]`` (TransferQueue, tensordict >= 0.10): era-llm's locked ``verl-core`` extra,
which the ``llm-verl`` nox session installs.
"""

from __future__ import annotations

import pytest
import torch

tq = pytest.importorskip(
    "transfer_queue",
    reason="verl[verl-core] (TransferQueue) not installed: the llm-verl nox session has it",
)
ray = pytest.importorskip("ray")

import era_llm.integrations.verl as era_verl  # noqa: E402
from era_llm.era import ERAConfig, era_scales  # noqa: E402
from era_llm.ops import token_logprobs  # noqa: E402

VOCAB, PROMPT, TEMPERATURE, GROUP = 37, 3, 0.9, 3
RESPONSE_LENS = [5, 7, 3, 6, 4, 7]  # two prompts, three responses each
REWARDS = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def transfer_queue():
    from omegaconf import OmegaConf

    # logical CPUs for Ray's scheduler (TransferQueue's actors each ask for one)
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    tq.close()
    ray.shutdown()


RUN = (
    "algorithm.adv_estimator=grpo",
    f"actor_rollout_ref.rollout.n={GROUP}",
    f"actor_rollout_ref.rollout.temperature={TEMPERATURE}",
)


class TinyActor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(VOCAB, 16)
        self.out = torch.nn.Linear(16, VOCAB)

    def forward(self, ids):  # [L] -> [L, V]: logits for the next token at every position
        return 4 * self.out(torch.tanh(self.emb(ids)))


class TinyActorGroup:
    """The actor worker group's ``compute_log_prob`` and ``update_actor`` contracts, with
    :class:`TinyActor`: the temperature is the batch's scalar ``extra_info["temperature"]`` when
    set, else its per-sample ``temperature`` field (as verl's engine resolves it)."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def _read(self, batch, fields):
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["input_ids", *fields]
        )
        t = batch.extra_info.get("temperature", data["temperature"])
        t = torch.as_tensor(t, dtype=torch.float32).expand(len(batch))
        return data, t

    def _next_token_logprobs(self, ids, t):
        logp = torch.log_softmax(self.model(ids) / t, dim=-1)
        nxt = torch.cat([ids[1:], ids[:1]])  # the last position is never read
        return logp.gather(-1, nxt[:, None])[:, 0]

    @torch.no_grad()
    def compute_log_prob(self, batch):
        self.calls.append(("compute_log_prob", dict(batch.extra_info)))
        data, t = self._read(batch, ["temperature"])
        rows = [self._next_token_logprobs(ids, t[i]) for i, ids in enumerate(data["input_ids"])]
        from tensordict import TensorDict

        nested = torch.nested.as_nested_tensor(rows, layout=torch.jagged)
        return tq.kv_batch_put(
            keys=batch.keys,
            partition_id=batch.partition_id,
            fields=TensorDict({"log_probs": nested}, batch_size=len(batch)),
        )

    def update_actor(self, batch):
        """One policy-gradient step; reports how far the first step's ratio is from 1."""
        self.calls.append(("update_actor", dict(batch.extra_info)))
        data, t = self._read(batch, ["temperature", "old_log_probs", "advantages"])
        loss, dev = 0.0, 0.0
        for i, ids in enumerate(data["input_ids"]):
            n = data["old_log_probs"][i].shape[0]
            new = self._next_token_logprobs(ids, t[i])[-n - 1 : -1]
            ratio = torch.exp(new - data["old_log_probs"][i])
            dev = max(dev, float((ratio.detach() - 1).abs().max()))
            loss = loss - (ratio * data["advantages"][i]).mean()
        loss.backward()
        with torch.no_grad():
            for p in self.model.parameters():
                p -= 0.1 * p.grad
                p.grad = None
        return {
            "metrics": {"mfu": [0.0], "ratio_max_dev": [dev], "pg_loss": [float(loss.detach())]}
        }


def padded_responses(model, temperature):
    """Independent reference: logits of each response token, padded ``[B, R, V]``."""
    gen = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, VOCAB, (PROMPT + n,), generator=gen) for n in RESPONSE_LENS]
    r = max(RESPONSE_LENS)
    logits = torch.zeros(len(seqs), r, VOCAB)
    labels = torch.zeros(len(seqs), r, dtype=torch.long)
    mask = torch.zeros(len(seqs), r)
    with torch.no_grad():
        for i, (ids, n) in enumerate(zip(seqs, RESPONSE_LENS, strict=True)):
            logits[i, :n] = model(ids)[PROMPT - 1 : PROMPT - 1 + n]
            labels[i, :n] = ids[PROMPT:]
            mask[i, :n] = 1
    ref = token_logprobs(logits, labels, mask=mask, temperature=temperature)
    return seqs, logits, labels, mask, ref


def put_rollout(run: str, seqs, ref, mask):
    """The batch as verl's agent loop and old-log-prob pass leave it in TransferQueue."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    keys, rows = [], []
    for i, (ids, n) in enumerate(zip(seqs, RESPONSE_LENS, strict=True)):
        keys.append(f"{run}p{i // GROUP}_{i % GROUP}_0")
        score = torch.zeros(n)
        score[-1] = REWARDS[i]
        rows.append(
            {
                "uid": f"{run}p{i // GROUP}",
                "input_ids": ids,
                "response_mask": torch.ones(n, dtype=torch.int64),
                "rm_scores": score,
                "old_log_probs": ref.logprobs[i, :n].clone(),
                "entropy": ref.entropy[i, :n].clone(),
            }
        )
    return tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows))


def grpo_advantages(mask):
    """GRPO by hand: (r - group mean) / (group std + 1e-6), broadcast over each response."""
    r = torch.tensor(REWARDS).view(-1, GROUP)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)
    return adv.reshape(-1, 1) * mask


def read(batch, field):
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=[field])
    value = data[field]
    return value.to_padded_tensor(0.0) if value.is_nested else value


def test_era_sync_scales_and_recomputes_inside_verl(transfer_queue, compose_verl):
    trainer_cls = era_verl._register_trainer()
    model = TinyActor()
    seqs, logits, labels, mask, ref = padded_responses(model, TEMPERATURE)
    # a band above every possible entropy (ln 37 < 4): every response is below it, so the
    # positive-advantage ones get c = k and the others c = 1
    cfg = ERAConfig(low=5.0, high=6.0, k=2.0)
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.config = compose_verl(cfg.low, cfg.high, cfg.k, *RUN)
    trainer.actor_rollout_wg = TinyActorGroup(model)

    batch = put_rollout("a", seqs, ref, mask)
    batch.extra_info["temperature"] = TEMPERATURE  # as verl's _step_once sets it
    metrics = {}
    batch = trainer._compute_advantage(batch, metrics)

    want = era_scales(ref.entropy, mask, grpo_advantages(mask), cfg)
    assert want.scale.tolist() == [2.0 if r > 0 else 1.0 for r in REWARDS]
    torch.testing.assert_close(read(batch, "advantages"), want.advantages * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(read(batch, "temperature"), TEMPERATURE / want.scale)
    assert metrics["era/frac_below"] == 1.0 and metrics["era/frac_inside"] == 0.0
    # old log-probs recomputed once, under the per-response temperature (not the scalar one)
    ((name, info),) = trainer.actor_rollout_wg.calls
    assert name == "compute_log_prob" and info["calculate_entropy"] is False
    assert "temperature" not in info
    era_lp = token_logprobs(logits, labels, mask=mask, scale=want.scale, temperature=TEMPERATURE)
    torch.testing.assert_close(read(batch, "old_log_probs") * mask, era_lp.logprobs * mask)
    assert not torch.allclose(era_lp.logprobs * mask, ref.logprobs * mask)


def test_era_sync_inside_the_band_is_verls_grpo(transfer_queue, compose_verl):
    trainer_cls = era_verl._register_trainer()
    model = TinyActor()
    seqs, _, _, mask, ref = padded_responses(model, TEMPERATURE)
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.config = compose_verl(
        0.0, 10.0, 2.0, *RUN
    )  # every response inside: c = 1, nothing to recompute
    trainer.actor_rollout_wg = TinyActorGroup(model)

    batch = put_rollout("b", seqs, ref, mask)
    metrics = {}
    batch = trainer._compute_advantage(batch, metrics)
    torch.testing.assert_close(read(batch, "advantages"), grpo_advantages(mask), atol=1e-5, rtol=0)
    torch.testing.assert_close(read(batch, "temperature"), torch.full((6,), TEMPERATURE))
    torch.testing.assert_close(read(batch, "old_log_probs") * mask, ref.logprobs * mask)
    assert metrics["era/frac_inside"] == 1.0
    assert trainer.actor_rollout_wg.calls == []


def test_era_sync_update_uses_the_per_response_temperature(transfer_queue, compose_verl):
    """verl's ``_update_actor`` writes the scalar rollout temperature into the batch; ours must
    keep it from reaching the workers, or the first step's ratio is not 1 for scaled responses."""
    trainer_cls = era_verl._register_trainer()
    model = TinyActor()
    seqs, _, _, mask, ref = padded_responses(model, TEMPERATURE)
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.config = compose_verl(5.0, 6.0, 2.0, *RUN)
    trainer.actor_rollout_wg = TinyActorGroup(model)

    batch = put_rollout("c", seqs, ref, mask)
    metrics = {}
    batch = trainer._compute_advantage(batch, metrics)
    trainer._update_actor(batch, metrics)
    name, info = trainer.actor_rollout_wg.calls[-1]
    assert name == "update_actor" and "temperature" not in info
    assert (
        info["mini_batch_size"]
        == trainer.config.actor_rollout_ref.actor.ppo_mini_batch_size * GROUP
    )
    assert metrics["actor/ratio_max_dev"] < 1e-5
    assert trainer.actor_rollout_wg.update_actor.__func__ is TinyActorGroup.update_actor


@pytest.mark.parametrize("mode", [None, "era_sync"])
@pytest.mark.parametrize("dapo", [True, False])
def test_trainer_built_through_verls_init_keeps_sync_semantics(compose_verl, mode, dapo):
    """Guards defect 1: the class verl's ``main_ppo`` picks for the configured mode, built through
    its real ``__init__``, is the ERA trainer running under verl's literal ``"sync"`` mode: the
    synchronous ``ReplayBuffer`` (not ``ReplayBufferAsync``), with dynamic sampling refilling one
    prompt batch at a time (``gen_batch_size=1``), else the train batch size. ``era_sync`` is an
    alias that ends up the same."""
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    era_verl.setup()
    extra = ["data.train_batch_size=4", *RUN]
    if dapo:
        extra += ["algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=acc"]
    if mode is not None:
        extra.append(f"trainer.v1.trainer_mode={mode}")
    cfg = compose_verl(0.45, 3.0, 2.0, *extra)
    trainer = get_trainer_cls(cfg.trainer.v1.trainer_mode)(config=cfg)
    assert isinstance(trainer, era_verl._register_trainer())
    assert trainer.trainer_mode == "sync" and cfg.trainer.v1.trainer_mode == "sync"
    buffer = trainer.replay_buffer
    assert type(buffer) is ReplayBuffer and buffer.trainer_mode == "sync"
    assert buffer.train_batch_size == 4
    assert buffer.gen_batch_size == (1 if dapo else 4)
    assert buffer.filter_groups_metric == ("acc" if dapo else None)


def test_trainer_init_refuses_bypass_mode(compose_verl):
    """Guards defect 4 through verl's real ``__init__``: bypass mode fails before any worker."""
    from verl.trainer.ppo.v1 import get_trainer_cls

    era_verl.setup()
    cfg = compose_verl(0.45, 3.0, 2.0, *RUN, "algorithm.rollout_correction.bypass_mode=true")
    with pytest.raises(ValueError, match=r"rollout_correction\.bypass_mode=true"):
        get_trainer_cls("sync")(config=cfg)


def test_era_switch_on_gspo_scales_inside_verl(transfer_queue, compose_verl):
    """Guards defect 10 inside verl's pipeline: ``loss_mode=gspo`` with ``era_enable=true`` gets
    the same ERA batch step as ``loss_mode=era`` (advantages in (0, 1) included: the group
    [1, 0, 1] has A = 0.577 for its correct responses, defect 11)."""
    trainer_cls = era_verl._register_trainer()
    model = TinyActor()
    seqs, logits, labels, mask, ref = padded_responses(model, TEMPERATURE)
    cfg = ERAConfig(low=5.0, high=6.0, k=2.0)
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.config = compose_verl(
        cfg.low,
        cfg.high,
        cfg.k,
        *RUN,
        "actor_rollout_ref.actor.policy_loss.loss_mode=gspo",
        "+actor_rollout_ref.actor.policy_loss.era_enable=true",
    )
    trainer.actor_rollout_wg = TinyActorGroup(model)
    batch = put_rollout("g", seqs, ref, mask)
    metrics = {}
    batch = trainer._compute_advantage(batch, metrics)
    adv = grpo_advantages(mask)
    assert 0 < float(adv[0, 0]) < 1
    want = era_scales(ref.entropy, mask, adv, cfg)
    assert want.scale.tolist() == [2.0 if r > 0 else 1.0 for r in REWARDS]
    torch.testing.assert_close(read(batch, "temperature"), TEMPERATURE / want.scale)
    era_lp = token_logprobs(logits, labels, mask=mask, scale=want.scale, temperature=TEMPERATURE)
    torch.testing.assert_close(read(batch, "old_log_probs") * mask, era_lp.logprobs * mask)
