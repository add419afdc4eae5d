"""How a run is asked to stop: by a signal (Ctrl-C, SIGTERM) or from another thread.

``stop_on_signals`` is the one signal handling of ``send`` (sending/pipeline.py)
and ``update`` and ``status`` (tasks/): the first Ctrl-C or SIGTERM asks for a
graceful stop (no new work; the caller waits, within its grace, for what is on
the wire), the next stops at once. ``StopRequest`` asks the same from another
thread (the Python API's worker thread, where no signal handler can be installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from bulksend.common.portable import posix

if TYPE_CHECKING:
    from bulksend.common.progress import Progress

SIGNALS = ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"))


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


def graceful(name: str, *, work: str, on_wire: str, grace: float) -> str:
    """What a graceful stop says: "Ctrl-C: no new rows; waiting up to 10s for
    requests in flight (press Ctrl-C again to stop at once)"."""
    return (f"{name}: no new {work}; waiting up to {grace:g}s for {on_wire} in flight "
            "(press Ctrl-C again to stop at once)")


def route_signals(loop: asyncio.AbstractEventLoop, handler: Callable[[str], None]) -> Callable[[], None]:
    """Hand Ctrl-C and SIGTERM to ``handler(name)``, run on ``loop``; returns
    what undoes it. Call from the main thread only (ValueError otherwise).

    POSIX: the loop's own handlers (``add_signal_handler``). Elsewhere
    (Windows, whose loops raise NotImplementedError there; a loop that refuses
    them; or ``BULKSEND_FORCE_PORTABLE``): ``signal.signal`` handlers that hand
    the signal to the loop with ``call_soon_threadsafe`` (Windows' default
    loop, the proactor, wakes up for a signal: it sets ``signal.set_wakeup_fd``),
    for SIGINT, SIGTERM and, on Windows, SIGBREAK (Ctrl-Break). They replace
    ``asyncio.run``'s own Ctrl-C handler, which cancels at once, and the undo
    puts it back."""
    if posix():
        installed: list[signal.Signals] = []

        def remove() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)

        try:
            for sig, name in SIGNALS:
                loop.add_signal_handler(sig, handler, name)
                installed.append(sig)
        except NotImplementedError:
            remove()
        except BaseException:
            remove()
            raise
        else:
            return remove
    names = {int(sig): name for sig, name in SIGNALS}
    if hasattr(signal, "SIGBREAK"):
        names[int(signal.SIGBREAK)] = "Ctrl-Break"

    def on_signal(signum: int, _frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the run is over
            loop.call_soon_threadsafe(handler, names[signum])

    previous = {number: signal.signal(number, on_signal) for number in names}

    def undo() -> None:
        for number, before in previous.items():
            signal.signal(number, signal.SIG_DFL if before is None else before)

    return undo


@contextlib.contextmanager
def stop_on_signals(stopping: asyncio.Event, progress: Progress, on_stop: Callable[[str], None],
                    stop: StopRequest | None = None) -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM (or ``stop``) stop the current task's work.

    The first sets ``stopping`` (no new work starts) and calls
    ``on_stop(name)``, ``name`` being "Ctrl-C" or "SIGTERM": the caller notes
    the run as interrupted and says what it waits for (``graceful``); waiting,
    within a grace, for what is on the wire is the caller's. The next signal,
    or the first when ``stopping`` was already set (an abort), cancels the
    task that entered the block: stop at once.

    Handlers are installed from the main thread only (``stop`` serves the
    others), by ``route_signals``: on Windows too, where the event loop has no
    signal handlers, Ctrl-C stops the run gracefully and a second one at once."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal(name: str) -> None:
        if stopping.is_set():
            progress.event("interrupt", f"{name} again: stopping now")
            task.cancel()
            return
        stopping.set()
        on_stop(name)

    undo: Callable[[], None] = lambda: None  # noqa: E731
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(RuntimeError, ValueError):
            undo = route_signals(loop, on_signal)
    if stop is not None:
        stop.attach(loop, on_signal)
    try:
        yield
    finally:
        if stop is not None:
            stop.detach()
        undo()
