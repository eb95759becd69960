"""TrainConfig in and out: `key=value` overrides (dotted keys, JSON values), JSON files, and config
files (.json, or .py defining `config` / `get_config()`) read with one error line per problem."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from lm.config import TrainConfig
from lm.config_fields import check_fields, from_dict, to_dict


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` overrides such as `model.d_model=128` or `steps=50` (values as JSON)."""
    values = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. model.d_model=128)")
        key, raw = item.split("=", 1)
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            if parent not in target or not isinstance(target[parent], dict):
                raise ValueError(f"override {key!r}: {parent!r} is not a config section; "
                                 f"sections: {sorted(k for k, v in values.items() if isinstance(v, dict))}")
            target = target[parent]
        if leaf not in target:
            raise ValueError(f"override {key!r}: unknown field {leaf!r}; known: {sorted(target)}")
        target[leaf] = _parse_value(raw)
    return from_dict(TrainConfig, values)


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
