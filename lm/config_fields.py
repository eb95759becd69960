"""Typed config fields: every field of a config dataclass checked against its annotation (bool only
from true/false, ints only integral, floats finite, tuples element by element, sections as their
dataclass), configs built from plain dicts (JSON) and back, and the small checks `validate()`
methods share. Errors are one ValueError line naming the field and the fix."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Iterable, Mapping


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; pick one of {list(choices)}")


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}={value!r} must be a number; set {name} to a positive number")
        if not value > 0:
            raise ValueError(f"{name}={value} must be positive; set {name} > 0")


def check_int(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}={value!r} must be an integer; set {name} to a whole number")



def _homogeneous(args: tuple) -> bool:
    """Whether tuple[...] type arguments say tuple[T, ...] (any length) rather than tuple[T1, T2]."""
    return len(args) == 2 and args[1] is Ellipsis


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__} section"
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(tp) is tuple and _homogeneous(args):
        return f"a list whose items are each {_type_name(args[0])}"
    if typing.get_origin(tp) is tuple:
        return f"a list of {len(args)} items ({', '.join(_type_name(a) for a in args)})"
    if tp is Any:
        return "any value"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


INT_LIMIT = 2 ** 63
"""Integer settings are 64-bit (shapes, steps and counters are int64 in JAX and XLA)."""


class _OutOfRange(Exception):
    """An integer setting outside 64 bits."""


def _convert(value: Any, tp: Any, strict: bool) -> Any:
    """`value` as type `tp`, or raise TypeError. strict: no conversions (ints stay ints, tuples tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for option in sorted(args, key=lambda a: a is not type(None)):   # None first, then the rest
            try:
                return _convert(value, option, strict)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not strict and isinstance(value, Mapping):
            return from_dict(tp, value)
        raise TypeError
    if origin is tuple:
        if isinstance(value, tuple) or (not strict and isinstance(value, list)):
            if not _homogeneous(args) and len(value) != len(args):
                raise TypeError
            kinds = [args[0]] * len(value) if _homogeneous(args) else args
            items = tuple(_convert(v, kind, strict) for v, kind in zip(value, kinds))
            same = isinstance(value, tuple) and all(a is b for a, b in zip(items, value))
            return value if same else items
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif not strict and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        else:
            raise TypeError
        if not -INT_LIMIT <= number < INT_LIMIT:
            raise _OutOfRange
        return number
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise OverflowError           # NaN/Inf: a number, but never a valid setting
            return float(value) if not strict else value
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    return value                              # an annotation this checker does not know


def check_fields(config: Any, *, strict: bool = True, prefix: str = "") -> Any:
    """`config` with every field checked against its annotation (recursively into sections).

    strict=False (input from JSON, overrides, files) also converts: integral floats to ints
    (1e9 -> 1000000000), lists to tuples, dicts to sections. Raises a ValueError naming the field."""
    hints = typing.get_type_hints(type(config))
    changes = {}
    for f in dataclasses.fields(config):
        value, tp = getattr(config, f.name), hints[f.name]
        name = f"{prefix}{f.name}"
        try:
            new = _convert(value, tp, strict)
        except OverflowError:
            raise ValueError(f"{name}={value!r} is not a finite number; NaN and Inf are never valid "
                             f"settings: give {name} a finite value") from None
        except _OutOfRange:
            raise ValueError(f"{name}={value!r} does not fit in 64 bits (|value| < 2**63); give {name} "
                             "a realistic value") from None
        except TypeError:
            raise ValueError(f"{name}={value!r} ({type(value).__name__}) must be {_type_name(tp)}; "
                             f"set {name} to {_type_name(tp)}") from None
        if dataclasses.is_dataclass(new):
            new = check_fields(new, strict=strict, prefix=f"{name}.")
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(config, **changes) if changes else config


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Build `cls` from a dict, refusing unknown keys with the list of known ones and values of the
    wrong type (integral floats become ints, lists tuples), naming the field; sections (fields whose
    type is a dataclass, or a dataclass or None) are built the same way from their dicts."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{prefix.rstrip('.') or cls.__name__}={values!r} must be a section (an object "
                         f"of {cls.__name__} fields), not {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {[prefix + u for u in unknown]}; "
                         f"known fields: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        section = section_type(hints[key])
        if section is not None and isinstance(value, Mapping):
            value = from_dict(section, value, prefix=f"{prefix}{key}.")
        kwargs[key] = value
    return check_fields(cls(**kwargs), strict=False, prefix=prefix)


def section_type(tp: Any) -> type | None:
    """The config dataclass a field annotation names (`ModelConfig`, or `WSDConfig | None`), else None."""
    for option in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(option):
            return option
    return None


def differences(old: Any, new: Any, ignore: Iterable[str] = (), prefix: str = "") -> list[str]:
    """The dotted names of the fields whose values differ between two config dicts (recursively into
    sections), sorted; fields named in `ignore` (top-level names or dotted paths) are left out."""
    name = prefix.rstrip(".")
    if name in ignore:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), ignore, f"{prefix}{key}.")
        return out
    return [] if old == new else [name]


def with_field_defaults(recorded: dict, config: Any, current: dict | None = None) -> dict:
    """`recorded` (a config as a folder recorded it) with each field the config class has gained since
    filled in with that field's default (only fields in `current`, the config as it would be recorded
    now; default: to_dict(config)): a folder made before a field existed reads as its default, so
    adding a field never strands old runs or sweeps, and setting it to anything else is still a change."""
    import json

    current = json.loads(json.dumps(to_dict(config))) if current is None else current

    def plain(x):
        return json.loads(json.dumps(to_dict(x) if dataclasses.is_dataclass(x) else x))

    out = dict(recorded)
    for f in dataclasses.fields(config):
        if f.name not in current:
            continue
        value = getattr(config, f.name)
        if f.name not in out:
            if f.default is not dataclasses.MISSING:
                out[f.name] = plain(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = plain(f.default_factory())
        elif dataclasses.is_dataclass(value) and isinstance(out[f.name], dict) and isinstance(current[f.name], dict):
            out[f.name] = with_field_defaults(out[f.name], value, current[f.name])
    return out
