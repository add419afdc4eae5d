"""How a caller asks a run to stop from another thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


class StopRequest:
    """A stop asked from another thread, as SIGINT would ask it: the first
    request stops the run gracefully, the next stops it at once. For a run in a
    worker thread (the Python API inside a running event loop), where signal
    handlers cannot be installed. A request made before the sending starts
    applies when it starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: tuple[asyncio.AbstractEventLoop, Callable[[str], None]] | None = None
        self._pending: str | None = None

    def request(self, name: str = "Ctrl-C") -> None:
        with self._lock:
            if self._target is None:
                self._pending = self._pending or name
                return
            loop, handler = self._target
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the run is over
                loop.call_soon_threadsafe(handler, name)

    def attach(self, loop: asyncio.AbstractEventLoop, handler: Callable[[str], None]) -> None:
        with self._lock:
            self._target = (loop, handler)
            pending, self._pending = self._pending, None
            if pending is not None:
                loop.call_soon_threadsafe(handler, pending)

    def detach(self) -> None:
        with self._lock:
            self._target = None
