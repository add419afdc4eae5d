"""One run: read → map → check the journal → send → record, as a single operation.

The CLI builds a ``RunConfig``, calls ``send_file`` or ``validate_file`` and maps
what comes back (a ``Summary``) or what is raised (a ``BulksendError``) to an
exit status. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import functools
import hashlib
import itertools
import json
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulksend import checkpoints
from bulksend.checkpoints import Chain, Tracker
from bulksend.errors import (
    AbortError,
    AuthError,
    BulksendError,
    ExitStatus,
    InputError,
    UsageError,
)
from bulksend.items import Catalogue
from bulksend.mapping import Mapping, load_mapping
from bulksend.outcome import DUPLICATE, FAILED, INVALID, READY, SENT, UNKNOWN, Outcome
from bulksend.progress import Progress
from bulksend.reading import Mark, Row, Table, open_table
from bulksend.results import (
    INFLIGHT,
    LOOKUP_NEW,
    PENDING,
    Journal,
    Record,
    ResultsWriter,
    RunLock,
    Seeded,
    check_results_target,
    journal_path,
    journal_vouches,
    remove_journal,
    seed_journal_from_csv,
)

if TYPE_CHECKING:
    from bulksend.client import Client
    from bulksend.rategate import RateGate


class PreflightError(InputError):
    """A campaign or item the rows use does not exist: input error, nothing sent."""


@dataclass(frozen=True)
class RunConfig:
    contacts: str
    mapping: str
    results: Path
    api_url: str = "https://api.usecollect.com/v1"
    api_key: str = field(default="", repr=False)  # never printed, logged or written
    rate: float | None = 10.0  # requests per second, a ceiling
    concurrency: int = 8
    max_attempts: int = 5
    timeout: float = 30.0
    max_pause: float = 60.0
    dry_run: bool = False
    limit: int | None = None
    only_failed: bool = False
    sheet: str | int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int | None = None  # the row holding the column names; None: the first non-blank
    include_hidden: bool = False  # send rows hidden in an .xlsx sheet too
    batch: bool = False
    stop_grace: float = 10.0
    # Rows new to the journal whose contact already has a request in the
    # campaign: "stop" the run (exit 2), "skip" them (recorded sent with that
    # request) or "send" anyway (no check). See existing.py.
    existing: str = "stop"
    # A rehearsal against the in-process sandbox (send --sandbox, rehearsal.py):
    # its journal is marked so that a real run never takes its rows as sent.
    sandbox: bool = False


@dataclass
class Summary:
    results: Path
    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    posts: int = 0
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    interrupted: bool = False
    aborted: BulksendError | None = None
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    # What the person should know besides problems: the due dates' zone
    # (validate), how --batch sent the rows.
    notes: list[str] = field(default_factory=list)
    examples: dict[str, list[Outcome]] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)  # validate: what was read, then what was left out

    @property
    def exit_status(self) -> ExitStatus:
        if self.aborted is not None:
            return self.aborted.exit_status
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if any(self.counts[s] for s in (FAILED, INVALID, DUPLICATE, UNKNOWN)):
            return ExitStatus.ROWS_NOT_SENT
        return ExitStatus.OK

    def note(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.status in (FAILED, INVALID, DUPLICATE, UNKNOWN):
            kept = self.examples.setdefault(outcome.status, [])
            if len(kept) < 5:
                kept.append(outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": str(self.results),
            "rows": self.total,
            "counts": dict(self.counts),
            "posts": self.posts,
            "started_at": _iso_utc(self.started),
            "finished_at": _iso_utc(time.time()),
            "elapsed_seconds": round(self.elapsed, 3),
            "interrupted": self.interrupted,
            "aborted": None if self.aborted is None else str(self.aborted),
            "dry_run": self.dry_run,
            "notes": self.notes,
            "exit_code": int(self.exit_status),
        }


def _iso_utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def open_input(config: RunConfig) -> tuple[Table, Mapping]:
    table = open_table(
        config.contacts, sheet=config.sheet, encoding=config.encoding, delimiter=config.delimiter,
        header_row=config.header_row, include_hidden=config.include_hidden,
    )
    try:
        mapping = load_mapping(config.mapping, table.columns, header=table.header)
    except BaseException:
        table.close()
        raise
    return table, mapping


def _no_target(payload: dict[str, Any]) -> str:
    return ""


def lookup_target(payload: dict[str, Any], key_paths: list[str] | None = None) -> str:
    """What reconciliation needs to find a row's request: campaign, contact,
    and the values of the key's other fields (matched by look-ups, lookup.py)."""
    from bulksend.lookup import key_fields

    contact = payload.get("contact")
    who = contact if isinstance(contact, str) else (contact or {}).get("email", "")
    target: dict[str, Any] = {"campaignId": payload.get("campaignId", ""), "contact": who}
    fields = key_fields(payload, key_paths)
    if fields:
        target["key"] = fields
    return json.dumps(target)


