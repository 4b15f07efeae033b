"""Presets (``--config``): TOML files in ``era_control_app/presets/``, or a path to one.

A preset has ``description``, ``kind`` (``"paper"`` or ``"cpu"``), ``algos`` and ``envs``, and
optional ``[run]`` (RunConfig fields) and ``[agent]`` tables; ``[agent.<algo>]`` sub-tables hold
one algorithm's overrides. Algorithm names are checked against ``era_control``'s registry.
"""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from era_control import list_algorithms
from era_control.run_config import RunConfig


def preset_names() -> list[str]:
    folder = resources.files("era_control_app") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset by name (``era_control_app/presets/<name>.toml``) or a path to a TOML file;
    ``ValueError`` naming the file when it cannot be read or does not parse."""
    path = Path(name)
    if path.suffix == ".toml" and name not in preset_names():
        if not path.is_file():
            raise ValueError(f"--config {name!r}: no such file (a preset name or a TOML path)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--config {name!r}: cannot be read ({error})") from None
    elif name in preset_names():
        text = (resources.files("era_control_app") / "presets" / f"{name}.toml").read_text()
    else:
        raise ValueError(f"unknown --config {name!r}; valid: {', '.join(preset_names())}")
    try:
        preset = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config {name!r}: not valid TOML ({error})") from None
    check_preset(preset, name)
    return preset


# the preset keys and the type each must have
_PRESET_KEYS = {
    "description": (str, "a string"),
    "kind": (str, "a string"),
    "algos": (list, "a list of algorithm names"),
    "envs": (list, "a list of env ids"),
    "run": (dict, "a table of run settings"),
    "agent": (dict, "a table of hyper-parameters"),
}


def check_preset(preset: dict[str, Any], name: str) -> None:
    """``ValueError`` if a preset key has the wrong type or the preset names an algorithm
    that is not registered."""
    for key, (kind, what) in _PRESET_KEYS.items():
        if key in preset and not isinstance(preset[key], kind):
            raise ValueError(f"--config {name}: {key} = {preset[key]!r} must be {what}")
    for key in ("algos", "envs"):
        if not all(isinstance(item, str) for item in preset.get(key, [])):
            raise ValueError(f"--config {name}: {key} = {preset[key]!r} must list strings")
    settings = {f.name for f in dataclasses.fields(RunConfig)} - {"algo", "env", "agent"}
    unknown_settings = sorted(set(preset.get("run", {})) - settings)
    if unknown_settings:
        raise ValueError(
            f"--config {name}: unknown [run] setting(s) {unknown_settings}; valid: "
            f"{', '.join(sorted(settings))}"
        )
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
