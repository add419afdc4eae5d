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
import hashlib
import itertools
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulksend.collect.rategate import RateGate
from bulksend.common.errors import (
    AbortError,
    AuthError,
    BulksendError,
    InputError,
    UsageError,
)
from bulksend.common.outcome import DUPLICATE, INVALID, READY, Outcome, Summary
from bulksend.common.progress import Progress
from bulksend.mapping.compiled import Mapping
from bulksend.mapping.items import Catalogue
from bulksend.mapping.loading import load_mapping, mapping_from_dict
from bulksend.reading.sources import open_table
from bulksend.reading.table import Mark, Row, Table
from bulksend.sending.recorder import Recorder
from bulksend.sending.stop import StopRequest
from bulksend.settings import RunConfig
from bulksend.store import checkpoints
from bulksend.store.checkpoints import Chain, Tracker
from bulksend.store.journal import LOOKUP_NEW, Journal
from bulksend.store.results import (
    ResultsWriter,
    Seeded,
    check_results_target,
    journal_vouches,
    seed_journal_from_csv,
)
from bulksend.store.runlock import RunLock, journal_path, remove_journal
from bulksend.store.world import check_world

if TYPE_CHECKING:
    from bulksend.collect.client import Answer, Client
    from bulksend.sending.existing import Existing


class PreflightError(InputError):
    """A campaign or item the rows use does not exist: input error, nothing sent."""


def open_input(config: RunConfig) -> tuple[Table, Mapping]:
    if config.open_rows is not None:
        table = config.open_rows()
    else:
        table = open_table(
            config.contacts, sheet=config.sheet, encoding=config.encoding, delimiter=config.delimiter,
            header_row=config.header_row, include_hidden=config.include_hidden,
        )
    try:
        if config.mapping_doc is not None:
            mapping = mapping_from_dict(config.mapping_doc, config.mapping, table.columns,
                                        header=table.header)
        else:
            mapping = load_mapping(config.mapping, table.columns, header=table.header)
    except BaseException:
        table.close()
        raise
    return table, mapping


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
        summary.guesses = [*table.guesses(), *mapping.guesses()]
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
                check_world(journal, config.results, config.sandbox, fresh)
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


def _seeded_warning(path: Path, results: Path, seeded: Seeded, fresh: bool) -> str:
    what = "was missing" if fresh else (
        f"knew fewer rows than {results.name} (a copy without its -wal file, or an older one?)")
    return (f"{path.name} {what}: took {seeded.total} rows from {results.name} ({seeded.sent} sent, "
            f"{seeded.unknown} unknown, {seeded.failed} failed); unknown rows, and rows the journal never "
            f"met, are looked up before they are sent. Keep {results.name} with {path.name}, "
            f"{path.name}-wal and {path.name}-shm")


def send_file(config: RunConfig, progress: Progress, stop: StopRequest | None = None) -> Summary:
    """Run a send; ``stop``: how another thread stops it (else SIGINT/SIGTERM, main thread only)."""
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
        if summary.total == 0 and resume is None and not config.dry_run:
            _refuse_empty_input(config, table)
        if config.dry_run:
            _note_due_zone(mapping, progress)
            # A throwaway journal gives the dry run the same duplicate check.
            with tempfile.TemporaryDirectory(prefix="bulksend-") as tmp:
                journal = Journal(Path(tmp) / "dry-run.journal")
                try:
                    progress.event("input", table.describe())  # the encoding, delimiter... chosen
                    _note_guesses(table, mapping, progress)
                    return _run(config, table, mapping, journal, summary, progress, stop=stop)
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
            # One gate for every call of the run, the preflight's included (issue 18).
            gate = RateGate(config.rate, progress=progress, max_pause=config.max_pause)
            excluded = asyncio.run(_prepare(config, table, mapping, journal, uses, summary.total,
                                            resume.last.mark if resume else None, progress, gate))
            return _run(config, table, mapping, journal, summary, progress, resume, input_stat, excluded,
                        stop=stop, gate=gate)


