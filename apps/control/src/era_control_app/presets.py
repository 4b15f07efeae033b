"""Presets (``--config``): TOML files in ``era_control_app/presets/``, or a path to one.

A preset has ``description``, ``kind`` (``"paper"`` or ``"cpu"``), ``algos`` and ``envs``, and
optional ``[run]`` (RunConfig fields) and ``[agent]`` tables; ``[agent.<algo>]`` sub-tables hold
one algorithm's overrides. Algorithm names are checked against ``era_control``'s registry.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from era_control import list_algorithms


def preset_names() -> list[str]:
    folder = resources.files("era_control_app") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset by name (``era_control_app/presets/<name>.toml``) or a path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        preset = tomllib.loads(path.read_text())
    elif name in preset_names():
        text = (resources.files("era_control_app") / "presets" / f"{name}.toml").read_text()
        preset = tomllib.loads(text)
    else:
        raise ValueError(f"unknown --config {name!r}; valid: {', '.join(preset_names())}")
    check_preset(preset, name)
    return preset


def check_preset(preset: dict[str, Any], name: str) -> None:
    """``ValueError`` if the preset names an algorithm that is not registered."""
    valid = list_algorithms()
    named = list(preset.get("algos", []))
    named += [k for k, v in preset.get("agent", {}).items() if isinstance(v, dict)]
    unknown = [a for a in named if a not in valid]
    if unknown:
        raise ValueError(
            f"--config {name}: unknown algorithm(s) {unknown}; valid: {', '.join(valid)}"
        )


def preset_agent(preset: dict[str, Any], algo: str) -> dict[str, Any]:
    """The preset's overrides for ``algo``: the shared ``[agent]`` keys, then ``[agent.<algo>]``."""
    agent = preset.get("agent", {})
    out = {k: v for k, v in agent.items() if not isinstance(v, dict)}
    out.update(agent.get(algo, {}))
    return out
