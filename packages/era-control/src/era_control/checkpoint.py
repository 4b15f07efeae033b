"""Checkpoints: the learner state on the host, the environments' running episodes, the run.

A checkpoint is one pickled dict ``{"step", "state", <loop extras>, "envs", "run"}``: the
learner state (any pytree, moved to NumPy), what the loop needs to continue (the pending action
of an off-policy loop, the last observation of an on-policy one), each environment's running
episode (:meth:`~era_control.envs.VectorEnv.state_dict`) and the run config it belongs to.
"""

from __future__ import annotations

import pickle
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .envs import VectorEnv
from .run_config import RunConfig

CHECKPOINT = "checkpoint.pkl"  # the file name in a run directory


def to_host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def to_device(tree: Any) -> Any:
    return jax.tree.map(jnp.asarray, tree)


def dumps(step: int, state: Any, envs: VectorEnv, run: RunConfig, **extras: Any) -> bytes:
    """The checkpoint bytes of ``state`` at ``step`` (``extras`` are stored beside it)."""
    return pickle.dumps(
        {"step": step, "state": to_host(state), **extras, "envs": envs.state_dict(),
         "run": run.to_dict()},
        protocol=pickle.HIGHEST_PROTOCOL,
    )  # fmt: skip


def loads(blob: bytes, run: RunConfig) -> dict[str, Any]:
    """The checkpoint dict, its state back on the device; ``ValueError`` if ``run`` differs
    from the run that wrote it."""
    ckpt = pickle.loads(blob)
    if ckpt["run"] != run.to_dict():
        raise ValueError("the checkpoint was written by a run with a different config")
    return dict(ckpt, state=to_device(ckpt["state"]))
