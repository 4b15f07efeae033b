"""era_llm_app — the llm app (see apps/llm/README.md)."""

__version__ = "0.1.0"
