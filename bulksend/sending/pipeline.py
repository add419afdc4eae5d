"""The sending phase, wired: feeder → dispatcher (queue, workers) → senders →
recorder, under one rate gate, with signals turned into a graceful stop.

Follow one row: ``Feeder.run`` maps and claims it and puts its job in the
queue (``Dispatcher.put``, which writes its write-ahead mark); a worker takes
it (``Dispatcher._worker``) and hands it to ``Sender.run`` (or, in a batch, to
``BatchSender.run``), which waits for the gate, commits the mark and POSTs; the
outcome goes to ``Recorder.finish``: journal, results CSV, summary, progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bulksend.collect.client import Client
from bulksend.collect.rategate import RateGate
from bulksend.collect.retry import RetryPolicy
from bulksend.common.errors import AbortError, AuthError
from bulksend.sending.dispatch import Dispatcher
from bulksend.sending.feeder import Feeder, Rows
from bulksend.sending.recorder import Recorder
from bulksend.sending.sender import BatchSender, Sender
from bulksend.sending.stop import StopRequest, graceful, stop_on_signals

if TYPE_CHECKING:
    from bulksend.settings import RunConfig


async def send_rows(config: RunConfig, rows: Rows, recorder: Recorder, gate: RateGate,
                    excluded: set[str], stop: StopRequest | None = None) -> None:
    """Send every row of ``rows`` (from the checkpoint it resumes from) that
    needs it; ``config``: its API access, pace and mode are read here;
    ``gate``: the run's rate gate, which the preflight already used;
    ``excluded``: request ids that existed before the run (sending/existing.py);
    ``stop``: how another thread stops the run (the Python API's worker thread).

    A refused key or a quota ends the run early: recorded in the summary as
    ``aborted``, not raised. Every row read gets its line either way."""
    api = config.api
    pace = config.pace
    summary, progress, journal = recorder.summary, recorder.progress, recorder.journal
    progress.start(summary.total)
    if rows.resume is not None:
        last = rows.resume.last
        progress.carried(last.counts)
        progress.event("resume", f"{last.rows:,} rows up to row {last.number} were settled by "
                                 "earlier runs and are unchanged: not read again")
    policy = RetryPolicy(max_attempts=pace.max_attempts)  # --max-pause is the gate's

    def interrupted(name: str) -> None:
        summary.interrupted = True
        progress.event("interrupt", graceful(name, work="rows", on_wire="requests", grace=pace.stop_grace))

    try:
        async with Client(api.url, api.key, timeout=api.timeout, concurrency=pace.concurrency) as client:
            sender = Sender(client, gate, journal, policy, progress, key_paths=rows.mapping.key_paths,
                            excluded=excluded)
            dispatcher = Dispatcher(concurrency=pace.concurrency, journal=journal, recorder=recorder,
                                    sender=sender, batcher=BatchSender(sender), grace=pace.stop_grace)
            feeder = Feeder(config.mode, rows, recorder, dispatcher.put, dispatcher.stopping)
            try:
                # Ctrl-C / SIGTERM: no new rows, a bounded wait for the requests on
                # the wire (Dispatcher._wind_down); a second one stops at once (the
                # journal holds every attempt: rows in flight read back as unknown
                # and are looked up before any resend).
                with stop_on_signals(dispatcher.stopping, progress, interrupted, stop):
                    await dispatcher.run(feeder.run)
            finally:
                summary.posts = sender.posts
                if feeder.grouper is not None and not config.mode.dry_run and feeder.grouper.plan.describe():
                    summary.notes.append(feeder.grouper.plan.describe())
    except (AuthError, AbortError) as exc:
        summary.aborted = exc
        progress.event("abort", str(exc))
    finally:
        journal.commit()
