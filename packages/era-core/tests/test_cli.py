"""era_core.cli: argparse options from a config dataclass."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from era_core.cli import add_dataclass_arguments, dataclass_from_args, explicit_values, option


@dataclass
class Config:
    model: str = field(default="resnet18", metadata=option("model name", group="model"))
    era: bool = field(default=True, metadata=option("ERA head", group="model"))
    min_entropy: float = field(default=0.6, metadata=option("H_min", aliases=("--hmin",)))
    mode: str = field(default="paper", metadata=option("variant", choices=("paper", "exact")))
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata=option("seeds"))
    scale: list[float] = field(default_factory=lambda: [0.5, 1.0], metadata=option(nargs=2))
    classes: int | None = field(default=None, metadata=option("class count"))
    out: Path | None = field(default=None, metadata=option("run dir", flag="--output"))
    fast: bool = field(default=False, metadata=option("switch", action="store_true"))
    pct: float = field(default=0.5, metadata=option("crop (50% of the side)"))
    notes: dict = field(default_factory=dict, metadata=option(cli=False))


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prog")
    add_dataclass_arguments(parser, Config, **kwargs)
    return parser


def test_flags_types_and_values():
    parser = _parser()
    flags = {s for action in parser._actions for s in action.option_strings}
    assert flags == {"-h", "--help", "--model", "--era", "--no-era", "--min-entropy", "--hmin",
                     "--mode", "--seeds", "--scale", "--classes", "--output", "--fast",
                     "--pct"}  # fmt: skip
    args = parser.parse_args(["--no-era", "--hmin", "1.5", "--seeds", "3", "4", "5",
                              "--scale", "0.1", "0.9", "--classes", "7", "--output", "d",
                              "--fast"])  # fmt: skip
    config = dataclass_from_args(Config, args)
    assert config == Config(era=False, min_entropy=1.5, seeds=[3, 4, 5], scale=[0.1, 0.9],
                            classes=7, out=Path("d"), fast=True)  # fmt: skip
    assert dataclass_from_args(Config, parser.parse_args([])) == Config()
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "other"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--scale", "0.1"])


def test_help_shows_every_default_and_groups():
    text = _parser().format_help()
    for shown in ("model name (default: resnet18)", "ERA head (default: on)",
                  "H_min (default: 0.6)", "seeds (default: 0 1)", "default: 0.5 1.0",
                  "class count (default: none)", "switch (default: off)",
                  "crop (50% of the side) (default: 0.5)"):  # fmt: skip
        assert shown in " ".join(text.split()), shown
    assert "model:" in text and "notes" not in text
    assert text.count("(default:") == 9 and text.count("default:") == 10


def test_explicit_only_returns_just_the_flags_given():
    parser = _parser(explicit_only=True)
    args = parser.parse_args(["--min-entropy", "1.0", "--no-era"])
    assert explicit_values(Config, args) == {"min_entropy": 1.0, "era": False}
    assert explicit_values(Config, parser.parse_args([])) == {}
    config = dataclass_from_args(Config, args, base={"model": "vit", "min_entropy": 0.1})
    assert (config.model, config.min_entropy, config.era) == ("vit", 1.0, False)
    assert "(default: 0.6)" in parser.format_help()


def test_exclude_groups_and_errors():
    groups: dict = {}
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Config, exclude={"pct"}, groups=groups)
    assert "model" in groups
    assert not any("--pct" in a.option_strings for a in parser._actions)
    with pytest.raises(TypeError, match="cls must be a dataclass type"):
        add_dataclass_arguments(parser, Config())
    with pytest.raises(ValueError, match="flag must be an option string"):
        option(flag="lr")
    with pytest.raises(ValueError, match="action must be None or 'store_true'"):
        option(action="count")

    @dataclass
    class Bad:
        table: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="field 'table': no command-line form"):
        add_dataclass_arguments(argparse.ArgumentParser(), Bad)


def test_a_field_without_default_is_a_required_option():
    @dataclass
    class Eval:
        model: str = field(metadata=option("checkpoint"))
        data: list[str] = field(metadata=option("data sets"))
        k: int = 4

    for explicit_only in (False, True):
        parser = argparse.ArgumentParser()
        actions = add_dataclass_arguments(parser, Eval, explicit_only=explicit_only)
        assert actions["model"].required and actions["data"].required
        assert not actions["k"].required
        assert actions["model"].help == "checkpoint"  # no default to show
        with pytest.raises(SystemExit):
            parser.parse_args(["--data", "a.jsonl"])
        args = parser.parse_args(["--model", "m", "--data", "a.jsonl", "b.jsonl"])
        assert dataclass_from_args(Eval, args) == Eval("m", ["a.jsonl", "b.jsonl"])
    assert add_dataclass_arguments(argparse.ArgumentParser(), Eval)["model"].default is None
