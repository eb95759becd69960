"""A full disk, however a writer reports it (an OSError with errno ENOSPC from Python, or orbax /
TensorStore's "No space left on device [os_error_code='28']" inside a ValueError from a
background thread), said in one line: the path, the space free, the space a checkpoint needs."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil

_TEXT = re.compile(r"No space left on device|os_error_code='?28'?|RESOURCE_EXHAUSTED: Error writing")
_PATH = re.compile(r'(?:Failed writing|local file|Error writing file|opening file):? "([^"]+)"')


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is a write that found no space left."""
    return any((isinstance(e, OSError) and e.errno == errno.ENOSPC) or bool(_TEXT.search(str(e)))
               for e in _chain(exc))


def failed_path(exc: BaseException) -> str | None:
    """The file the failed write was writing, when the error names it."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.filename:
            return os.fspath(e.filename)
        found = _PATH.search(str(e))
        if found:
            return found.group(1)
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def disk_full_message(exc: BaseException, folder: str, needed_bytes: float) -> str:
    """'disk full writing <path>: <free> free on <folder>'s filesystem, a checkpoint needs about
    <needed>; free space (or move out_dir) and rerun the same command to resume'."""
    path = failed_path(exc) or folder
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    return (f"disk full writing {path}: {_gib(free)} free on the filesystem of {folder}, a checkpoint of this "
            f"run needs about {_gib(needed_bytes)}; free space (or move out_dir) and rerun the same command to "
            "resume from the last checkpoint")


class _DropDiskFull(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        return not _TEXT.search(text)


def quiet_disk_full_logs() -> None:
    """Keep orbax's background threads from logging a traceback per failed write of a full disk
    (the command reports it once, in one line). Idempotent."""
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropDiskFull) for f in logger.filters):
        logger.addFilter(_DropDiskFull())
