"""ERAGRPOTrainer on two CPU processes with FSDP2 (gloo): gradients equal a single process's.

Guards defect 6 (multi-GPU TRL): under FSDP2 the head's weight is a sharded ``DTensor``; the
ERA head gathers it with ``full_tensor()`` (as TRL's own fused head does) and one ERA loss
step on two processes, each with half of the batch, gives the gradients of one process on the
whole batch.

The trainer is built under ``accelerate`` (its ``PartialState`` starts the gloo process group
from the usual ``RANK`` / ``WORLD_SIZE`` / ``MASTER_*`` variables). Accelerate enables its FSDP
plugin only for GPU-family distributed types, not ``MULTI_CPU``, so the model is sharded with
torch's ``fully_shard`` the way accelerate's ``fsdp2_prepare_model`` does it (each decoder
layer, then the root) on a CPU device mesh.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from era_llm.era import ERAConfig
from era_llm.toy import char_tokenizer, tiny_causal_lm

WORLD, ROWS = 2, 4
PROMPTS = ["12+3=", "4*5=", "7-2=", "9+9="]


def make_trainer(out_dir: str, per_device: int):
    from datasets import Dataset
    from trl import GRPOConfig

    from era_llm.integrations.trl import ERAGRPOTrainer

    tok = char_tokenizer()
    args = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=per_device,
        num_generations=ROWS,
        max_completion_length=5,
        max_steps=1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        bf16=False,
        seed=0,
        loss_type="grpo",
    )
    trainer = ERAGRPOTrainer(
        model=tiny_causal_lm(tok),
        processing_class=tok,
        reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
        train_dataset=Dataset.from_dict({"prompt": PROMPTS * 2}),
        args=args,
        era_config=ERAConfig(),
    )
    trainer.current_gradient_accumulation_steps = 1  # set by TRL's training loop; one step here
    return trainer


def rows(batch: dict, start: int, stop: int) -> dict:
    return {
        k: v[start:stop] if isinstance(v, torch.Tensor) and v.dim() and v.size(0) == ROWS else v
        for k, v in batch.items()
    }


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        g = p.grad
        out[name] = (g.full_tensor() if isinstance(g, DTensor) else g).detach().clone()
    return out


def worker(rank: int, port: int, tmp: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    trainer = make_trainer(os.path.join(tmp, f"rank{rank}"), ROWS // WORLD)
    assert trainer.accelerator.num_processes == WORLD
    model = trainer.model
    mesh = init_device_mesh("cpu", (WORLD,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert isinstance(model.get_output_embeddings().weight, DTensor)
    per = ROWS // WORLD
    batch = rows(torch.load(os.path.join(tmp, "batch.pt")), rank * per, (rank + 1) * per)
    model.train()
    loss = trainer._compute_loss(model, batch)
    loss.backward()
    grads = grads_of(model)  # full_tensor() is a collective: every rank calls it
    if rank == 0:
        torch.save(grads, os.path.join(tmp, "fsdp_grads.pt"))
    torch.distributed.barrier()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fsdp2_two_processes_match_one(tmp_path):
    torch.manual_seed(0)
    single = make_trainer(str(tmp_path / "single"), ROWS)
    single.model.train()
    batch = single._generate_and_score_completions([{"prompt": PROMPTS[0]}] * ROWS)
    # fixed advantages and ERA scales (sharpen, keep, flatten): the batch is the same in both
    batch["advantages"] = torch.tensor([1.0, -0.5, 0.7, -1.2])
    batch["era_scale"] = torch.tensor([2.0, 1.0, 0.5, 1.0])
    batch["old_per_token_logps"] = None
    torch.save(batch, tmp_path / "batch.pt")
    loss = single._compute_loss(single.model, batch)
    loss.backward()
    want = grads_of(single.model)
    assert any(float(g.abs().max()) > 0 for g in want.values())

    mp.start_processes(
        worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    got = torch.load(tmp_path / "fsdp_grads.pt")
    assert set(got) == set(want)
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, atol=1e-5, rtol=1e-4, msg=name)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
