"""era_vision_app — the vision app (see apps/vision/README.md)."""

from importlib import metadata as _metadata

__version__ = _metadata.version("era-vision-app")
