"""era_control — see packages/era-control/README.md. Content arrives with its own issue."""

__version__ = "0.1.0"