@dataclass
class Uses:
    """Campaigns and items the valid rows refer to, with example rows for messages."""

    campaigns: dict[str, list[int]] = field(default_factory=dict)
    items: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # Campaign id -> its elements, filled by preflight (GET /campaigns/{id}).
    catalogues: dict[str, Catalogue] = field(default_factory=dict)

    def add(self, payload: dict[str, Any], row: int) -> None:
        campaign = str(payload.get("campaignId", ""))
        rows = self.campaigns.setdefault(campaign, [])
        if len(rows) < 5:
            rows.append(row)
        for item in payload.get("items") or []:
            kept = self.items.setdefault((campaign, str(item)), [])
            if len(kept) < 5:
                kept.append(row)


# With one campaign for every row, the preflight learns the item ids from the
# first rows only: mapping a million rows twice would delay the first POST by
# seconds. Rows further down with an unknown item get the API's 400 as a
# per-row failure instead.
ITEM_SAMPLE_ROWS = 2_000


def check_pass(table: Table, mapping: Mapping, start: Mark | None = None) -> tuple[int, Uses]:
    """Read the whole input (from ``start``: the rest of it) before anything is
    sent, so a sheet that cannot be read to its end (bad bytes at row 40,000)
    sends nothing; map enough of it for the preflight to know the campaigns and
    items the rows use."""
    n = 0
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
    for row in table.rows(start):
        n += 1
        if map_all or (start is None and n <= ITEM_SAMPLE_ROWS):
            use(row)
    return n, uses


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------


def validate_file(config: RunConfig, progress: Progress) -> Summary:
    summary = Summary(results=config.results)
    table, mapping = open_input(config)
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
    note = mapping.due_zone_note()
    if note is not None:
        summary.notes.append(note)
    if far_count:
        summary.warnings.append(
            f"dueDate is more than two years ahead in {far_count} row(s) (rows {_rows_text(far_ahead)}):"
            " check the year, and the order of day and month in format"
        )
    return summary


# ---------------------------------------------------------------------------
# send
# ---------------------------------------------------------------------------


def _carry(outcome: Outcome, record: Record | None) -> None:
    """Fill an outcome from the journal's record of an earlier run."""
    if record is None:
        return
    outcome.request_id = record.request_id
    outcome.portal_url = record.portal_url
    outcome.contact_id = record.contact_id
    outcome.http_status = record.http_status
    outcome.attempts = record.attempts
    outcome.error = record.error
    outcome.sent_at = record.sent_at
    outcome.status = UNKNOWN if record.status == INFLIGHT else record.status
    if outcome.status == PENDING:
        outcome.status = READY


