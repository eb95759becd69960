"""Ctrl-C held back while a block runs that must not be cut in half.

Python raises KeyboardInterrupt in the main thread at whatever bytecode it is running. Inside
orbax's save (which runs an event loop of its own and hands work to threads) that leaves a
closed loop behind while the save's threads still post to it: they die with tracebacks as the
interpreter shuts down. `deferred()` turns a SIGINT that arrives inside the block into one
KeyboardInterrupt raised when the block ends, so a save is handed over whole and the caller's
Ctrl-C path (wait for the save, seal it, exit 130) runs as designed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block with SIGINT recorded instead of raised; raise KeyboardInterrupt after it
    if one came (unless the block itself raised). A no-op outside the main thread, where no
    signal handler can be set, and where SIGINT has a handler other than Python's default (an
    embedding application's own, or a `deferred()` further out, which raises at its own end)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    arrived: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if arrived:
        raise KeyboardInterrupt


@contextlib.contextmanager
def between_steps() -> Iterator[Callable[[], bool]]:
    """Run the block with Ctrl-C turned into a request: the first SIGINT only sets a flag, which
    the returned callable reports, so a loop stops at a point of its own choosing (never inside a
    library call that may catch or half-finish it); a second SIGINT raises KeyboardInterrupt at
    once. Inside, `deferred()` blocks are no-ops (the request already waits). Outside the main
    thread, or where SIGINT has a handler other than Python's default, the flag is never set and
    SIGINT behaves as before."""
    arrived: list[int] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return

    def request(signum, frame):
        if arrived:
            raise KeyboardInterrupt
        arrived.append(signum)

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield lambda: bool(arrived)
    finally:
        signal.signal(signal.SIGINT, previous)
