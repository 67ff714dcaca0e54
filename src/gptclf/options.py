"""Options declared once. A dataclass field made with :func:`option` carries its default, its
choices or rule, and its help; the command-line flags, the validation and the reading of config
files (YAML or JSON) are all derived from that one declaration."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from gptclf.errors import GptclfError

T = TypeVar("T")
META = "gptclf.option"


@dataclass(frozen=True)
class Meta:
    """What a field declares besides its default."""

    help: str
    choices: tuple | None = None  # allowed values (None is always allowed where the default is)
    valid: Callable[[Any], bool] | None = None  # a rule the value must follow ...
    rule: str = ""  # ... and how an error states it: "at least 1"
    flags: tuple[str, ...] = ()  # command-line flags, when not just --the-field-name
    parse: Callable[[str], Any] | None = None  # how a command-line string becomes the value
    group: str | None = None  # heading in --help
    metavar: str | tuple[str, ...] | None = None
    cli: bool = True  # False: settable in config files only


def option(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its command-line and config-file declaration."""
    return field(default=default, metadata={META: Meta(help, **meta)})


def at_least(minimum: float) -> dict:
    """The ``valid`` and ``rule`` of an option that must be at least ``minimum``."""
    return {"valid": lambda value: value >= minimum, "rule": f"at least {minimum:g}"}


def default_of(f: dataclasses.Field) -> Any:
    """The option's default value."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def meta_of(f: dataclasses.Field) -> Meta:
    return f.metadata[META]


def flag_of(f: dataclasses.Field) -> str:
    """The option's main command-line flag, as errors name it."""
    declared = meta_of(f).flags
    return declared[0] if declared else "--" + f.name.replace("_", "-")


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    names: Iterable[str] | None = None,
    keep_defaults: bool = False,
) -> None:
    """Add a flag for each option of ``cls`` (or those in ``names``). Unless ``keep_defaults``,
    a flag not given is None, so that presets and config files can fill it in."""
    hints = typing.get_type_hints(cls)
    wanted = None if names is None else set(names)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        meta = meta_of(f)
        if not meta.cli or (wanted is not None and f.name not in wanted):
            continue
        target = parser
        if meta.group and isinstance(parser, argparse.ArgumentParser):
            if meta.group not in groups:
                groups[meta.group] = parser.add_argument_group(meta.group)
            target = groups[meta.group]
        target.add_argument(
            *(meta.flags or [flag_of(f)]),
            dest=f.name,
            **_argparse_kind(hints[f.name], f.default, meta),
            default=f.default if keep_defaults else None,
        )


def _argparse_kind(hint: Any, default: Any, meta: Meta) -> dict:
    base, length = _base_type(hint)
    help_text = meta.help
    if default not in (None, False, True) and not isinstance(default, tuple):
        help_text += f" (default {default})"
    if base is bool:
        return {"action": "store_false" if default else "store_true", "help": help_text}
    kind: dict = {"type": meta.parse or base, "help": help_text}
    if meta.choices:
        kind["choices"] = [c for c in meta.choices if c is not None]
    if length is not None:
        kind["nargs"] = "+" if length == -1 else length
    if meta.metavar is not None:
        kind["metavar"] = meta.metavar
    return kind


def _base_type(hint: Any) -> tuple[type, int | None]:
    """The type of one value (``int`` for ``int | None``) and, for tuples, how many: -1 for any."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return args[0], -1 if args[-1] is Ellipsis else len(args)
    return hint, None


def given(args: argparse.Namespace, cls: type) -> dict:
    """The options of ``cls`` given on the command line (not None)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def build(cls: type[T], values: Mapping[str, Any], source: str | None = None) -> T:
    """An instance of ``cls`` from ``values``, each converted to its declared type and checked;
    an unknown key or a wrong value is an error naming it and ``source`` (the file the values
    come from; None: the command line)."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GptclfError(f"{source or 'options'}: unknown option(s) {', '.join(unknown)}")
    converted = {
        name: _converted(known[name], hints[name], value, source) for name, value in values.items()
    }
    instance = cls(**converted)
    check(instance, source)
    return instance


def _converted(f: dataclasses.Field, hint: Any, value: Any, source: str | None) -> Any:
    if value is None:
        return None
    base, length = _base_type(hint)
    try:
        if length is not None:
            items = [value] if isinstance(value, str) else list(value)
            if len(items) != length and (length != -1 or not items):
                raise ValueError
            return tuple(_one(base, item) for item in items)
        return _one(base, value)
    except (TypeError, ValueError) as exc:
        where = flag_of(f) if source is None else f"{source}: {f.name}"
        raise GptclfError(f"{where} = {value!r} is not {_type_name(base, length)}") from exc


def _one(base: type, value: Any) -> Any:
    if base is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if base in (int, float) and isinstance(value, bool):
        raise TypeError
    if base is int and isinstance(value, float):
        raise TypeError  # 8.5 epochs is a mistake, not 8
    if base is str and not isinstance(value, str):
        raise TypeError
    return base(value)


def _type_name(base: type, length: int | None = None) -> str:
    """How an error names the type: "a number", or for tuples "a list of 3 numbers"."""
    names = {
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
        str: ("text", "texts"),
    }
    one, many = names.get(base, ("true or false", "") if base is bool else ("a path", "paths"))
    if length is None:
        return one
    return f"a list of {'one or more' if length == -1 else length} {many}"


def check(instance: Any, source: str | None = None) -> None:
    """Every option of ``instance`` within its choices and rule; an error names its flag (or,
    with ``source``, the config file and key)."""
    for f in fields(instance):
        meta, value = meta_of(f), getattr(instance, f.name)
        where = flag_of(f) if source is None else f"{source}: {f.name}"
        if value is None and f.default is None:
            continue
        if meta.choices is not None and value not in meta.choices:
            allowed = ", ".join(str(c) for c in meta.choices if c is not None)
            raise GptclfError(f"{where} must be one of {allowed}, not {value!r}")
        if meta.valid is not None and (value is None or not meta.valid(value)):
            raise GptclfError(f"{where} must be {meta.rule}, not {value!r}")


def read_config_file(path: Path) -> dict:
    """The mapping in a YAML or JSON file of options."""
    import yaml

    if not path.is_file():
        raise GptclfError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GptclfError(f"{path}: not a readable YAML or JSON file ({first})") from exc
    if not isinstance(values, dict):
        raise GptclfError(f"{path}: the file must hold a mapping of option names to values")
    return values


def as_plain(instance: Any) -> dict:
    """The options of ``instance`` as JSON/YAML-ready values (paths as text, tuples as lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(instance, f.name)) for f in fields(instance)}