@contextlib.contextmanager
def _locked_journal(config: RunConfig, mapping: Mapping, summary: Summary) -> Iterator[Journal]:
    lock = RunLock(config.results)
    lock.acquire()
    try:
        path = journal_path(config.results)
        fresh = not path.exists()
        journal = Journal(path)
        try:
            try:
                _check_world(journal, config, fresh)
            except UsageError:
                journal.close()
                if fresh:
                    remove_journal(config.results)
                raise
            # The journal must know every row the CSV records (issue 11: a
            # journal copied without its -wal, emptied, or an older copy).
            if config.results.exists() and not journal_vouches(journal, config.results):
                try:
                    seeded = seed_journal_from_csv(journal, config.results)
                except BaseException:
                    journal.close()
                    if fresh:
                        remove_journal(config.results)
                    raise
                if seeded.total:
                    summary.warnings.append(_seeded_warning(path, config.results, seeded, fresh))
            elif fresh:
                # A new record beside other records: likely a dated export run
                # without a fixed --results, which would send everyone again.
                others = sorted(
                    p.name.removesuffix(".journal")
                    for p in config.results.parent.glob("*.journal")
                    if p != path
                )
                if others:
                    summary.warnings.append(
                        f"{config.results} is a new record, so nothing in it counts as sent yet; this "
                        f"folder also holds {', '.join(others[:3])}{', …' if len(others) > 3 else ''}. "
                        "To resume one of those, pass it as --results"
                    )
            previous = journal.get_meta("mapping_digest")
            if previous is not None and previous != mapping.digest:
                summary.warnings.append(
                    f"{config.mapping} changed since the last run on {config.results.name}; "
                    "rows already sent are matched by key and not sent again"
                )
            journal.set_meta("mapping_digest", mapping.digest)
            journal.commit()
            yield journal
            if journal.lookup_new and summary.aborted is None and not summary.interrupted:
                journal.delete_meta(LOOKUP_NEW)  # this run met every row: each is in the journal now
                journal.commit()
        finally:
            journal.close()
    finally:
        lock.release()


def _check_world(journal: Journal, config: RunConfig, fresh: bool) -> None:
    """A results file is either a rehearsal's (--sandbox) or real sends', for
    good: its journal says which ("world" meta; none: real, as before issue 15).
    UsageError when this run is the other kind."""
    from bulksend.rehearsal import is_rehearsal_name, world_mismatch

    recorded = journal.get_meta("world") or ("" if fresh else "api")
    if fresh and config.results.exists() and is_rehearsal_name(config.results):
        recorded = "sandbox"  # a rehearsal's CSV without its journal: still a rehearsal's
    world = "sandbox" if config.sandbox else "api"
    if recorded and recorded != world:
        raise world_mismatch(config.results, rehearsal=config.sandbox)
    if recorded != world:
        journal.set_meta("world", world)


def _seeded_warning(path: Path, results: Path, seeded: Seeded, fresh: bool) -> str:
    what = "was missing" if fresh else (
        f"knew fewer rows than {results.name} (a copy without its -wal file, or an older one?)")
    return (f"{path.name} {what}: took {seeded.total} rows from {results.name} ({seeded.sent} sent, "
            f"{seeded.unknown} unknown, {seeded.failed} failed); unknown rows, and rows the journal never "
            f"met, are looked up before they are sent. Keep {results.name} with {path.name}, "
            f"{path.name}-wal and {path.name}-shm")


def send_file(config: RunConfig, progress: Progress) -> Summary:
    if config.dry_run and journal_path(config.results).exists():
        raise UsageError(
            f"{config.results}: holds the results of a real run; a dry run would overwrite them",
            hint="pass another --results file for the dry run",
        )
    summary = Summary(results=config.results, dry_run=config.dry_run)
    table, mapping = open_input(config)
    with table:
        check_results_target(config.results, config.contacts)
        # Rows settled by earlier runs up to a checkpoint both files still
        # match are skipped unread (checkpoints.py): peeked before the lock,
        # confirmed under it.
        input_stat = _file_stat(table.path)  # before any read: a change after it voids new checkpoints
        stored = None if config.dry_run else checkpoints.peek(journal_path(config.results))
        resume = checkpoints.usable(stored, table, mapping.digest, config.results)
        summary.total, uses = check_pass(table, mapping, resume.last.mark if resume else None)
        if config.dry_run:
            _note_due_zone(mapping, progress)
            # A throwaway journal gives the dry run the same duplicate check.
            with tempfile.TemporaryDirectory(prefix="bulksend-") as tmp:
                journal = Journal(Path(tmp) / "dry-run.journal")
                try:
                    progress.event("input", table.describe())  # the encoding, delimiter... chosen
                    return _run(config, table, mapping, journal, summary, progress)
                finally:
                    journal.close()
        with _locked_journal(config, mapping, summary) as journal:
            if journal.get_meta(checkpoints.META) != stored:  # another run ended in between
                resume = None
                summary.total, uses = check_pass(table, mapping)
            # Written again only at the end of a complete run: after a kill,
            # the next run reads everything.
            journal.delete_meta(checkpoints.META)
            journal.commit()
            if resume is not None:
                summary.total += resume.last.rows
                summary.counts.update(resume.last.counts)
                summary.examples = resume.examples_upto(resume.last.number)
            for warning in summary.warnings:
                progress.event("warning", warning)
            # Rows are mapped for sending only from here on, in the team's zone (issue 17).
            mapping.use_team_zone(asyncio.run(preflight(config, uses, progress)))
            mapping.use_items(uses.catalogues)  # items named by name are sent as ids (issue 15)
            _note_due_zone(mapping, progress)
            progress.event("input", table.describe())  # the encoding, delimiter... chosen (issue 13)
            excluded = asyncio.run(_before_sending(config, table, mapping, journal,
                                                   resume.last.mark if resume else None, progress))
            return _run(config, table, mapping, journal, summary, progress, resume, input_stat, excluded)