async def _prepare(config: RunConfig, table: Table, mapping: Mapping, journal: Journal, uses: Uses,
                   rows: int, start: Mark | None, progress: Progress, gate: RateGate) -> set[str]:
    """Every call before the first POST, in one event loop over one client: the
    preflight, then the settling of unknown rows and the pre-send check.
    Returns the request ids that existed before the run."""
    from bulksend.collect.client import Client

    async with Client(config.api_url, config.api_key, timeout=config.timeout, concurrency=4) as client:
        # Rows are mapped for sending only from here on, in the team's zone (issue 17).
        mapping.use_team_zone(await preflight(config, uses, progress, gate, client=client))
        mapping.use_items(uses.catalogues)  # items named by name are sent as ids (issue 15)
        _note_due_zone(mapping, progress)
        progress.event("input", table.describe())  # the encoding, delimiter... chosen (issue 13)
        _note_guesses(table, mapping, progress)
        return await _before_sending(client, config, table, mapping, journal, rows, start, progress, gate)


async def _before_sending(client: Client, config: RunConfig, table: Table, mapping: Mapping,
                          journal: Journal, rows: int, start: Mark | None, progress: Progress,
                          gate: RateGate) -> set[str]:
    """Settle many unknown rows at once (settling.py), then the pre-send check
    (existing.py). Returns the request ids that existed before the run."""
    from bulksend.sending.existing import check_existing
    from bulksend.sending.settling import settle_unknown

    await settle_unknown(client, gate, journal, mapping.key_paths, progress)
    # With lookup_new (the journal knew less than the CSV), every row the
    # journal never met is looked up, at any time, before it is sent: a
    # request it finds is taken as this row's, which the check would only
    # have reported.
    if config.existing == "send" or config.only_failed or journal.lookup_new:
        return set()
    found = await check_existing(client, gate, table, mapping, journal, start, progress, rows=rows)
    return _existing(config, found, journal, progress)


def _existing(config: RunConfig, found: Existing, journal: Journal, progress: Progress) -> set[str]:
    """The pre-send check (existing.py): stop, or record the rows that already
    have a request as sent. Returns the request ids that existed before the run."""
    from bulksend.collect.lookup import iso_utc
    from bulksend.sending.existing import SKIPPED_NOTE, ExistingError, describe

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


def _refuse_empty_input(config: RunConfig, table: Table) -> None:
    """A file of no data rows where earlier runs recorded rows is most likely an
    export that failed upstream (issue 24): InputError (exit 2) before anything,
    results or journal, is changed. Read-only: no lock is held yet."""
    path = journal_path(config.results)
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
            f"{table.name}: has no data rows (header only), but {config.results} records {known} rows of"
            " earlier runs; nothing was sent and nothing changed",
            hint="an export that arrives empty usually failed upstream: check it, then rerun",
        )


def _note_guesses(table: Table, mapping: Mapping, progress: Progress) -> None:
    """Each choice made for the person, with its evidence (issue 24), as the check pass saw it."""
    for guess in (*table.guesses(), *mapping.guesses()):
        progress.event("guess", guess)


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
         input_stat: tuple[int, int, int] | None = None, excluded: set[str] | None = None,
         stop: StopRequest | None = None, gate: RateGate | None = None) -> Summary:
    writer = ResultsWriter(config.results, journal, table.columns, with_payload=config.dry_run)
    writer.open(keep=resume.last.results_offset if resume else 0)
    tracker = Tracker()
    started = time.monotonic()
    hard_stop = completed = False
    recorder = Recorder(journal, writer, summary, tracker, progress, dry_run=config.dry_run)
    try:
        # aiohttp is imported here, not at module level: validate and --help never need it.
        from bulksend.sending.pipeline import send_rows

        asyncio.run(send_rows(config, table, mapping, recorder, resume, excluded or set(), stop, gate))
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


def _rows_text(rows: list[int]) -> str:
    return ", ".join(str(r) for r in rows[:3]) + (", …" if len(rows) > 3 else "")


