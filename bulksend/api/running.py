"""How the Python API runs the engine and what it reports to.

``blocking`` runs a task here, or, under a running event loop (a Jupyter
cell, ``asyncio.run(main())``), in a worker thread with loops of its own
while this thread waits; Ctrl-C (or SIGTERM, or a KeyboardInterrupt) while
waiting asks the run to stop, as it does a script's. ``LoggingProgress`` is the
API's Progress: a ``tqdm.auto`` bar (optional) and the ``"bulksend"`` logger.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from bulksend.api.arguments import check_progress
from bulksend.common.outcome import Outcome
from bulksend.common.progress import NullProgress, Progress

if TYPE_CHECKING:
    from bulksend.sending.stop import StopRequest

__all__ = ["LoggingProgress", "blocking", "progress_for"]

logger = logging.getLogger("bulksend")
_T = TypeVar("_T")


def blocking(work: Callable[[StopRequest | None], _T]) -> _T:
    """``work(stop)`` here; or, under a running event loop (Jupyter,
    ``asyncio.run``), in a worker thread with loops of its own, this thread
    waiting for it. Ctrl-C, SIGTERM or a KeyboardInterrupt while waiting asks
    the run to stop (``stop``): the first gracefully, the next at once, as in
    a script; the run's answer is returned (``Run.interrupted``), never lost."""
    import asyncio

    from bulksend.sending.stop import StopRequest

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work(None)
    stop = StopRequest()
    with _signals_to(stop):
        return _in_thread(work, stop)


@contextlib.contextmanager
def _signals_to(stop: StopRequest) -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM ask ``stop`` (main thread only).

    ``asyncio.run``'s own Ctrl-C handler only cancels its main task, which
    cannot run while this thread waits: the run went on to the end, and the
    cancellation then lost its answer (issue 25). So its handler (and any
    other) steps aside while a run in a worker thread is waited for, and is
    put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = {int(signal.SIGINT): "Ctrl-C", int(signal.SIGTERM): "SIGTERM"}

    def on_signal(signum: int, _frame: object) -> None:
        stop.request(names[signum])

    previous: dict[int, Any] = {}
    try:
        for number in names:
            with contextlib.suppress(ValueError, OSError):
                previous[number] = signal.signal(number, on_signal)
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, signal.SIG_DFL if before is None else before)


def _in_thread(work: Callable[[StopRequest | None], _T], stop: StopRequest) -> _T:
    """``work(stop)`` in a worker thread, this one waiting; a KeyboardInterrupt
    while waiting asks ``stop``."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work(stop)))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    thread = threading.Thread(target=run, name="bulksend-send")
    thread.start()
    # An Event, not Thread.join: a join cut by KeyboardInterrupt may leave the
    # thread marked as stopped while it still runs.
    while True:
        try:
            # In short waits: a signal's handler runs between them on every platform.
            if done.wait(0.2):
                break
        except KeyboardInterrupt:
            stop.request("KeyboardInterrupt")
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


# Events a person need not see unless they ask for them (logging.DEBUG).
_QUIET_EVENTS = frozenset({"retry", "reconciled"})
_LOUD_EVENTS = frozenset({"warning", "abort", "interrupt", "pause"})


class LoggingProgress(NullProgress):
    """The API's Progress (common/progress.py's protocol, each method as it
    says): a tqdm.auto bar (optional) and the ``bulksend`` logger, events at
    DEBUG (retries, look-ups), WARNING (warnings, pauses, stops) or INFO."""

    def __init__(self, bar: bool) -> None:
        self.want_bar = bar
        self.bar: Any = None
        self.counts: Counter[str] = Counter()

    def start(self, total: int) -> None:
        if self.want_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="row", desc="bulksend", mininterval=0.2, smoothing=0.1)

    def outcome(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if self.bar is not None:
            self.bar.update(1)

    def carried(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)
        if self.bar is not None:
            self.bar.update(sum(counts.values()))

    def event(self, kind: str, message: str, **fields: Any) -> None:
        level = (logging.DEBUG if kind in _QUIET_EVENTS
                 else logging.WARNING if kind in _LOUD_EVENTS else logging.INFO)
        logger.log(level, "%s: %s", kind, message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix({s: n for s, n in self.counts.items() if n}, refresh=False)
            self.bar.close()


def progress_for(progress: bool | Progress) -> Progress:
    """The Progress a run reports to: a LoggingProgress for True (with a bar)
    or False (without), else ``progress`` itself. UsageError for anything
    else (``progress="yes"``): it is called before the run makes anything."""
    check_progress(progress)
    if isinstance(progress, bool):
        return LoggingProgress(progress)
    return progress
