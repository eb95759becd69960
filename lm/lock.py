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

    def acquire(self) -> "FolderLock":
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.time() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
                    os.close(fd)
                    raise FolderBusy(f"{self.what} {self.folder} is in use by {holder} (lock {self.path}); "
                                     "wait for that process to finish or stop it, then retry") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
