"""Reading the JSON records a run or sweep folder keeps (config.json, sweep.json, ...): a damaged
one is a one-line ValueError naming the file, what is wrong with it, and the fix."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json_object(path: str | os.PathLike, fix: str) -> dict[str, Any] | None:
    """The JSON object in `path`, None when the file does not exist. Empty, truncated or garbage
    text, or JSON that is not an object, is a ValueError: '<path> <what is wrong>; <fix>'."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a JSON file; {fix}") from None
    if not data.strip():
        raise ValueError(f"{path} is empty (a write that never finished?); {fix}")
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" ({e.msg} at line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise ValueError(f"{path} is not valid JSON{where}: damaged or truncated; {fix}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object of fields; {fix}")
    return value
