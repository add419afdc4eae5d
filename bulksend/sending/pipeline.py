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
from bulksend.sending.feeder import Feeder
from bulksend.sending.recorder import Recorder
from bulksend.sending.sender import BatchSender, Sender
from bulksend.sending.stop import StopRequest, graceful, stop_on_signals

if TYPE_CHECKING:
    from bulksend.mapping.compiled import Mapping
    from bulksend.reading.table import Table
    from bulksend.settings import RunConfig
    from bulksend.store.checkpoints import Chain


async def send_rows(config: RunConfig, table: Table, mapping: Mapping, recorder: Recorder,
                    resume: Chain | None, excluded: set[str], stop: StopRequest | None = None,
                    gate: RateGate | None = None) -> None:
    """Send every row of ``table`` (from the checkpoint ``resume`` on) that needs
    it; ``excluded``: request ids that existed before the run (existing.py);
    ``stop``: how another thread stops the run (the Python API's worker thread);
    ``gate``: the run's rate gate, which the preflight already used.

    A refused key or a quota ends the run early: recorded in the summary as
    ``aborted``, not raised. Every row read gets its line either way."""
    summary, progress, journal = recorder.summary, recorder.progress, recorder.journal
    progress.start(summary.total)
    if resume is not None:
        progress.carried(resume.last.counts)
        progress.event("resume", f"{resume.last.rows:,} rows up to row {resume.last.number} were settled by "
                                 "earlier runs and are unchanged: not read again")
    gate = gate or RateGate(config.rate, progress=progress, max_pause=config.max_pause)
    policy = RetryPolicy(max_attempts=config.max_attempts)  # --max-pause is the gate's

    def interrupted(name: str) -> None:
        summary.interrupted = True
        progress.event("interrupt", graceful(name, work="rows", on_wire="requests", grace=config.stop_grace))

    try:
        async with Client(config.api_url, config.api_key, timeout=config.timeout,
                          concurrency=config.concurrency) as client:
            sender = Sender(client, gate, journal, policy, progress, key_paths=mapping.key_paths,
                            excluded=excluded)
            dispatcher = Dispatcher(concurrency=config.concurrency, journal=journal, recorder=recorder,
                                    sender=sender, batcher=BatchSender(sender), grace=config.stop_grace)
            feeder = Feeder(config, table, mapping, journal, recorder, dispatcher.put, dispatcher.stopping,
                            start=resume.last.mark if resume is not None else None,
                            skipped=(resume.last.number, resume.base_run) if resume is not None else None)
            try:
                # Ctrl-C / SIGTERM: no new rows, a bounded wait for the requests on
                # the wire (Dispatcher._wind_down); a second one stops at once (the
                # journal holds every attempt: rows in flight read back as unknown
                # and are looked up before any resend).
                with stop_on_signals(dispatcher.stopping, progress, interrupted, stop):
                    await dispatcher.run(feeder.run)
            finally:
                summary.posts = sender.posts
                if feeder.grouper is not None and not config.dry_run and feeder.grouper.plan.describe():
                    summary.notes.append(feeder.grouper.plan.describe())
    except (AuthError, AbortError) as exc:
        summary.aborted = exc
        progress.event("abort", str(exc))
    finally:
        journal.commit()