async def _before_sending(config: RunConfig, table: Table, mapping: Mapping, journal: Journal,
                          start: Mark | None, progress: Progress) -> set[str]:
    """Settle many unknown rows at once (settling.py), then the pre-send check
    (existing.py). Returns the request ids that existed before the run."""
    from bulksend.client import Client
    from bulksend.rategate import RateGate
    from bulksend.settling import settle_unknown

    gate = RateGate(config.rate, progress=progress, max_pause=config.max_pause)
    async with Client(config.api_url, config.api_key, timeout=config.timeout, concurrency=2) as client:
        await settle_unknown(client, gate, journal, mapping.key_paths, progress)
        # With lookup_new (the journal knew less than the CSV), every row the
        # journal never met is looked up, at any time, before it is sent: a
        # request it finds is taken as this row's, which the check would only
        # have reported.
        if config.existing == "send" or config.only_failed or journal.lookup_new:
            return set()
        return await _existing(config, client, gate, table, mapping, journal, start, progress)


async def _existing(config: RunConfig, client: Client, gate: RateGate, table: Table, mapping: Mapping,
                    journal: Journal, start: Mark | None, progress: Progress) -> set[str]:
    """The pre-send check (existing.py): stop, or record the rows that already
    have a request as sent. Returns the request ids that existed before the run."""
    from bulksend.existing import SKIPPED_NOTE, ExistingError, check_existing, describe
    from bulksend.lookup import iso_utc

    found = await check_existing(client, gate, table, mapping, journal, start, progress)
    if not found.found:
        return set()
    if config.existing != "skip":
        raise ExistingError(
            describe(found, config.contacts),
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


def _sent_before(outcome: Outcome, key: str, journal: Journal) -> bool:
    """A row refused only because its due date is now past (its key is known):
    when an earlier run sent it, or may have, it keeps that run's record rather
    than turning invalid. Fills the outcome and returns True in that case."""
    record = journal.get(key)
    if record is None or record.run_id == journal.run_id or record.status not in (SENT, INFLIGHT, UNKNOWN):
        return False
    outcome.key = key
    _carry(outcome, record)
    return True


def _file_stat(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _run(config: RunConfig, table: Table, mapping: Mapping, journal: Journal,
         summary: Summary, progress: Progress, resume: Chain | None = None,
         input_stat: tuple[int, int, int] | None = None, excluded: set[str] | None = None) -> Summary:
    writer = ResultsWriter(config.results, journal, table.columns, with_payload=config.dry_run)
    writer.open(keep=resume.last.results_offset if resume else 0)
    tracker = Tracker()
    started = time.monotonic()
    hard_stop = completed = False
    try:
        asyncio.run(_send_async(config, table, mapping, journal, writer, summary, progress, resume, tracker,
                                excluded or set()))
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
        if hard_stop:
            with contextlib.suppress(AbortError):  # already said; the next run resumes from the journal
                journal.commit()
            writer.abandon()
        else:
            skipped = resume.last.number if resume else 0
            ends = None
            try:
                ends = writer.finish(tracker.candidates(skipped, table.header_row))
            except AbortError as exc:  # a full disk: the journal has the outcomes; a rerun rewrites
                if summary.aborted is None:
                    summary.aborted = exc
                    progress.event("abort", str(exc))
            unchanged = input_stat is not None and _file_stat(table.path) == input_stat
            if ends is not None and completed and unchanged and not config.dry_run:
                _lay_checkpoints(config, table, mapping, journal, summary, resume, tracker, ends)
    return summary


def _lay_checkpoints(config: RunConfig, table: Table, mapping: Mapping, journal: Journal,
                     summary: Summary, resume: Chain | None, tracker: Tracker,
                     ends: dict[int, int]) -> None:
    """After a complete run: checkpoints for the next one (checkpoints.py).
    Best effort: without them the next run reads every row, as it always could."""
    try:
        chain = checkpoints.extend(resume, table=table, results=config.results, mapping_digest=mapping.digest,
                                   run_id=journal.run_id, tracker=tracker, results_offsets=ends,
                                   examples=summary.examples)
    except (OSError, BulksendError, ValueError, csv.Error):
        return
    if chain is None:
        return
    if resume is not None:
        journal.forget_stale(resume.base_run, resume.last.number)
    journal.set_meta(checkpoints.META, chain.to_json())
    journal.commit()


async def _send_async(config: RunConfig, table: Table, mapping: Mapping, journal: Journal,
                      writer: ResultsWriter, summary: Summary, progress: Progress,
                      resume: Chain | None, tracker: Tracker, excluded: set[str]) -> None:
    # aiohttp is imported here, not at module level: validate and --help never need it.
    from bulksend.client import Client
    from bulksend.rategate import RateGate
    from bulksend.sending import BATCH_SIZE, BatchPlan, BatchSender, Job, Policy, Sender, contact_identity

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal(signame: str) -> None:
        if stopping.is_set():
            progress.event("interrupt", f"{signame} again: stopping now")
            main_task.cancel()
            return
        stopping.set()
        summary.interrupted = True
        progress.event(
            "interrupt",
            f"{signame}: no new rows; waiting up to {config.stop_grace:g}s for requests in flight "
            "(press Ctrl-C again to stop at once)",
        )

    installed = []
    for sig, name in ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, name)
            installed.append(sig)

    def unattempted(job: Job) -> None:
        """A queued row the run stopped before sending: its earlier status stands."""
        if job.marked and job.outcome.key:
            journal.restore(job.outcome.key, job.previous)
            job.marked = False
        finish(job.outcome, carried=True)

    def stopped(job: Job) -> None:
        """A row the run stopped with while it was taken up: unknown if its POST
        was on the wire; what its answers said if it had any; else untouched."""
        o = job.outcome
        if job.posting:
            o.status = UNKNOWN
            o.error = "stopped while in flight; it is looked up before any resend"
        elif job.attempts_before < 0 or (o.attempts == job.attempts_before and o.status != UNKNOWN):
            unattempted(job)
            return
        elif o.status not in (SENT, FAILED, UNKNOWN):
            o.status = FAILED
        finish(o)

    def finish(outcome: Outcome, *, carried: bool = False) -> None:
        if outcome.key and outcome.status in (SENT, FAILED, UNKNOWN) and not (carried or config.dry_run):
            journal.record(outcome)
        writer.write(outcome)
        summary.note(outcome)
        tracker.note(outcome)
        progress.outcome(outcome)

    # Deep enough that refilling it by halves makes few, large commits; shallow
    # enough that a kill leaves few rows marked but unsent (each costs a look-up).
    queue: asyncio.Queue[Job | list[Job] | None] = asyncio.Queue(maxsize=max(64, config.concurrency * 8))
    in_flight: dict[int, Job | list[Job]] = {}
    progress.start(summary.total)
    if resume is not None:
        progress.carried(resume.last.counts)
        progress.event("resume", f"{resume.last.rows:,} rows up to row {resume.last.number} were settled by "
                                 "earlier runs and are unchanged: not read again")
    start = resume.last.mark if resume is not None else None
    skipped = (resume.last.number, resume.base_run) if resume is not None else None
    gate = RateGate(config.rate, progress=progress, max_pause=config.max_pause)
    policy = Policy(max_attempts=config.max_attempts, max_pause=config.max_pause)

    try:
        async with Client(config.api_url, config.api_key, timeout=config.timeout,
                          concurrency=config.concurrency) as client:
            sender = Sender(client, gate, journal, policy, progress, key_paths=mapping.key_paths,
                            excluded=excluded)
            batcher = BatchSender(sender)

            async def worker(n: int) -> None:
                while True:
                    # get_nowait, then get: what `await queue.get()` does, without
                    # its coroutine when a row is waiting (the usual case).
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        item = await queue.get()
                    if item is None:
                        return
                    if queue.qsize() <= queue.maxsize // 2:
                        room.set()
                    if stopping.is_set():
                        for job in item if isinstance(item, list) else [item]:
                            unattempted(job)
                        continue
                    in_flight[n] = item
                    try:
                        if not isinstance(item, list):
                            finish(await sender.run(item))
                            continue
                        if len(item) > 1:
                            outcomes = await batcher.run(item)
                        else:
                            outcomes = [await sender.run(item[0])]
                    except BulksendError:
                        # The run stops (401, a quota): this worker's rows get
                        # their lines now, as far as they are known.
                        for job in item if isinstance(item, list) else [item]:
                            stopped(job)
                        raise
                    finally:
                        in_flight.pop(n, None)
                    for outcome in outcomes:
                        finish(outcome)

            # Batch mode: rows gather by their request-level fields; a group
            # leaves when it holds 50 contacts, and at the end of the input. A
            # group never holds the same contact twice (a second one sends the
            # group first), so the answer can be matched by contact without doubt.
            groups: dict[str, dict[str, Job]] = {}  # group -> contact identity -> job
            plan = BatchPlan()

            # The feeder writes each row's write-ahead mark as it queues it, and
            # refills the queue by halves, so one commit covers many rows and a
            # worker rarely waits for one. A kill leaves at most a queue's worth
            # of rows marked but never sent: the next run looks them up first.
            room = asyncio.Event()

            async def put(item: Job | list[Job]) -> None:
                if queue.full():
                    room.clear()
                    await room.wait()
                # A batch is marked when its call leaves (BatchSender.run), not
                # here: a queue of batches holds thousands of rows, and a kill
                # would leave them all in doubt (issue 11, case 8).
                if not isinstance(item, list) and item.outcome.key:
                    journal.begin_attempt(item.outcome.key)
                    item.marked = True
                if queue.full():  # not expected: only this task puts while it runs
                    await queue.put(item)
                else:
                    queue.put_nowait(item)  # what `await queue.put` does then, without a coroutine

            async def enqueue(job: Job) -> None:
                if not config.batch:
                    await put(job)
                    return
                if job.reconcile_since is not None:
                    plan.looked_up_first()
                    await put(job)
                    return
                group = plan.grouped(job.payload)
                if group is None:
                    await put(job)
                    return
                who = contact_identity(job.payload.get("contact"))
                if who in groups.get(group, {}):
                    await put_group(group)
                members = groups.setdefault(group, {})
                members[who] = job
                if len(members) >= BATCH_SIZE:
                    await put_group(group)
                elif len(groups) > 256:  # many distinct groups: send the oldest
                    await put_group(next(iter(groups)))

            async def put_group(group: str) -> None:
                jobs = list(groups.pop(group).values())
                plan.flushed(len(jobs))
                await put(jobs)

            # `bulksend reconcile` needs each key's campaign and contact; the
            # default keys (campaignId|email, campaignId|contact id) say it
            # themselves, so the target is stored only for custom keys.
            default_key = mapping.key_paths in (["campaignId", "contact.email"], ["campaignId", "contact"])
            target_of = _no_target if default_key else functools.partial(lookup_target,
                                                                          key_paths=mapping.key_paths)

            async def feed() -> None:
                queued = 0
                # Valid rows are claimed in the journal a chunk at a time (one
                # SELECT, one INSERT batch): a row's fate is then decided in
                # file order, exactly as if each were claimed alone.
                chunk: list[tuple[Outcome, Any]] = []

                async def decide() -> None:
                    nonlocal queued
                    records = journal.claim_many(
                        [(o.key, o.row, payload) for o, payload in chunk], target_of, skipped
                    )
                    for (outcome, payload), record in zip(chunk, records, strict=True):
                        if record is not None and record.run_id == journal.run_id:
                            outcome.status = DUPLICATE
                            outcome.error = f"same key as row {record.row} ({outcome.key}); not sent"
                            finish(outcome)
                            continue
                        _carry(outcome, record)
                        if config.dry_run:
                            outcome.status = READY
                            finish(outcome)
                            continue
                        previous = PENDING if record is None else record.status
                        if previous == SENT or stopping.is_set():
                            finish(outcome, carried=True)  # already sent (or stopping): no API call
                            continue
                        if config.only_failed and previous != FAILED:
                            finish(outcome, carried=True)
                            continue
                        if config.limit is not None and queued >= config.limit:
                            finish(outcome, carried=True)
                            continue
                        since = None
                        if previous in (INFLIGHT, UNKNOWN):
                            since = record.first_attempt_at if record is not None else ""
                        queued += 1
                        await enqueue(Job(outcome, payload, since, previous=previous))
                    chunk.clear()

                for i, row in enumerate(table.rows(start)):
                    if i % 256 == 255:
                        await asyncio.sleep(0)  # let workers and the commit run
                    outcome = Outcome(row=row.number, values=row.values)
                    mapped = mapping.apply(row)
                    if mapped.error is not None or mapped.key is None or mapped.payload is None:
                        outcome.status, outcome.error = INVALID, mapped.error or "invalid row"
                        if mapped.key is not None and _sent_before(outcome, mapped.key, journal):
                            finish(outcome, carried=True)  # no API call
                            continue
                        finish(outcome)
                        continue
                    outcome.key = mapped.key
                    outcome.payload = mapped.payload
                    chunk.append((outcome, mapped.payload))
                    if len(chunk) >= journal.CLAIM_CHUNK:
                        await decide()
                if chunk:
                    await decide()
                for group in list(groups):
                    await put_group(group)

            workers = [asyncio.create_task(worker(n)) for n in range(config.concurrency)]
            feeder = asyncio.create_task(feed())
            try:
                await _supervise(feeder, workers, queue, stopping, config.stop_grace, in_flight, stopped,
                                 unattempted, room)
            finally:
                summary.posts = sender.posts
                if config.batch and not config.dry_run and plan.describe():
                    summary.notes.append(plan.describe())
                for task in [feeder, *workers]:
                    task.cancel()
                await asyncio.gather(feeder, *workers, return_exceptions=True)
    except (AuthError, AbortError) as exc:
        summary.aborted = exc
        progress.event("abort", str(exc))
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        journal.commit()


async def _supervise(feeder: asyncio.Task[None], workers: list[asyncio.Task[None]],
                     queue: asyncio.Queue[Any], stopping: asyncio.Event, grace: float,
                     in_flight: dict[int, Any], stopped: Any, unattempted: Any,
                     room: asyncio.Event) -> None:
    """Wait for the feeder, then the workers. On a stop (signal) or an abort (a
    worker raised, e.g. on 401): no new request leaves, requests in flight get
    a bounded wait (none on abort), and every row still gets a line."""
    pending: set[asyncio.Task[None]] = {feeder, *workers}
    stop_wait = asyncio.create_task(stopping.wait())
    failure: BaseException | None = None

    async def close_queue() -> None:
        for _ in workers:
            await queue.put(None)

    # The end-of-queue markers go in from a task of their own: awaited here, a
    # full queue would hold the supervisor past a stop's grace period.
    closer: asyncio.Task[None] | None = None
    try:
        while pending:
            done, _ = await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop_wait}:
                pending.discard(task)
                if task.exception() is not None:
                    failure = task.exception()
                elif task is feeder:
                    closer = asyncio.create_task(close_queue())
                    pending.add(closer)
            if failure is not None or stopping.is_set():
                break
        else:
            return
    finally:
        stop_wait.cancel()
        if closer is not None:
            closer.cancel()
    stopping.set()
    if failure is None:
        deadline = time.monotonic() + grace
        while in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a dict, bounded
            await asyncio.sleep(0.05)
    # Taken first: a cancelled worker forgets its job. Whether each job's POST
    # is on the wire is read before the cancellation clears the flag.
    stuck = [job for item in in_flight.values() for job in (item if isinstance(item, list) else [item])]
    on_wire = [job.posting for job in stuck]
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for job, posting in zip(stuck, on_wire, strict=True):
        job.posting = posting
        stopped(job)
    in_flight.clear()
    # The feeder carries on without queuing (stopping is set): every remaining
    # row gets its line from the journal, and nothing more is sent.
    while not feeder.done():
        room.set()  # the workers are gone: this loop makes the room now
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, feeder}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            _finish_all(getter.result(), unattempted)
        else:
            getter.cancel()
    while not queue.empty():
        _finish_all(queue.get_nowait(), unattempted)
    if feeder.exception() is not None:
        raise feeder.exception()  # type: ignore[misc]
    if failure is not None:
        raise failure


