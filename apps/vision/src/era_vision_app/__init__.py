"""era_vision_app — the vision app (see apps/vision/README.md)."""

__version__ = "0.1.0"
