"""era_vision — see packages/era-vision/README.md. Content arrives with its own issue."""

__version__ = "0.1.0"