def _finish_all(item: Any, unattempted: Any) -> None:
    for job in item if isinstance(item, list) else [item] if item is not None else []:
        unattempted(job)


def _rows_text(rows: list[int]) -> str:
    return ", ".join(str(r) for r in rows[:3]) + (", …" if len(rows) > 3 else "")


async def preflight(config: RunConfig, uses: Uses, progress: Progress) -> object:
    """Before the first POST: GET /team proves the key; GET /campaigns/{id}
    proves each campaign and the item ids the rows ask for (collect-api.md §6).
    Returns the team's time zone, GET /team's `tz` as answered (None if absent)."""
    from bulksend.client import Ambiguous, Client, NotSent, error_text

    problems: list[str] = []
    async with Client(config.api_url, config.api_key, timeout=config.timeout, concurrency=2) as client:
        try:
            for attempt in range(5):
                team = await client.call("GET", "/team")
                if team.status not in (429, 500, 502, 503, 504):
                    break
                await asyncio.sleep(min(team.retry_after or 2.0**attempt, config.max_pause))
            if team.status == 401:
                raise AuthError(
                    "the API key was refused (HTTP 401 on GET /team); nothing was sent",
                    hint="check COLLECT_API_KEY or --api-key-file",
                )
            if team.status != 200:
                raise AbortError(f"GET /team failed: {error_text(team)}; nothing was sent",
                                 hint="the API may be down: rerun the same command later")
            team_tz = team.body.get("tz") if isinstance(team.body, dict) else None
            for campaign, rows in sorted(uses.campaigns.items()):
                for attempt in range(5):
                    answer = await client.call("GET", f"/campaigns/{campaign}")
                    if answer.status not in (429, 500, 502, 503, 504):
                        break
                    await asyncio.sleep(min(answer.retry_after or 2.0**attempt, config.max_pause))
                if answer.status in (404, 400, 403):
                    problems.append(f"campaign {campaign!r} does not exist ({error_text(answer)}); "
                                    f"rows {_rows_text(rows)}")
                    continue
                if answer.status != 200 or not isinstance(answer.body, dict):
                    raise AbortError(f"GET /campaigns/{campaign} failed: {error_text(answer)}; "
                                     "nothing was sent", hint="rerun the same command later")
                # §6/§9: "an array of itemId"; campaign elements carry an `id`
                # and, per schema, an `itemId`. Either is sent as written; an
                # element's name is sent as its `id` (items.py, issue 15).
                catalogue = Catalogue.from_body(campaign, answer.body)
                uses.catalogues[campaign] = catalogue
                problems += _item_problems(catalogue, uses)
        except (NotSent, Ambiguous) as exc:
            raise AbortError(f"{exc}; nothing was sent",
                             hint="check --api-url and the network, then rerun") from None
    if problems:
        raise PreflightError(
            f"{config.contacts}: " + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "") + " — nothing was sent",
            hint=f"name an item by its element's id or its name, as listed; fix the file or {config.mapping}",
        )
    progress.event("preflight", f"key accepted; {len(uses.campaigns)} campaign(s) checked")
    return team_tz


def _item_problems(catalogue: Catalogue, uses: Uses) -> list[str]:
    """The items of ``uses`` that name no element of the catalogue's campaign, or
    several; the campaign's names are listed once, after its first problem."""
    problems = []
    for (campaign, item), rows in sorted(uses.items.items()):
        problem = catalogue.problem(item) if campaign == catalogue.campaign_id else None
        if problem is not None:
            problems.append(f"{problem.short}; rows {_rows_text(rows)}")
    if problems:
        problems[0] += f" (campaign {catalogue.title()} has: {catalogue.names_text()})"
    return problems


def resolve_results(contacts: str, results: str | None, dry_run: bool) -> Path:
    if results:
        path = Path(results)
    else:
        stem = "stdin" if contacts == "-" else Path(contacts).stem
        path = Path(f"{stem}-dry-run.csv" if dry_run else f"{stem}-results.csv")
    return path  # check_results_target() decides whether it may be written
