"""era_reproduce — `era-reproduce`: the paper's three domains in one command (see docs/reproduce.md)."""

from importlib import metadata as _metadata

__version__ = _metadata.version("era-reproduce")
