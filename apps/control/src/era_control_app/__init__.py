"""era_control_app — the control app (see apps/control/README.md)."""

__version__ = "0.1.0"
