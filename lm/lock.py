"""One writer per folder: an exclusive `fcntl` lock on `<folder>/.lock` holding the host and PID.

The lock belongs to the open file: it is released when the holder closes it or dies (even by
`kill -9`), so a lock left by a killed process is simply taken over by the next one. A second
process that wants a held folder fails at once with the holder's host and PID in the message
(or waits up to `wait_s` seconds, for a sweep worker whose killed predecessor is still exiting).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time

LOCK_FILE = ".lock"


class FolderBusy(ValueError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """`with FolderLock(folder, what="run"):` holds `<folder>/.lock` exclusively (creates the folder)."""

    def __init__(self, folder: str, what: str = "folder", wait_s: float = 0.0):
        self.folder, self.what, self.wait_s = folder, what, wait_s
        self.path = os.path.join(folder, LOCK_FILE)
        self._fd: int | None = None
        self._created: list[str] = []      # folders acquire() made, innermost first

    def acquire(self) -> "FolderLock":
        self._created = _make_folders(self.folder, self.what)
        deadline = time.time() + self.wait_s
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.time() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
                    os.close(fd)
                    self._remove_created()
                    raise FolderBusy(f"{self.what} {self.folder} is in use by {holder} (lock {self.path}); "
                                     "wait for that process to finish or stop it, then retry") from None
                os.close(fd)
                time.sleep(0.05)
                continue
            if _same_file(fd, self.path):   # not unlinked by a holder that released it meanwhile
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except IsADirectoryError:
            raise ValueError(f"{self.path} is a folder, not a lock file; remove it (rmdir {self.path}) "
                             "and retry") from None
        except OSError as e:
            raise ValueError(f"cannot create the lock file {self.path} ({e.strerror}); pick a "
                             f"{self.what} you can write to") from None

    def release(self) -> None:
        """Unlock. A folder this lock created that holds nothing but the lock (a start refused
        before anything was written) is removed with it: a failed start leaves nothing behind."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            if self._created and os.listdir(self.folder) == [LOCK_FILE]:
                os.unlink(self.path)        # while still locked: a waiter re-opens by path
                self._remove_created()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _remove_created(self) -> None:
        """Remove the (empty) folders acquire created, innermost first."""
        for folder in self._created:
            try:
                os.rmdir(folder)
            except OSError:
                return
        self._created = []

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _make_folders(folder: str, what: str) -> list[str]:
    """Create `folder` and its missing parents; returns the ones created, innermost first. A folder
    that cannot be created (a read-only or virtual filesystem such as /proc) is a ValueError."""
    missing, probe = [], os.path.abspath(folder)
    while not os.path.isdir(probe) and probe != os.path.dirname(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the {what} {folder} ({e.strerror}); pick a folder on a "
                         "filesystem you can write to") from None
    return missing


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
