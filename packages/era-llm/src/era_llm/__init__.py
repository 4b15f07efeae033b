"""era_llm — see packages/era-llm/README.md. Content arrives with its own issue."""

__version__ = "0.1.0"
