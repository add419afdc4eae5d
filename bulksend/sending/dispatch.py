"""The worker pool: one bounded queue, a fixed number of workers, and the stop.

The feeder puts jobs (a row, or a batch of rows) into the queue; each worker
takes one, sends it through the senders and hands the outcomes to the
recorder. A stop (a signal) lets the requests in flight finish within a grace
period; an abort (a worker raised: a refused key, a quota, a full disk) waits
for none. Either way no new request leaves, and every row still gets its line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Union

from bulksend.common.errors import BulksendError

if TYPE_CHECKING:
    from bulksend.common.outcome import Outcome
    from bulksend.sending.recorder import Recorder
    from bulksend.sending.sender import BatchSender, Job, Sender
    from bulksend.store.journal import Journal

Item = Union["Job", list["Job"]]


def _jobs(item: Item | None) -> list[Job]:
    if item is None:
        return []
    return item if isinstance(item, list) else [item]


class Dispatcher:
    """Owns the queue, the workers, the in-flight registry and the graceful stop.

    The queue is deep enough that refilling it by halves makes few, large
    journal commits, and shallow enough that a kill leaves few rows marked but
    unsent (each costs a look-up on the next run)."""

    def __init__(self, *, concurrency: int, journal: Journal, recorder: Recorder, sender: Sender,
                 batcher: BatchSender, grace: float) -> None:
        self.concurrency = concurrency
        self.journal = journal
        self.recorder = recorder
        self.sender = sender
        self.batcher = batcher
        self.grace = grace
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=max(64, concurrency * 8))
        self.room = asyncio.Event()  # set when the queue is half empty: the feeder refills it
        self.stopping = asyncio.Event()  # no new request leaves
        self.in_flight: dict[int, Item] = {}  # worker number -> what it is sending

    # -- the hot path --------------------------------------------------------
    # `get_nowait`/`put_nowait` first: what `await queue.get()` / `put()` do
    # when an item (or room) is there, without creating their coroutine — the
    # usual case, once per row; and in the worker, a single row goes straight
    # to `Sender.run`, without a coroutine of its own between (each one costs
    # its making and every resumption: 0.3 µs a row together, measured with
    # one suspension per row; issue 29). This is the only place these tricks live.

    async def put(self, item: Item) -> None:
        """Queue a job (the feeder's only way in). A single row's write-ahead
        mark is written here, so one commit covers many rows and a worker
        rarely waits for one; a batch is marked when its call leaves
        (BatchSender.run): a queue of batches holds thousands of rows, and a
        kill would leave them all in doubt (issue 11, case 8)."""
        if self.queue.full():
            self.room.clear()
            await self.room.wait()
        if not isinstance(item, list) and item.outcome.key:
            self.journal.begin_attempt(item.outcome.key)
            item.marked = True
        if self.queue.full():  # not expected: only the feeder puts while it runs
            await self.queue.put(item)
        else:
            self.queue.put_nowait(item)

    async def _worker(self, n: int) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                item = await self.queue.get()
            if item is None:
                return
            if self.queue.qsize() <= self.queue.maxsize // 2:
                self.room.set()
            if self.stopping.is_set():
                for job in _jobs(item):
                    self.recorder.unattempted(job)
                continue
            self.in_flight[n] = item
            try:
                if isinstance(item, list):
                    outcomes = await self._batch(item)
                else:
                    outcomes = [await self.sender.run(item)]
            except BulksendError:
                # The run stops (401, a quota): this worker's rows get their
                # lines now, as far as they are known.
                for job in _jobs(item):
                    self.recorder.stopped(job)
                raise
            finally:
                self.in_flight.pop(n, None)
            for outcome in outcomes:
                self.recorder.finish(outcome)

    async def _batch(self, item: list[Job]) -> list[Outcome]:
        if len(item) > 1:
            return await self.batcher.run(item)
        return [await self.sender.run(item[0])]

    # -- the run ---------------------------------------------------------------

    async def run(self, feed: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run the feeder and the workers to the end of the input, a stop or an
        abort; re-raises what aborted the run once every row has its line."""
        workers = [asyncio.create_task(self._worker(n)) for n in range(self.concurrency)]
        feeder = asyncio.create_task(feed())
        try:
            failure = await self._until_done_or_stopped(feeder, workers)
            if failure is None and not self.stopping.is_set():
                return
            self.stopping.set()
            await self._wind_down(feeder, workers, wait=failure is None)
            if feeder.exception() is not None:
                raise feeder.exception()  # type: ignore[misc]
            if failure is not None:
                raise failure
        finally:
            for task in [feeder, *workers]:
                task.cancel()
            await asyncio.gather(feeder, *workers, return_exceptions=True)

    async def _until_done_or_stopped(self, feeder: asyncio.Task[None],
                                     workers: list[asyncio.Task[None]]) -> BaseException | None:
        """Wait for the feeder, then the workers; stop early on a stop or a
        failure (returned). The end-of-queue markers go in from a task of their
        own: awaited here, a full queue would hold this past a stop's grace."""
        pending: set[asyncio.Task[None]] = {feeder, *workers}
        stop_wait = asyncio.create_task(self.stopping.wait())
        closer: asyncio.Task[None] | None = None
        try:
            while pending:
                done, _ = await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop_wait}:
                    pending.discard(task)
                    if task.exception() is not None:
                        return task.exception()
                    if task is feeder:
                        closer = asyncio.create_task(self._close(len(workers)))
                        pending.add(closer)
                if self.stopping.is_set():
                    return None
            return None
        finally:
            stop_wait.cancel()
            if closer is not None:
                closer.cancel()

    async def _close(self, workers: int) -> None:
        for _ in range(workers):
            await self.queue.put(None)

    async def _wind_down(self, feeder: asyncio.Task[None], workers: list[asyncio.Task[None]],
                         *, wait: bool) -> None:
        """After a stop or an abort: a bounded wait for the requests on the
        wire (none on abort), then every row still queued or still to read gets its
        line from the journal, and nothing more is sent."""
        if wait:
            deadline = time.monotonic() + self.grace
            while self._posting() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling, bounded
                await asyncio.sleep(0.05)
        # Taken first: a cancelled worker forgets its job. Whether each job's
        # POST is on the wire is read before the cancellation clears the flag.
        stuck = [job for item in self.in_flight.values() for job in _jobs(item)]
        on_wire = [job.posting for job in stuck]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for job, posting in zip(stuck, on_wire, strict=True):
            job.posting = posting
            self.recorder.stopped(job)
        self.in_flight.clear()
        # The feeder carries on without queuing (stopping is set).
        while not feeder.done():
            self.room.set()  # the workers are gone: this loop makes the room now
            getter = asyncio.ensure_future(self.queue.get())
            await asyncio.wait({getter, feeder}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                self._unattempted(getter.result())
            else:
                getter.cancel()
        while not self.queue.empty():
            self._unattempted(self.queue.get_nowait())

    def _posting(self) -> bool:
        """A request is on the wire (or its answer is being made sense of). A
        worker waiting for the gate or backing off has nothing to wait for:
        its row keeps what it knows (Recorder.stopped)."""
        return any(job.posting for item in self.in_flight.values() for job in _jobs(item))

    def _unattempted(self, item: Item | None) -> None:
        for job in _jobs(item):
            self.recorder.unattempted(job)
