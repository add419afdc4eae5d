"""How the Python API runs the engine and what it reports to.

``blocking`` runs a task here, or, under a running event loop (a Jupyter
cell), in a worker thread with loops of its own while this thread waits; a
KeyboardInterrupt while waiting asks a send to stop. ``LoggingProgress`` is the
API's Progress: a ``tqdm.auto`` bar (optional) and the ``"bulksend"`` logger.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bulksend.common.outcome import Outcome
from bulksend.common.progress import NullProgress, Progress

if TYPE_CHECKING:
    from bulksend.sending.stop import StopRequest

__all__ = ["LoggingProgress", "blocking", "progress_for"]

logger = logging.getLogger("bulksend")
_T = TypeVar("_T")


def blocking(work: Callable[[StopRequest | None], _T]) -> _T:
    """``work(stop)`` here; or, under a running event loop (Jupyter), in a
    worker thread with loops of its own, this thread waiting for it. A
    KeyboardInterrupt while waiting asks the run to stop (``stop``)."""
    import asyncio

    from bulksend.sending.stop import StopRequest

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work(None)
    stop = StopRequest()
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
            done.wait()
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
    or False (without), else ``progress`` itself."""
    if isinstance(progress, bool):
        return LoggingProgress(progress)
    return progress
