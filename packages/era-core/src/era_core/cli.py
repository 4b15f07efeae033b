"""Command-line flags from a config dataclass: one ``argparse`` option per field.

A field's flag, help text, choices and the like come from its metadata, set with
:func:`option`; every help line ends with the field's default. Types come from the
annotations: ``int``, ``float``, ``str``, ``pathlib.Path`` (``X | None`` too), ``bool``
(``--flag`` / ``--no-flag``, or a plain switch with ``action="store_true"``) and ``list[X]``
(``nargs``, ``+`` unless given). A field without a default is a required option.

With ``explicit_only=True`` an option that is not given leaves no attribute on the namespace
(``argparse.SUPPRESS``), so :func:`explicit_values` returns exactly the flags the user typed:
what an app layering presets under the command line needs. :func:`dataclass_from_args`
builds the dataclass from the parsed values (and ``base`` values or the defaults otherwise).

>>> import argparse
>>> from dataclasses import dataclass, field
>>> @dataclass
... class Config:
...     lr: float = field(default=0.1, metadata=option("learning rate"))
...     opt: str = field(default="sgd", metadata=option("optimizer", choices=("sgd", "adam")))
...     ema: bool = field(default=False, metadata=option("keep an EMA"))
>>> parser = argparse.ArgumentParser()
>>> _ = add_dataclass_arguments(parser, Config)
>>> dataclass_from_args(Config, parser.parse_args(["--lr", "0.5", "--ema"]))
Config(lr=0.5, opt='sgd', ema=True)
>>> parser.parse_args(["--opt", "rmsprop"])  # doctest: +SKIP
error: argument --opt: invalid choice: 'rmsprop' (choose from sgd, adam)
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import types
import typing
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Option",
    "add_dataclass_arguments",
    "check_field_types",
    "dataclass_from_args",
    "describe_type",
    "explicit_values",
    "option",
    "value_fits",
]

_KEY = "era_core.cli"


@dataclass(frozen=True)
class Option:
    """How one dataclass field appears on the command line (see :func:`option`)."""

    help: str = ""
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    nargs: int | str | None = None
    group: str | None = None
    action: str | None = None
    cli: bool = True
    default_text: str | None = None


def option(
    help: str = "",
    *,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    choices: Collection[Any] | None = None,
    metavar: str | None = None,
    nargs: int | str | None = None,
    group: str | None = None,
    action: str | None = None,
    cli: bool = True,
    default_text: str | None = None,
) -> dict[str, Option]:
    """Field metadata for :func:`add_dataclass_arguments`: ``field(metadata=option(...))``.

    Args:
        help: the help text (the default is appended to it).
        flag: the option string, e.g. ``"--lr"``; default ``--<field-name-with-dashes>``.
        aliases: more option strings for the same field.
        choices: the valid values.
        metavar: the value's name in ``--help``.
        nargs: for list fields, how many values (default ``"+"``).
        group: the title of the ``--help`` section the option is listed in.
        action: ``"store_true"`` makes a ``bool`` field a plain switch (no ``--no-`` form).
        cli: ``False`` keeps the field off the command line.
        default_text: what ``--help`` shows as the default instead of the field's default.
    """
    if flag is not None and not flag.startswith("-"):
        raise ValueError(f"flag must be an option string starting with '-', got {flag!r}")
    if action not in (None, "store_true"):
        raise ValueError(f"action must be None or 'store_true', got {action!r}")
    choices = None if choices is None else tuple(choices)
    return {
        _KEY: Option(
            help, flag, tuple(aliases), choices, metavar, nargs, group, action, cli, default_text
        )
    }


def _option(field: dataclasses.Field) -> Option:
    return field.metadata.get(_KEY, Option())


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _unwrap_optional(hint: Any) -> Any:
    """``X`` from ``X | None`` / ``Optional[X]``; other hints unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(_show(item) for item in value)
    if value == "":
        return "''"
    return str(value)


