"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Callable


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~current_umask())   # mkstemp makes 0600; a file is as open() would make it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask (read from /proc where it is there, so nothing is changed even briefly)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict(value: Any, nonfinite: list[str] | None = None, path: str = "") -> Any:
    """`value` with every NaN/Inf float replaced by None (strict JSON has no NaN); numpy scalars
    become Python numbers. The dotted paths of the replaced values are appended to `nonfinite`."""
    if isinstance(value, dict):
        return {k: strict(v, nonfinite, f"{path}{k}.") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v, nonfinite, f"{path}{i}.") for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:      # numpy / jax scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if nonfinite is not None:
            nonfinite.append(path.rstrip("."))
        return None
    return value


def dumps_strict(value: Any, **kw: Any) -> str:
    """Strict JSON text: NaN/Inf become null; a dict that had any gets `"nonfinite": [their keys]`
    (the status that says why a number is missing)."""
    bad: list[str] = []
    clean = strict(value, bad)
    if bad and isinstance(clean, dict):
        clean["nonfinite"] = sorted(set(clean.get("nonfinite") or []) | set(bad))
    return json.dumps(clean, allow_nan=False, default=str, **kw)



def append_json_line(path: str, row: dict[str, Any]) -> None:
    """Append `row` as one strict-JSON line (dumps_strict, sorted keys): a single write, then fsync,
    so a kill leaves either the whole line or a torn tail that readers drop (truncate_torn_tail)."""
    line = (dumps_strict(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)

def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, dumps_strict(value, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one strict JSON line and flush it (a crash can leave at most a torn last line)."""
    with open(path, "a") as f:
        f.write(dumps_strict(row) + "\n")
        f.flush()


def read_jsonl(path: str | os.PathLike, problem: Callable[[Any], str | None] | None = None,
               fix: Callable[[int], str] = lambda line: "only a last line may be torn") -> list[Any]:
    """Read a JSONL file, dropping a torn last line left by a crash (text that is not JSON). Any other
    line that is not JSON, or for which `problem(row)` names a problem, is a ValueError naming the
    line, the problem and `fix(line number)`. Blank lines are skipped."""
    rows: list[Any] = []
    if not os.path.exists(path):
        return rows
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(lines) - 1:
                continue                   # torn last line (no newline after it)
            why = "is not JSON"
        else:
            why = problem(row) if problem is not None else None
        if why:
            raise ValueError(f"{path}: line {i + 1} {why}; {fix(i + 1)}")
        rows.append(row)
    return rows


def truncate_torn_tail(path: str | os.PathLike) -> None:
    """Cut an append-only JSONL file back to its last complete line (no-op if whole or absent)."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def rewind_jsonl(path: str | os.PathLike, last_step: int) -> None:
    """Keep only rows with step <= last_step (and no torn line): what a resumed run continues from."""
    if not os.path.exists(path):
        return
    truncate_torn_tail(path)
    rows = read_jsonl(path)
    kept = [r for r in rows if r.get("step", 0) <= last_step]
    if len(kept) != len(rows):
        atomic_write_text(path, "".join(dumps_strict(r) + "\n" for r in kept))
