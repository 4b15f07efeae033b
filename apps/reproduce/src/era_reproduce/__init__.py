"""era_reproduce — `era-reproduce`: the paper's three domains in one command (see docs/reproduce.md)."""

__version__ = "0.1.0"