def _kwargs(field: dataclasses.Field, hint: Any, opt: Option) -> dict[str, Any]:
    """``add_argument`` keywords for ``field`` (type, nargs, action), not yet help/default."""
    hint = _unwrap_optional(hint)
    if hint is bool:
        if opt.action == "store_true":
            return {"action": "store_true"}
        return {"action": argparse.BooleanOptionalAction}
    kwargs: dict[str, Any] = {}
    if typing.get_origin(hint) in (list, tuple, Sequence):
        (item,) = typing.get_args(hint)[:1] or (str,)
        kwargs["nargs"] = opt.nargs if opt.nargs is not None else "+"
        hint = _unwrap_optional(item)
    if hint in (int, float, pathlib.Path):
        kwargs["type"] = hint
    elif hint is not str:
        raise TypeError(
            f"field {field.name!r}: no command-line form for type {hint!r} (use "
            "option(cli=False) to keep it off the command line)"
        )
    return kwargs


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    explicit_only: bool = False,
    exclude: Collection[str] = (),
    groups: MutableMapping[str, Any] | None = None,
) -> dict[str, argparse.Action]:
    """Add one option per field of the dataclass ``cls`` to ``parser``; returns them by field.

    Args:
        explicit_only: options not given leave no attribute (``argparse.SUPPRESS``), for
            :func:`explicit_values`; otherwise the field's default is the option's default.
        exclude: field names to leave out (as ``option(cli=False)``).
        groups: ``{title: argument group}`` to reuse; groups named by :func:`option` that are
            not in it are created (and added to it, when given).
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    groups = {} if groups is None else groups
    actions = {}
    for field in dataclasses.fields(cls):
        opt = _option(field)
        if not opt.cli or field.name in exclude or not field.init:
            continue
        kwargs = _kwargs(field, hints[field.name], opt)
        default = _default(field)
        help_text = opt.help.replace("%", "%%")
        if default is not dataclasses.MISSING or opt.default_text is not None:
            shown = opt.default_text if opt.default_text is not None else _show(default)
            shown = shown.replace("%", "%%")
            help_text = f"{help_text} (default: {shown})" if help_text else f"default: {shown}"
        kwargs["help"] = help_text
        if default is dataclasses.MISSING:
            kwargs["required"] = True  # the dataclass cannot be built without it
            if explicit_only:
                kwargs["default"] = argparse.SUPPRESS
        else:
            kwargs["default"] = argparse.SUPPRESS if explicit_only else default
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        kwargs["dest"] = field.name
        target: Any = parser
        if opt.group is not None:
            if opt.group not in groups:
                groups[opt.group] = parser.add_argument_group(opt.group)
            target = groups[opt.group]
        flag = opt.flag or "--" + field.name.replace("_", "-")
        action = target.add_argument(flag, *opt.aliases, **kwargs)
        action.help = help_text  # BooleanOptionalAction may append its own default
        actions[field.name] = action
    return actions


def explicit_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The command-line fields of ``cls`` present on ``args`` (with ``explicit_only``: the
    flags given); fields kept off the command line (``option(cli=False)``) are not read."""
    names = {field.name for field in dataclasses.fields(cls) if _option(field).cli}
    return {key: value for key, value in vars(args).items() if key in names}


def dataclass_from_args(
    cls: type, args: argparse.Namespace, *, base: Mapping[str, Any] | None = None
) -> Any:
    """``cls(**values)``: the parsed values of its fields over ``base`` (over the defaults)."""
    values = dict(base or {})
    values.update(explicit_values(cls, args))
    return cls(**values)


# ----------------------------------------------------------------------------- value types


_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    pathlib.Path: "a path",
    dict: "a table",
}


def describe_type(hint: Any) -> str:
    """What a value of the type ``hint`` looks like, for error messages.

    >>> describe_type(tuple[int, ...]), describe_type(float | None)
    ('a list of integers', 'a number or none')
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in args)
    if origin in (tuple, list, Sequence):
        item = describe_type(args[0]) if args else "a value"
        return f"a list of {item.removeprefix('an ').removeprefix('a ')}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (dict, Mapping):
        return "a table"
    if hint is type(None):
        return "none"
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def value_fits(value: Any, hint: Any) -> bool:
    """Whether ``value``, as read from JSON or TOML, is a value of the type ``hint`` (lists
    stand for tuples, strings for paths, integers for floats); a type this check does not
    know accepts every value.

    >>> value_fits([256, 256], tuple[int, ...]), value_fits("abc", tuple[int, ...])
    (True, False)
    >>> value_fits(True, int), value_fits(3, float), value_fits(None, str | None)
    (False, True, True)
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(value_fits(value, arg) for arg in args)
    if origin in (tuple, list, Sequence):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(value_fits(v, item) for v in value)
    if origin is typing.Literal:
        return value in args
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, pathlib.Path):
        return isinstance(value, str)
    return True


def check_field_types(
    values: Mapping[str, Any], cls: type, where: Callable[[str], str] | None = None
) -> None:
    """``ValueError`` for the first entry of ``values`` whose value does not fit the type of
    the field of the dataclass ``cls`` it sets (see :func:`value_fits`); keys that are not
    fields are left to the caller. ``where(key)`` names the setting in the message (default
    ``--key-with-dashes``).

    >>> @dataclass
    ... class Config:
    ...     hidden: tuple[int, ...] = (256, 256)
    >>> check_field_types({"hidden": "abc"}, Config, lambda key: f"--set {key}")
    Traceback (most recent call last):
    ...
    ValueError: --set hidden='abc' is not valid: hidden must be a list of integers (default [256, 256])
    """
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    name = where or (lambda key: "--" + key.replace("_", "-"))
    for key, value in values.items():
        if key not in fields or value_fits(value, hints[key]):
            continue
        default = _default(fields[key])
        shown = ""
        if default is not dataclasses.MISSING:
            shown = f" (default {_json_like(default)!r})"
        raise ValueError(
            f"{name(key)}={value!r} is not valid: {key} must be {describe_type(hints[key])}{shown}"
        )


def _json_like(value: Any) -> Any:
    """``value`` as JSON would hold it: tuples as lists (for messages that show defaults)."""
    if isinstance(value, (list, tuple)):
        return [_json_like(item) for item in value]
    return value
