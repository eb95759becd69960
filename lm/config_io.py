"""Configs in and out: `key=value` overrides (dotted keys, JSON values) of any config dataclass
(a TrainConfig for lm-train, a sweep's config for lm-sweep), JSON files, config files (.json, or .py
defining `config` / `get_config()`) read with one error line per problem, and `describe`, the list
of every field by section with its documentation (`--help-config`)."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import os
import textwrap
import typing
from typing import Any, Mapping

from lm.config import TrainConfig
from lm.config_fields import check_fields, from_dict, section_type, to_dict


def _parse_value(text: str) -> Any:
    """A value as JSON (1e10, true, null, [1, 2], {"a": 1}), else as the Python spelling of a tuple,
    None or a bool ((1e3, 1e5), None, True), else as the string itself (cosine, runs/x)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    return value if value is None or isinstance(value, (tuple, bool)) else text


def _section(cls: type, name: str) -> type | None:
    """The config dataclass of field `name` of `cls` (also when the field may be None), else None."""
    return section_type(typing.get_type_hints(cls).get(name))


def _show(value: Any) -> str:
    """A field's value as a `key=value` override would spell it (JSON; large floats as 1.6e10)."""
    if isinstance(value, float) and value and not 1e-4 <= abs(value) < 1e5:
        mantissa, exponent = f"{value:.12e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return json.dumps(value, default=str)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """`config` (any config dataclass) with `key=value` overrides applied, such as `model.d_model=128`,
    `steps=50` or, on a sweep, `train.model.n_layers=3` and `budgets=[1e10,3e10]`. Values are JSON (or
    Python literals, or plain strings), checked against each field's type; a section that is None
    (a sweep's `wsd`) is created with its defaults when one of its fields is set. Every bad key or
    value is one ValueError line naming it."""
    values = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. model.d_model=128)")
        key, raw = item.split("=", 1)
        target, cls = values, type(config)
        *parents, leaf = key.split(".")
        for parent in parents:
            section = _section(cls, parent) if parent in target else None
            if section is None:
                known = sorted(k for k in target if _section(cls, k) is not None)
                raise ValueError(f"override {key!r}: {parent!r} is not a config section; sections: {known}")
            if target[parent] is None:
                target[parent] = to_dict(section())
            if not isinstance(target[parent], dict):      # an earlier override set it to a value
                raise ValueError(f"override {key!r}: {parent}={target[parent]!r} must be a {section.__name__} "
                                 f"section; set its fields instead ({parent}.<field>=...)")
            target, cls = target[parent], section
        if leaf not in target:
            raise ValueError(f"override {key!r}: unknown field {leaf!r}; known: {sorted(target)}")
        target[leaf] = _parse_value(raw)
    return from_dict(type(config), values)


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """{field name: the docstring written under it} of a config dataclass (read from its source)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def describe(config: Any, prefix: str = "", doc: str | None = None) -> list[str]:
    """Every field of `config` as `key = value` lines under its section, each followed by its
    documentation (sections: the field's docstring, else the class's): what `--help-config` prints,
    keys spelled as `key=value` overrides spell them."""
    cls = type(config)
    docs = field_docs(cls)
    head = (doc or inspect.cleandoc(cls.__doc__ or "")).split("\n\n")[0]
    lines = [f"[{prefix.rstrip('.') or cls.__name__}]"] + [f"    {line}" for line in head.splitlines()]
    sections = []
    for f in dataclasses.fields(config):
        value, section = getattr(config, f.name), _section(cls, f.name)
        if section is not None and value is not None:
            sections.append((f.name, value))
            continue
        shown = _show(value)
        if section is not None:
            shown += f"  (off; setting any {prefix}{f.name}.* field turns on a {section.__name__})"
        lines.append(f"  {prefix}{f.name} = {shown}")
        lines += [f"      {line}" for line in docs.get(f.name, "").splitlines()]
    for name, value in sections:
        lines += [""] + describe(value, f"{prefix}{name}.", docs.get(name))
    return lines


def save_json(config: Any, path: str) -> None:
    from lm.io import atomic_write_text, dumps_strict
    atomic_write_text(path, dumps_strict(to_dict(config), indent=2, sort_keys=True))


def load_train_config(path: str) -> TrainConfig:
    """A TrainConfig from a JSON file or a Python file that defines `config` (or `get_config()`).
    Every way the file can be wrong is one ValueError line naming the file."""
    if not os.path.isfile(path):
        raise ValueError(f"--config {path}: no such file; give the path of a .json or .py config")
    try:
        if path.endswith(".py"):
            import runpy
            namespace = runpy.run_path(path)
            if "get_config" in namespace:
                config = namespace["get_config"]()
            elif "config" in namespace:
                config = namespace["config"]
            else:
                raise ValueError("it defines neither `config` nor `get_config()`; define one that returns "
                                 "a TrainConfig")
        else:
            with open(path) as f:
                config = json.load(f)
    except SyntaxError as e:
        raise ValueError(f"--config {path}: syntax error at line {e.lineno}: {e.msg}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--config {path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise ValueError(f"--config {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's file raised: one line, not its traceback
        raise ValueError(f"--config {path}: running it raised {type(e).__name__}: {e}") from None
    try:
        if isinstance(config, Mapping):
            return from_dict(TrainConfig, config)
        if not isinstance(config, TrainConfig):
            raise ValueError(f"its config is a {type(config).__name__}, not a TrainConfig (or a dict of fields)")
        return check_fields(config, strict=False)
    except ValueError as e:
        raise ValueError(f"--config {path}: {e}") from None


def help_config_action(get_config: Any, what: str) -> type:
    """An argparse action for `--help-config`: print `describe(get_config())` under a line saying
    whose values are shown (`what`), then exit, like --help."""
    import argparse

    class HelpConfig(argparse.Action):
        def __init__(self, option_strings, dest, **kw):
            super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

        def __call__(self, parser, namespace, values, option_string=None):
            print(f"Every config field, by section, as `key=value` overrides name it (values: {what}).\n")
            print("\n".join(describe(get_config())))
            parser.exit()

    return HelpConfig
