"""``bulksend reconcile RESULTS.csv``: settle ``unknown`` rows without sending.

A row is unknown when its POST may have reached the server but the answer was
lost. Each one is looked up (collect-api.md §6): found → ``sent`` with the
server's id and URL; not found → ``failed`` ("not created"), which the next
``send`` retries. A look-up that cannot be made leaves the row unknown. Nothing
is ever POSTed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bulksend.collect.rategate import PATIENCE, RateGate
from bulksend.common.errors import ResultsError
from bulksend.common.outcome import FAILED, SENT, UNKNOWN, Outcome
from bulksend.common.progress import Progress
from bulksend.store.journal import Journal
from bulksend.store.results import (
    COLUMNS,
    ResultsWriter,
    csv_lines,
    is_results_header,
    journal_vouches,
    neutralise,
    not_results_file,
    replace_checked,
    seed_journal_from_csv,
)
from bulksend.store.runlock import RunLock, create_exclusive, journal_path, storage_error, tmp_path
from bulksend.store.world import refuse_rehearsal

NOT_CREATED = "looked up: no such request on the server, so it was not created; the next send sends it"


def _held_by_another(journal: Journal, key: str) -> Callable[[str], bool]:
    """Whether a request id is already another row's (never hand one to two rows)."""
    return lambda request_id: journal.holder_of(request_id) not in (None, key)


def reconcile_file(results: Path, *, api_url: str, api_key: str, timeout: float,
                   progress: Progress, max_pause: float = 60.0, patience: float = PATIENCE) -> Counter[str]:
    """Look every unknown row of ``results`` up and record what was found
    (module docstring); every call through one gate at 10 a second (a 429 may
    pause it ``max_pause`` seconds; ``patience`` bounds a run of 429s,
    collect/rategate.py). Returns the looked-up rows by their status now.
    Raises ``ResultsError``, ``UsageError`` (a rehearsal's file),
    ``LockedError``, ``AuthError`` and ``AbortError``."""
    if not results.exists():
        raise ResultsError(f"{results}: no such results file")
    refuse_rehearsal(results, "reconcile")
    lock = RunLock(results)
    lock.acquire()
    try:
        journal = Journal(journal_path(results))
        try:
            if not journal_vouches(journal, results):  # missing, emptied, older: take rows from the CSV
                seed_journal_from_csv(journal, results)
            gate = functools.partial(RateGate, 10.0, progress=progress, max_pause=max_pause,
                                     patience=patience)
            settled = asyncio.run(_settle_all(journal, api_url, api_key, timeout, progress, gate))
        finally:
            journal.close()
        _rewrite(results, settled)
    finally:
        lock.release()
    return Counter(o.status for o in settled.values())


async def _settle_all(journal: Journal, api_url: str, api_key: str, request_timeout: float,
                      progress: Progress, make_gate: Callable[[], RateGate]) -> dict[str, Outcome]:
    from bulksend.collect.client import Ambiguous, Client, NotSent
    from bulksend.collect.lookup import look_up, payload_of_record

    records = journal.unsettled()
    progress.start(len(records))
    gate = make_gate()  # made in the loop
    settled: dict[str, Outcome] = {}
    async with Client(api_url, api_key, timeout=request_timeout, concurrency=4) as client:
        for record in records:
            outcome = Outcome(row=record.row, key=record.key, status=UNKNOWN,
                              attempts=record.attempts, http_status=record.http_status)
            payload = payload_of_record(record)
            if payload is None:
                outcome.error = "cannot tell which contact this key names; rerun send with the input file"
            else:
                key_paths = ["campaignId", "contact", *json.loads(record.target).get("key", {})] \
                    if record.target else None
                try:
                    found = await look_up(client, gate, payload, record.first_attempt_at, key_paths=key_paths,
                                          taken=_held_by_another(journal, record.key))
                except (Ambiguous, NotSent) as exc:
                    outcome.error = f"could not check whether it was created: {exc}"
                else:
                    if found is None:
                        outcome.status, outcome.error = FAILED, NOT_CREATED
                    else:
                        outcome.status = SENT
                        outcome.request_id = found.request_id
                        outcome.portal_url = found.portal_url
                        outcome.contact_id = found.contact_id
                        outcome.sent_at = found.created_at
                    journal.record(outcome)
            settled[record.key] = outcome
            progress.outcome(outcome)
    journal.commit()
    return settled


def _rewrite(results: Path, settled: dict[str, Outcome]) -> None:
    """Update the settled rows' lines in the results CSV, in place (atomically)."""
    if not settled:
        return
    tmp = tmp_path(results)
    try:
        _rewrite_into(results, tmp, settled)
        replace_checked(tmp, results, None)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise storage_error(tmp, exc, "rewrite the results file") from exc


def _rewrite_into(results: Path, tmp: Path, settled: dict[str, Outcome]) -> None:
    with open(results, encoding="utf-8-sig", newline="") as src, \
            open(create_exclusive(tmp, "results rewrite"), "w", encoding="utf-8-sig", newline="") as dst:
        reader = csv_lines(src)
        writer = csv.writer(dst, lineterminator="\r\n")
        header = next(reader, None)
        if not is_results_header(header):
            raise not_results_file(results)
        writer.writerow(header)
        # Formats a line exactly as a send does; the input's cells stay empty.
        lines = ResultsWriter(results, None, header[len(COLUMNS):])
        at = {name: i for i, name in enumerate(COLUMNS)}
        seen: set[str] = set()
        for cells in reader:
            key = cells[at["key"]] if len(cells) > at["key"] else ""
            outcome = settled.get(key)
            if outcome is not None:
                seen.add(key)
                if outcome.status != UNKNOWN:
                    for name in ("status", "request_id", "portal_url", "contact_id", "error", "sent_at"):
                        cells[at[name]] = neutralise(str(getattr(outcome, name)))
            writer.writerow(cells)
        # Rows that were in flight when a run was killed have no line yet: add
        # one (the input's cells are not in the journal; the next send fills them).
        for key, outcome in sorted(settled.items(), key=lambda kv: kv[1].row):
            if key in seen:
                continue
            dst.write(lines.format(outcome))
