"""Several training processes under ``torchrun``: ranks, the process group and reductions.

``torchrun --nproc-per-node N -m era_vision_app ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`from_env` reads them (one process when they are absent) and :func:`setup` joins the
process group (``nccl`` when the run's device is CUDA, else ``gloo``). Every helper here is a
no-op for one process, so the training loop calls them unconditionally.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

__all__ = ["SINGLE", "Dist", "DistError", "from_env", "setup", "shutdown"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistError(ValueError):
    """The torchrun environment is inconsistent (e.g. ``RANK`` >= ``WORLD_SIZE``)."""


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes (``world_size`` 1: alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints, logs and writes the run directory."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        """The element-wise sum of ``values`` over every process (float64)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in rank order (picklable objects)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Dist()


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise DistError(f"environment variable {name}={value!r} must be an integer") from None


def from_env() -> Dist:
    """The ranks torchrun set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise DistError(f"WORLD_SIZE is set but {', '.join(missing)} is not (launch with torchrun)")
    rank, world, local = (_env_int(name) for name in _ENV)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistError(
            f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: need WORLD_SIZE >= 1, "
            "0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
        )
    return Dist(rank, world, local)


def setup(dist: Dist, device: torch.device) -> None:
    """Join the process group of ``dist`` for ``device`` (nothing for one process)."""
    if not dist.enabled or torch_dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # env:// reads MASTER_ADDR / MASTER_PORT from torchrun; a dead peer ends the run in minutes
    torch_dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))


def shutdown() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
