"""One run: read → map → check the journal → send → record, as a single operation.

The CLI builds a ``RunConfig``, calls ``send_file`` or ``validate_file`` and maps
what comes back (a ``Summary``) or what is raised (a ``BulksendError``) to an
exit status. Nothing here prints.

Follow a send: ``send_file`` opens the input (``open_input``), then the run's
session on its results file (store/session.py: lock, journal, world, seeding,
checkpoints), which reads the input once through (``check_pass``); ``_prepare``
makes every call before the first POST (preflight, settling, pre-send check);
``_send`` runs the sending phase (sending/pipeline.py) and ends the session's
results file. Between the two, a ``confirm`` function (the command line's
question on a terminal) is shown what the run is about to do
(sending/plan.py) and may stop it: nothing is sent (``DeclinedError``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bulksend.collect.rategate import RateGate
from bulksend.common.errors import AbortError, DeclinedError, InputError, UsageError
from bulksend.common.outcome import DUPLICATE, INVALID, READY, Outcome, Summary
from bulksend.common.progress import Progress
from bulksend.mapping.compiled import Mapping
from bulksend.mapping.loading import load_mapping, mapping_from_dict
from bulksend.reading.sources import open_table
from bulksend.reading.table import Mark, Row, Table
from bulksend.sending.choosing import Choice, choose
from bulksend.sending.plan import SendPlan, plan_send
from bulksend.sending.preflight import Uses, preflight, rows_text
from bulksend.sending.recorder import Recorder
from bulksend.sending.stop import StopRequest
from bulksend.settings import InputSettings, Mode, RunConfig
from bulksend.store.journal import API_URL, DUE_READING, SEND_INPUT
from bulksend.store.results import check_results_target
from bulksend.store.runlock import journal_path
from bulksend.store.session import Session, open_session

if TYPE_CHECKING:
    from collections.abc import Callable

    from bulksend.collect.client import Client
    from bulksend.sending.existing import Existing
    from bulksend.store.journal import Journal


def open_input(source: InputSettings) -> tuple[Table, Mapping]:
    """The contacts as a table and the mapping checked against its columns.
    Raises InputError (the file cannot be opened or its header read) or
    MappingError (every problem of the mapping); the table is closed then."""
    if source.open_rows is not None:
        table = source.open_rows()
    else:
        table = open_table(
            source.contacts, sheet=source.sheet, encoding=source.encoding, delimiter=source.delimiter,
            header_row=source.header_row, include_hidden=source.include_hidden,
        )
    try:
        if source.mapping_doc is not None:
            mapping = mapping_from_dict(source.mapping_doc, source.mapping, table.columns,
                                        header=table.header)
        else:
            mapping = load_mapping(source.mapping, table.columns, header=table.header)
    except BaseException:
        table.close()
        raise
    return table, mapping


ITEM_SAMPLE_ROWS = 2_000
# The check pass keeps the rows it reads while they take at most this much
# memory (reckoned as 100 bytes a cell plus its characters: 16 MiB is ~35,000
# rows of 4 short cells), and the sending pass takes them instead of reading the
# file again: 1.5-2.4 µs a row of a 20,000-row CSV (issue 29), far more for a
# spreadsheet. Past it they are read again, as before.
KEEP_BYTES = 16 << 20


def check_pass(table: Table, mapping: Mapping, start: Mark | None = None,
               keep: list[Row] | None = None) -> tuple[int, Uses]:
    """Read the whole input (from ``start``: the rest of it) before anything is
    sent, so a sheet that cannot be read to its end (bad bytes at row 40,000)
    sends nothing; map enough of it for the preflight to know the campaigns and
    items the rows use. ``keep``: the rows read are appended to it, all of them
    or (past ``KEEP_BYTES``) none: it is then left empty."""
    n = 0
    room = KEEP_BYTES
    uses = Uses()
    map_all = mapping.campaign_id is None

    def use(row: Row) -> None:
        if len(uses.campaigns) < 1000 and len(uses.items) < 10000:
            mapped = mapping.apply(row)
            if mapped.payload is not None:
                uses.add(mapped.payload, row.number)

    if start is not None and not map_all:
        # The same sample as a full read: the file's first rows, skipped or not.
        first = table.rows()
        try:
            for row in itertools.islice(first, ITEM_SAMPLE_ROWS):
                use(row)
        finally:
            first.close()
    watching = True  # the order of day and month, watched over every row (issue 24)
    for row in table.rows(start):
        n += 1
        if keep is not None:
            room -= 100 * len(row.values) + sum(map(len, row.values.values()))
            if room >= 0:
                keep.append(row)
            else:
                keep.clear()
                keep = None
        if map_all or (start is None and n <= ITEM_SAMPLE_ROWS):
            use(row)
        elif watching:
            watching = mapping.observe(row)
    mapping.check_orders(table.name)
    return n, uses


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------


def validate_file(config: RunConfig, progress: Progress) -> Summary:
    """Check every row of ``config.input`` against its mapping, as ``bulksend
    validate``: no network, no key, no results file written. Each row's
    outcome (ready, invalid, duplicate) goes to ``progress``; the summary
    counts them. Raises what ``open_input`` and reading the rows raise."""
    summary = Summary(results=config.results)
    table, mapping = open_input(config.input)
    seen: dict[bytes, int] = {}
    far_ahead: list[int] = []  # the first rows whose due date is far ahead, and how many
    far_count = 0
    with table:
        for row in table.rows():
            summary.total += 1
            mapped = mapping.apply(row)
            if mapping.due_far_ahead(mapped.payload):
                far_count += 1
                if far_count <= 4:
                    far_ahead.append(row.number)
            outcome = Outcome(row=row.number, values=row.values)
            if mapped.error is not None or mapped.key is None:
                outcome.status, outcome.error = INVALID, mapped.error or "invalid row"
            else:
                outcome.key = mapped.key
                digest = hashlib.blake2b(mapped.key.encode(), digest_size=8).digest()
                if digest in seen:
                    outcome.status = DUPLICATE
                    outcome.error = f"same key as row {seen[digest]} ({mapped.key})"
                else:
                    seen[digest] = row.number
                    outcome.status = READY
                    outcome.payload = mapped.payload
            summary.note(outcome)
            progress.outcome(outcome)
        summary.read = [table.describe(), *table.left_out()]
        summary.guesses = [*table.guesses(), *mapping.guesses()]
        mapping.check_orders(table.name)
        if summary.total == 0:
            _refuse_empty_like_send(config.input, table)
    note = mapping.due_zone_note()
    if note is not None:
        summary.notes.append(note)
    if far_count:
        summary.warnings.append(
            f"dueDate is more than two years ahead in {far_count} row(s) (rows {rows_text(far_ahead)}):"
            " check the year, and the order of day and month in format"
        )
    return summary


# ---------------------------------------------------------------------------
# send
# ---------------------------------------------------------------------------


class _CheckPass:
    """``check_pass`` as the session calls it: reads from a mark and returns
    the rows read; what the rows use is kept for the preflight."""

    def __init__(self, table: Table, mapping: Mapping, results: Path | None) -> None:
        self.table = table
        self.mapping = mapping
        self.uses = Uses()
        self._results = results  # None: an empty input is no question (a dry run)
        # The rows the last read kept, and where it started (check_pass's ``keep``).
        self.kept: tuple[Mark | None, list[Row]] | None = None

    def __call__(self, start: Mark | None) -> int:
        kept: list[Row] = []
        self.kept = None
        rows, self.uses = check_pass(self.table, self.mapping, start, keep=kept)
        if len(kept) == rows:
            self.kept = (start, kept)
        if rows == 0 and start is None and self._results is not None:
            _refuse_empty_input(self._results, self.table)
            self._results = None  # asked once: before the lock, not again under it
        return rows


def send_file(config: RunConfig, progress: Progress, stop: StopRequest | None = None,
              confirm: Callable[[SendPlan], bool] | None = None) -> Summary:
    """Run a send; ``stop``: how another thread stops it (else SIGINT/SIGTERM,
    main thread only). ``confirm`` (a real send only): shown the plan after
    the preflight and pre-send checks, before the first POST; False raises
    DeclinedError, nothing sent (a plan of no request is not shown)."""
    results = config.results
    mode = config.mode
    if mode.dry_run and journal_path(results).exists():
        raise UsageError(
            f"{results}: holds the results of a real run; a dry run would overwrite them",
            hint="pass another --results file for the dry run",
        )
    summary = Summary(results=results, dry_run=mode.dry_run)
    table, mapping = open_input(config.input)
    with table:
        choice = choose(mode, mapping, table)  # --where, --exclude: checked and read before the lock
        check_results_target(results, config.input.contacts)
        # Rows settled by earlier runs up to a checkpoint both files still
        # match are skipped unread (store/checkpoints.py): peeked before the lock,
        # confirmed under it, by the session.
        checked = _CheckPass(table, mapping, None if mode.dry_run else results)
        with open_session(results, table, mapping, summary, progress, read=checked,
                          dry_run=mode.dry_run, sandbox=mode.sandbox,
                          remember=remembered(config, mapping)) as session:
            # One gate for every call of the run, the preflight's included (issue 18).
            gate = RateGate(config.pace.rate, progress=progress, max_pause=config.pace.max_pause,
                            patience=config.pace.patience)
            if mode.dry_run:
                _note_due_zone(mapping, progress)
                progress.event("input", table.describe())  # the encoding, delimiter... chosen
                _note_guesses(table, mapping, progress)
                _note_choice(choice, progress)
                excluded: set[str] = set()
            else:
                excluded = asyncio.run(_prepare(config, session, checked.uses, gate, choice))
                if confirm is not None:
                    _ask(confirm, plan_send(session, mode, choice, checked.uses.catalogues))
            kept = checked.kept  # the rows the check pass read, when it kept them from where the run reads
            checked.kept = None
            rows = kept[1] if kept is not None and kept[0] == session.start else None
            return _send(config, session, gate, excluded, stop, choice, rows)


def _ask(confirm: Callable[[SendPlan], bool], plan: SendPlan) -> None:
    """The confirmation point (issue 28): after every check, before the first POST."""
    if plan.requests and not confirm(plan):
        raise DeclinedError("not confirmed: nothing was sent",
                            hint="rerun with --yes to send without the question")


def remembered(config: RunConfig, mapping: Mapping) -> dict[str, str]:
    """What the results file remembers of this send (journal meta, issue 27;
    never the key): the API URL, how the mapping reads dueDate (format,
    timezone, type), and the send's input (contacts and mapping as absolute
    paths, None when given in memory; the reading options given; the folder;
    whether it was a rehearsal)
    for ``status``, ``update``, ``reconcile`` and ``report``."""
    import json
    import os

    dates = mapping.due_dates
    due = {"format": dates.fmt, "timezone": dates.field_zone, "type": dates.spec_type} if dates.mapped else {}
    source = config.input
    contacts = None if source.open_rows is not None else source.contacts
    given = {
        "contacts": contacts if contacts in (None, "-") else os.path.abspath(contacts),
        "mapping": None if source.mapping_doc is not None else os.path.abspath(source.mapping),
        "sheet": source.sheet, "encoding": source.encoding, "delimiter": source.delimiter,
        "header_row": source.header_row, "include_hidden": source.include_hidden, "cwd": os.getcwd(),
        "sandbox": config.mode.sandbox,
    }
    return {API_URL: config.api.url, DUE_READING: json.dumps(due), SEND_INPUT: json.dumps(given)}


async def _prepare(config: RunConfig, session: Session, uses: Uses, gate: RateGate,
                   choice: Choice | None = None) -> set[str]:
    """Every call before the first POST, in one event loop over one client: the
    preflight, then the settling of unknown rows and the pre-send check (of the
    rows ``choice`` does not leave out). Returns the request ids that existed before the run."""
    from bulksend.collect.client import Client

    api = config.api
    mapping, progress = session.mapping, session.progress
    async with Client(api.url, api.key, timeout=api.timeout, concurrency=4) as client:
        # Rows are mapped for sending only from here on, in the team's zone (issue 17).
        mapping.use_team_zone(await preflight(config, uses, progress, gate, client=client))
        mapping.use_items(uses.catalogues)  # items named by name are sent as ids (issue 15)
        _note_due_zone(mapping, progress)
        progress.event("input", session.table.describe())  # the encoding, delimiter... chosen (issue 13)
        _note_guesses(session.table, session.mapping, progress)
        _note_choice(choice, progress)
        return await _before_sending(client, gate, session, config.mode, config.input.contacts, choice)


def _note_choice(choice: Choice | None, progress: Progress) -> None:
    """What --where and the do-not-contact lists leave out, at the top of the run."""
    for note in choice.notes if choice is not None else ():
        progress.event("note", note)


async def _before_sending(client: Client, gate: RateGate, session: Session, mode: Mode,
                          contacts: str, choice: Choice | None = None) -> set[str]:
    """Settle many unknown rows at once (sending/settling.py), then the pre-send check
    (sending/existing.py). Returns the request ids that existed before the run."""
    from bulksend.sending.existing import check_existing
    from bulksend.sending.settling import settle_unknown

    journal, progress = session.journal, session.progress
    await settle_unknown(client, gate, journal, session.mapping.key_paths, progress)
    # Every row the journal has not seen created is checked, in every run,
    # failed ones included (issue 23, case 2); with lookup_new (the journal
    # knew less than the CSV), a row the journal never met is looked up
    # instead, at any time, before it is sent: a request it finds is taken as
    # this row's, which the check would only have reported.
    if mode.existing == "send":
        return set()
    found = await check_existing(client, gate, session.table, session.mapping, journal, session.start,
                                 progress, rows=session.summary.total, only_failed=mode.only_failed,
                                 left_out=choice.leaves_out if choice is not None else None)
    return _existing(found, mode.existing, contacts, journal, progress)


def _existing(found: Existing, existing: str, contacts: str, journal: Journal,
              progress: Progress) -> set[str]:
    """The pre-send check (sending/existing.py): stop, or (``existing`` = "skip")
    record the rows that already have a request as sent. Returns the request
    ids that existed before the run."""
    from bulksend.collect.lookup import iso_utc
    from bulksend.sending.existing import SKIPPED_NOTE, ExistingError, describe

    if not found.found:
        return set()
    if existing == "skip" and found.doubts:
        doubtful = dataclasses.replace(
            found, found=[(new, request) for new, request in found.found if new.key in found.doubts])
        raise ExistingError(
            describe(doubtful, contacts),
            hint="--skip-existing cannot tell which row such a request is for; check them in Collect, "
                 "and take the rows already served out of the sheet (docs/operations.md, "
                 "'Requests sent outside this results file')",
        )
    if existing != "skip":
        raise ExistingError(
            describe(found, contacts),
            hint="--skip-existing records them as sent with that request; --send-anyway sends them "
                 "a new one (docs/operations.md, 'Requests sent outside this results file')",
        )
    for new, request in found.found:
        note = SKIPPED_NOTE.format(id=request.request_id, status=request.status or "status unknown")
        when = iso_utc(request.created_at)
        journal.adopt(new.key, new.row, dataclasses.replace(request, created_at=when), note)
    journal.commit()
    progress.event("existing", f"{len(found.found)} row(s) recorded sent with the request their contact "
                               "already had (--skip-existing)")
    return found.request_ids


def _note_due_zone(mapping: Mapping, progress: Progress) -> None:
    note = mapping.due_zone_note()
    if note is not None:
        progress.event("note", note)


def _refuse_empty_input(results: Path, table: Table, then: str = "") -> None:
    """A file of no data rows where earlier runs recorded rows is most likely an
    export that failed upstream (issue 24): InputError (exit 2) before anything,
    results or journal, is changed. Read-only: no lock is held yet. ``then``
    (validate's): how the message ends, instead of "nothing was sent"."""
    path = journal_path(results)
    known = 0
    if path.exists():
        import sqlite3

        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                known = int(db.execute("SELECT count(*) FROM rows").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            known = 0  # an unreadable journal is the locked run's to report
    if known:
        raise InputError(
            f"{table.name}: has no data rows (header only), but {results} records {known} rows of"
            f" earlier runs; {then or 'nothing was sent and nothing changed'}",
            hint="an export that arrives empty usually failed upstream: check it, then rerun",
        )


def _refuse_empty_like_send(source: InputSettings, table: Table) -> None:
    """validate on a file of no data rows: what send (and send --sandbox) would do
    with the results file it writes by default, said the same way (issue 24, M6)."""
    contacts = source.contacts
    if source.open_rows is not None or contacts == "-" or not Path(contacts).is_file():
        return
    results = resolve_results(contacts, None, False)
    _refuse_empty_input(results, table, "send would stop here (exit 2), sending nothing and changing nothing")
    rehearsal = results.with_name(results.name.removesuffix("-results.csv") + "-sandbox-results.csv")
    _refuse_empty_input(rehearsal, table, "send --sandbox would stop here (exit 2) and change nothing")


def _note_guesses(table: Table, mapping: Mapping, progress: Progress) -> None:
    """Each choice made for the person, with its evidence (issue 24), as the check pass saw it."""
    for guess in (*table.guesses(), *mapping.guesses()):
        progress.event("guess", guess)


def _send(config: RunConfig, session: Session, gate: RateGate, excluded: set[str],
          stop: StopRequest | None, choice: Choice | None = None, kept: list[Row] | None = None) -> Summary:
    """The sending phase (sending/pipeline.py), then the end of the session's
    results file. A second Ctrl-C or an abort is recorded in the summary.
    ``kept``: the rows the check pass read from where this run reads (None: read them again)."""
    summary, progress = session.summary, session.progress
    writer = session.open_results()
    recorder = Recorder(session.journal, writer, summary, session.tracker, progress,
                        dry_run=config.mode.dry_run)
    started = time.monotonic()
    hard_stop = completed = False
    try:
        # aiohttp is imported here, not at module level: validate and --help never need it.
        from bulksend.sending.feeder import Rows
        from bulksend.sending.pipeline import send_rows

        rows = Rows(session.table, session.mapping, session.resume, choice, kept)
        asyncio.run(send_rows(config, rows, recorder, gate, excluded, stop))
        completed = True
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Second Ctrl-C: stop at once. The journal holds every attempt; rows in
        # flight read back as unknown and are looked up before any resend.
        hard_stop = True
        summary.interrupted = True
    except AbortError as exc:  # the journal or the results file could not be written (disk full)
        hard_stop = True
        if summary.aborted is None:
            summary.aborted = exc
            progress.event("abort", str(exc))
    finally:
        summary.elapsed = time.monotonic() - started
        session.end(completed=completed, hard_stop=hard_stop)
        if summary.aborted is not None or summary.interrupted:
            _account_for_every_row(summary, recorder)
    return summary


def _account_for_every_row(summary: Summary, recorder: Recorder) -> None:
    """After a stop, the counts add up to the rows (issue 27): the rows the
    run never read (a full disk broke the journal first) are counted
    ``not-reached``; and when the results file holds fewer lines than the rows
    counted (the disk filled while it was written), a note says how many it
    holds and that a rerun writes the rest."""
    from bulksend.sending.recorder import NOT_REACHED

    missing = summary.total - sum(summary.counts.values())
    if missing > 0:
        summary.counts[NOT_REACHED] = missing
    counted = sum(n for status, n in summary.counts.items() if status != NOT_REACHED)
    if not recorder.unwritten and not isinstance(summary.aborted, AbortError):
        return
    held = _lines_in(summary.results)
    if held < counted:
        summary.notes.append(
            f"{summary.results} lists {held} of the {counted} rows counted above: the disk filled before "
            "the others could be written. Rerun the same command once there is room: it writes every "
            "row's line (a row whose answer was not recorded is looked up first, never sent twice)")


def _lines_in(results: Path) -> int:
    """The complete lines (as many cells as the header) of the results file at
    ``results``; those read before an error when it cannot be read to its end."""
    import csv

    from bulksend.store.results import csv_lines

    lines = 0
    try:
        with open(results, encoding="utf-8-sig", newline="") as handle:
            reader = csv_lines(handle)
            header = next(reader, [])
            lines = sum(1 for cells in reader if len(cells) == len(header))
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return lines


def resolve_results(contacts: str, results: str | None, dry_run: bool) -> Path:
    if results:
        path = Path(results)
    else:
        stem = "stdin" if contacts == "-" else Path(contacts).stem
        path = Path(f"{stem}-dry-run.csv" if dry_run else f"{stem}-results.csv")
    return path  # check_results_target() decides whether it may be written