async def preflight(config: RunConfig, uses: Uses, progress: Progress,
                    gate: RateGate | None = None, client: Client | None = None) -> object:
    """Before the first POST: GET /team proves the key; GET /campaigns/{id}
    proves each campaign and the item ids the rows ask for (collect-api.md §6).
    All are asked at once (``client``: over this one, else a client of its
    own); every call passes the run's rate gate, so the server's burst they
    use is not mistaken for room later (issue 18). Errors are told as if the
    calls had been made one by one: a refused key (AuthError, exit 3) first.
    Returns the team's time zone, GET /team's `tz` as answered (None if absent)."""
    from bulksend.collect.client import Client, error_text

    if client is None:
        async with Client(config.api_url, config.api_key, timeout=config.timeout, concurrency=4) as own:
            return await preflight(config, uses, progress, gate, own)
    gate = gate or RateGate(config.rate, progress=progress, max_pause=config.max_pause)
    campaigns = sorted(uses.campaigns.items())
    team, *answers = await _preflight_gets(
        client, gate, config.max_pause, ["/team", *(f"/campaigns/{c}" for c, _ in campaigns)])
    team = _answered("/team", team)
    if team.status != 200:
        raise AbortError(f"GET /team failed: {error_text(team)}; nothing was sent",
                         hint="the API may be down: rerun the same command later")
    team_tz = team.body.get("tz") if isinstance(team.body, dict) else None
    problems: list[str] = []
    for (campaign, rows), got in zip(campaigns, answers, strict=True):
        answer = _answered(f"/campaigns/{campaign}", got)
        if answer.status in (404, 400, 403):
            problems.append(f"campaign {campaign!r} does not exist ({error_text(answer)}); "
                            f"rows {_rows_text(rows)}")
            continue
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise AbortError(f"GET /campaigns/{campaign} failed: {error_text(answer)}; "
                             "nothing was sent", hint="rerun the same command later")
        # §6/§9: "an array of itemId"; campaign elements carry an `id` and, per
        # schema, an `itemId`. Either is sent as written; an element's name is
        # sent as its `id` (items.py, issue 15).
        catalogue = Catalogue.from_body(campaign, answer.body)
        uses.catalogues[campaign] = catalogue
        problems += _item_problems(catalogue, uses)
    if problems:
        raise PreflightError(
            f"{config.contacts}: " + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "") + " — nothing was sent",
            hint=f"name an item by its element's id or its name, as listed; fix the file or {config.mapping}",
        )
    progress.event("preflight", f"key accepted; {len(uses.campaigns)} campaign(s) checked")
    return team_tz


async def _preflight_gets(client: Client, gate: RateGate, max_pause: float,
                          paths: list[str]) -> list[Answer | Exception]:
    """GET every path at once (``_get_answered``): each one's answer, or the
    error that stopped it, in ``paths``' order (see ``_answered``)."""
    from bulksend.collect.client import Ambiguous, NotSent

    async def get(path: str) -> Answer | Exception:
        try:
            return await _get_answered(client, gate, path, max_pause)
        except (NotSent, Ambiguous, BulksendError) as exc:
            return exc

    return list(await asyncio.gather(*(get(path) for path in paths)))


def _answered(path: str, got: Answer | Exception) -> Answer:
    """A preflight GET's answer, or its error raised as the run's: AuthError
    (exit 3) for a refused key, AbortError for a call not made or not read."""
    if isinstance(got, AuthError):
        raise AuthError(f"the API key was refused (HTTP 401 on GET {path}); nothing was sent",
                        hint="check COLLECT_API_KEY or --api-key-file") from None
    if isinstance(got, BulksendError):
        raise got
    if isinstance(got, Exception):
        raise AbortError(f"{got}; nothing was sent",
                         hint="check --api-url and the network, then rerun") from None
    return got


async def _get_answered(client: Client, gate: RateGate, path: str, max_pause: float) -> Answer:
    """A preflight GET through the gate (``lookup.gated_call``: 429s pause it,
    a quota-sized Retry-After stops the run); 5xx are retried a few times with
    backoff; any other answer is returned."""
    from bulksend.collect.lookup import gated_call

    answer = await gated_call(client, gate, "GET", path)
    for attempt in range(4):
        if answer.status not in (500, 502, 503, 504):
            break
        await asyncio.sleep(min(answer.retry_after or 2.0**attempt, max_pause))
        answer = await gated_call(client, gate, "GET", path)
    return answer


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
