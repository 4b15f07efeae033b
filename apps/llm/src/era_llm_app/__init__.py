"""era_llm_app — the llm app (see apps/llm/README.md)."""

from importlib import metadata as _metadata

__version__ = _metadata.version("era-llm-app")
