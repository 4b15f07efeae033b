"""An environment worker process of :class:`era_control.envs.VectorEnv` (run as a script).

``python _env_worker.py READ_FD WRITE_FD SPEC``: ``SPEC`` is a JSON list
``[env_id, action_repeat, standard, count]``. The worker loads ``envs.py`` beside this file by
path (so it imports neither JAX nor the parent's main module), builds ``count`` environments and
answers ``(command, payload)`` messages on the two pipes until ``("close", ())``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from multiprocessing.connection import Connection
from pathlib import Path


def main(argv: list[str]) -> None:
    read_fd, write_fd, spec = int(argv[0]), int(argv[1]), json.loads(argv[2])
    path = Path(__file__).with_name("envs.py")
    module_spec = importlib.util.spec_from_file_location("_era_control_envs", path)
    assert module_spec is not None and module_spec.loader is not None
    envs = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(envs)
    envs.serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False), *spec)


if __name__ == "__main__":
    main(sys.argv[1:])
