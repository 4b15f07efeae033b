"""era_control_app — the control app (see apps/control/README.md)."""

from importlib import metadata as _metadata

__version__ = _metadata.version("era-control-app")
