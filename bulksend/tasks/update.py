"""``bulksend update RESULTS.csv``: change many sent requests at once (issue 14).

Each chosen row's request gets one ``PATCH /request`` (collect-api.md §7):
``status`` (PATCH spelling: ``canceled``), ``dueDate``, ``assignedTo`` and the
message flags. Rows are chosen by their current status (``--where
status=pending``, as ``bulksend status`` last read it) or by row number
(``--rows 12,40-55``).

Exactly once, across kills (issue 23): every change is recorded in its own
journal, ``RESULTS.csv.updates`` (store/updates.py, beside the results; the send
journal is not touched), keyed by the change (the PATCH body without
``requestId``) and the request id, with what was sent and whether it may have
been applied: ``begun`` when a run takes the row up, ``sent`` right before its
PATCH leaves, then ``done`` or ``failed``. Every request is read before its
PATCH (the rows new to the journal through their campaigns' listings, 100 a
call; the others alone): one that belongs to another contact than the row's
gets none, nor one that shows the change already. A rerun of the same command
skips ``done`` rows without a call, unless a later change of the same field
was sent to that request since (then this change is new again: an undo of an
undo). A ``sent`` change that does not show is never sent again unless asked
(``--again``): the request's status may have moved since (a client who
submitted), and its PATCH may well have been applied. A change that shows in
neither status nor due date (an assignee alone) is sent again: setting the same
value twice changes nothing, and status messages are sent only on a change of
status (§4). When the journal was lost (moved away), the results file's
``last_update`` says which rows this change may have reached: they are treated
as ``sent``.

It runs as ``send`` does: every call through one rate gate (collect/rategate.py)
over one client, failed calls tried again as collect/retry.py says, and Ctrl-C
or SIGTERM stopping it gracefully (sending/stop.py: no new change; the PATCHes
on the wire get their answer, within a grace; a second signal stops at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from bulksend.collect.client import (
    CREATED,
    REFUSED,
    Ambiguous,
    Client,
    NotSent,
    error_text,
    read_created,
)
from bulksend.collect.lookup import campaign_requests, gated_call, same_due
from bulksend.collect.rategate import PATIENCE, RateGate
from bulksend.collect.retry import CALL_RETRY, RetryPolicy
from bulksend.collect.statuses import list_status, patch_status
from bulksend.common.errors import BulksendError, ResultsError, UsageError
from bulksend.common.progress import Progress
from bulksend.sending.stop import StopRequest, graceful, stop_on_signals
from bulksend.store.runlock import RunLock
from bulksend.store.tracked import SentRow, rewrite, sent_rows
from bulksend.store.updates import BEGUN, DONE, FAILED, SENT, Entry, UpdateJournal
from bulksend.store.world import refuse_rehearsal

FLAGS = ("sendCompletionMessage", "sendRejectionMessage", "sendReopenMessage")
# Tries per row (a check and a PATCH each) on 5xx, lost answers, connection errors:
# collect/retry.py's CALL_RETRY, 5 tries 1, 2, 4, 8 s apart, each times 0.5-1.5.
STOP_GRACE = 10.0  # seconds a graceful stop waits for the PATCHes on the wire, as send's default


def updates_path(results: Path) -> Path:
    """The update journal of a results file: ``RESULTS.csv.updates``."""
    return results.with_name(results.name + ".updates")


# -- the change ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What every chosen request gets: the PATCH /request body without its
    ``requestId`` (§7). ``status`` in PATCH spelling; ``due_date`` the ISO 8601
    instant sent (``--due-date`` read as the send's mapping reads dueDate:
    tasks/remembered.py)."""

    status: str | None = None
    due_date: str | None = None
    assign: str | None = None
    flags: tuple[tuple[str, bool], ...] = ()

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.status is not None:
            body["status"] = self.status
        if self.due_date is not None:
            body["dueDate"] = self.due_date
        if self.assign is not None:
            body["assignedTo"] = self.assign
        body.update(self.flags)
        return body

    @property
    def key(self) -> str:
        """The change's identity in the journal: its fields as canonical JSON."""
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """``status -> canceled, dueDate -> 2026-12-31`` (the flags after)."""
        parts = [f"{name} -> {value}" for name, value in self.fields().items() if name not in FLAGS]
        parts += [f"{name}={'true' if value else 'false'}" for name, value in self.flags]
        return ", ".join(parts)

    @property
    def visible(self) -> bool:
        """Whether a read of the request can show the change (its status or due
        date); an assignee alone cannot be seen, and setting it twice changes nothing."""
        return self.status is not None or self.due_date is not None

    def shows_in(self, request: dict[str, Any]) -> bool:
        """Whether ``request`` (as GET /requests/{id} returns it) already carries
        this change; False when none of its fields can be seen there."""
        visible = False
        if self.status is not None:
            listed = list_status(self.status, param="status", custom=frozenset({self.status}))
            if request.get("status") != listed:
                return False
            visible = True
        if self.due_date is not None:
            if not same_due(self.due_date, str(request.get("dueDate") or "")):
                return False
            visible = True
        return visible


def build_change(*, status: str | None, due_date: str | None, assign: str | None,
                 flags: dict[str, bool | None]) -> Change:
    """The change the options ask for, checked. ``due_date``: the instant to
    send, ISO 8601, as tasks/remembered.py reads and resolves ``--due-date``
    (checked there). Raises ``UsageError`` (exit 2) for an unknown status, an
    empty assignee, or no change at all."""
    if assign is not None and not assign.strip():
        raise UsageError("--assign: empty", hint="a user id or email of your team, or unset")
    change = Change(
        status=patch_status(status) if status is not None else None,
        due_date=due_date,
        assign=assign.strip() if assign is not None else None,
        flags=tuple((name, value) for name, value in flags.items() if value is not None),
    )
    if change.status is None and change.due_date is None and change.assign is None:
        raise UsageError("nothing to change",
                         hint="pass --status, --due-date or --assign (the message flags go with them)")
    return change


# -- the rows -----------------------------------------------------------------------


def parse_rows(text: str) -> tuple[range, ...]:
    """``12,40-55`` -> (range(12, 13), range(40, 56)): ranges, never a set of
    every number (issue 25: ``2-999999999`` is two numbers). Raises ``UsageError``."""
    ranges: list[range] = []
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        high = high if dash else low
        if not (_row_number(low) and _row_number(high)) or int(high) < int(low):
            raise UsageError(f"--rows {text!r}: {part!r} is not a row number or a range like 40-55",
                             hint="row numbers as the results file's row column shows them")
        ranges.append(range(int(low), int(high) + 1))
    return tuple(ranges)


def _row_number(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is True, and ``int("²")`` fails."""
    return text.isascii() and text.isdigit() and len(text) <= 18


@dataclass
class Selection:
    """Which rows ``update`` changes: by current status, by row number, or all sent rows."""

    statuses: list[str] | None = None
    rows: tuple[range, ...] | None = None  # parse_rows
    every: bool = False


def choose(results: Path, rows: list[SentRow], others: dict[int, str], selection: Selection) -> list[SentRow]:
    """The chosen sent rows. Raises ``UsageError`` (exit 2) for a row number
    that is not in the file or whose row has no request id, an unknown status,
    or ``--where`` on a file ``status`` never read."""
    if selection.rows is not None:
        known, chosen = {r.row for r in rows}, set[int]()
        for number in heapq.merge(*selection.rows):  # ascending, lazily: the first past the end stops it
            chosen.add(number)
            if number in others:
                status = others[number] or "empty"
                raise UsageError(f"{results}: row {number}: no request_id (status {status}): nothing changed",
                                 hint="choose rows whose status is sent")
            if number not in known:
                raise UsageError(f"{results}: no row {number}",
                                 hint="row numbers as its row column shows them")
        rows = [r for r in rows if r.row in chosen]
    if selection.statuses is not None:
        seen = frozenset(r.track["request_status"] for r in rows if r.track["request_status"])
        if not seen and rows:
            raise UsageError(f"{results}: no request_status yet: --where needs the statuses",
                             hint=f"run `bulksend status {results}` first")
        wanted = {list_status(name, param="--where", custom=seen) for name in selection.statuses}
        rows = [r for r in rows if r.track["request_status"] in wanted]
    return rows


# -- the run --------------------------------------------------------------------------


@dataclass
class Plan:
    """What ``update`` is about to do: the rows to change, those the journal
    says already have this change (``made``), and whether it was asked again."""

    results: Path
    change: Change
    todo: list[SentRow]
    made: list[SentRow]
    again: bool = False


@dataclass
class UpdateRun:
    """The journal's record of each row this run took up (request id -> Entry), and how it ended."""

    plan: Plan
    entries: dict[str, Entry] = field(default_factory=dict)
    interrupted: bool = False
    aborted: BulksendError | None = None

    @property
    def counts(self) -> Counter[str]:
        """By state: ``done``, ``failed``, ``begun`` (not sent), ``sent`` (may have been applied)."""
        return Counter(e.state for e in self.entries.values())


@contextlib.contextmanager
def update_session(results: Path) -> Iterator[UpdateJournal]:
    """Hold the results file's lock and open its update journal, from the plan
    to the last write (a send cannot start in between). Raises ``ResultsError``
    (no such file) and ``UsageError`` (a rehearsal's results: issue 23, case 5)."""
    if not results.exists():
        raise ResultsError(f"{results}: no such results file", hint="pass the results CSV a send wrote")
    refuse_rehearsal(results, "update")
    lock = RunLock(results)
    lock.acquire()
    try:
        journal = UpdateJournal(updates_path(results))
        try:
            yield journal
        finally:
            journal.close()
    finally:
        lock.release()


def plan_update(results: Path, journal: UpdateJournal, change: Change, selection: Selection,
                *, again: bool = False) -> Plan:
    """The chosen rows, split by what the journal says of this change: made
    (``done``, and no later change of the same field sent to that request since:
    an undo of an undo is a new change) or to do. ``again``: every chosen row is
    to do. Raises ``ResultsError``/``UsageError`` (exit 2) for a file or a
    choice that cannot be used."""
    rows, others = sent_rows(results)
    chosen = choose(results, rows, others, selection)
    made: list[SentRow] = []
    if not again:
        entries = journal.entries(change.key)
        done = [r for r in chosen if r.request_id in entries and entries[r.request_id].state == DONE]
        later = journal.superseded(change.key, [r.request_id for r in done])
        made = [r for r in done if r.request_id not in later]
    made_ids = {r.request_id for r in made}
    return Plan(results, change, [r for r in chosen if r.request_id not in made_ids], made, again)


def apply_plan(plan: Plan, journal: UpdateJournal, *, api_url: str, api_key: str, timeout: float,
               rate: float | None, concurrency: int, progress: Progress, retry: RetryPolicy = CALL_RETRY,
               grace: float = STOP_GRACE, stop: StopRequest | None = None, max_pause: float = 60.0,
               patience: float = PATIENCE) -> UpdateRun:
    """Make the plan's changes, then write every outcome into the results.

    Each call passes one rate gate (``rate`` a second), over one client with
    ``concurrency`` calls at once; a call that fails is tried again as
    ``retry`` says (collect/retry.py); a 429 may pause the gate ``max_pause``
    seconds, and ``patience`` bounds a run of 429s (collect/rategate.py).
    Stops on 401, a quota or no patience left (``aborted``, exit 3) and, as
    ``send`` does, on Ctrl-C / SIGTERM (``interrupted``; or ``stop``, from
    another thread): the first starts no new change and waits up to ``grace``
    seconds for the PATCHes on the wire, the next stops at once. What was done
    is written either way (``entries``: the journal's record of every row this
    run took up, counted from the journal, PATCHes cut by the stop included),
    and a rerun finishes the rest."""
    run = UpdateRun(plan)
    patcher = _Patcher(plan, journal, run, retry, progress)
    gate = functools.partial(RateGate, rate, progress=progress, max_pause=max_pause, patience=patience)
    try:
        asyncio.run(patcher.run(api_url, api_key, timeout, gate, concurrency, grace, stop))
    except (KeyboardInterrupt, asyncio.CancelledError):  # a second signal: stopped at once
        run.interrupted = True
    finally:
        entries = journal.entries(plan.change.key)
        run.entries = {rid: entries[rid] for rid in patcher.touched if rid in entries}
        write_outcomes(plan, journal, patcher.touched)
    return run


NOT_SENT_YET = "not confirmed (stopped before its answer); rerun the same command"
MAY_HAVE = ("may have been applied (stopped before its answer); rerun the same command: it reads the "
            "request back, and sends the change again only with --again")


def write_outcomes(plan: Plan, journal: UpdateJournal, touched: set[str] | None = None) -> None:
    """Each row's outcome into the results' tracking columns: the rows the
    journal says were made, and those this run took up (``touched``; None:
    every row to do)."""
    entries = journal.entries(plan.change.key)
    changes: dict[int, dict[str, str]] = {}
    todo = plan.todo if touched is None else [r for r in plan.todo if r.request_id in touched]
    for row in [*plan.made, *todo]:
        entry = entries.get(row.request_id)
        if entry is None:
            continue
        outcome = entry.outcome or (MAY_HAVE if entry.state == SENT else NOT_SENT_YET)
        values = {"last_update": f"{plan.change.describe()}: {outcome}",
                  "updated_at": entry.at}
        if entry.state == DONE and entry.status_after:
            values |= {"request_status": entry.status_after, "status_read_at": entry.at}
        changes[row.index] = values
    if changes:
        rewrite(plan.results, plan.results, changes)


def traced(row: SentRow, change: Change) -> bool:
    """Whether the results file says this change was made, or may have been,
    on the row (its ``last_update``): what is left when the journal that knew
    was moved away (issue 23, case 9)."""
    said = row.track["last_update"]
    prefix = f"{change.describe()}: "
    return said.startswith(prefix) and said[len(prefix):].startswith(
        ("done", "not confirmed", "may have been applied"))


def other_contact(row: SentRow, request: dict[str, Any]) -> str:
    """The contact the server says the request is for, when it is not the
    row's (by contact id, and by email, each where both sides know it); else ""."""
    contact = request.get("contact")
    contact = contact if isinstance(contact, dict) else {}
    their_id, their_email = str(contact.get("_id") or ""), str(contact.get("email") or "")
    if row.contact_id and their_id and row.contact_id != their_id:
        return their_email or their_id
    if row.email and their_email and row.email.casefold() != their_email.casefold():
        return their_email
    return ""


class _Stopped(Exception):
    """A stop was asked: this worker starts no new change (``_Patcher.stopping``)."""


class _Patcher:
    """The workers: each takes the next row, reads its request, PATCHes it if needed.

    Every row's request is read before its PATCH: the rows new to the journal
    through their campaigns' listings (100 a call, read once for all workers,
    ``_read_campaigns``), the others (and those the listings did not show)
    alone, ``GET /requests/{id}``. A request another contact's, or one that
    shows the change already, gets no PATCH; one whose earlier PATCH may have
    been applied (``sent``) and does not show it gets none either, unless
    asked (``--again``; never for a PATCH of this run)."""

    def __init__(self, plan: Plan, journal: UpdateJournal, run: UpdateRun, retry: RetryPolicy,
                 progress: Progress) -> None:
        self.plan = plan
        self.change = plan.change
        self.journal = journal
        self.run_state = run
        self.retry = retry
        self.progress = progress
        self.known = journal.entries(plan.change.key)
        journaled = set(self.known)  # the journal knows what left for these: the file's trace is not asked
        for rid in journal.superseded(plan.change.key, [r.request_id for r in plan.todo if r.request_id in
                                                         self.known]):
            del self.known[rid]  # a later change of the same field: this one is new again
        self.traced = {r.request_id for r in plan.todo
                       if r.request_id not in journaled and traced(r, plan.change)}
        self.queue = list(reversed(plan.todo))
        self.client: Client | None = None
        self.gate: RateGate | None = None
        self.stopping = asyncio.Event()  # a signal: no new change starts
        self.patching = 0  # PATCHes on the wire: a graceful stop waits for their answers
        self.seen: dict[str, dict[str, Any]] = {}  # requests read by the listings, not used yet
        self._listings: asyncio.Future[None] | None = None
        self.touched: set[str] = set()  # rows this run took up
        self.open: dict[str, Entry | None] = {}  # begun here, no PATCH left yet: their earlier record
        self.sent_here: set[str] = set()  # a PATCH of this run left for these

    async def run(self, api_url: str, api_key: str, wait: float, make_gate: Callable[[], RateGate],
                  concurrency: int, grace: float, stop: StopRequest | None) -> None:
        """The workers over one client and one gate, until the rows are done,
        a 401 (``aborted``) or a stop (``interrupted``: the rows begun whose
        PATCH never left get back what the journal held before)."""
        self.gate = make_gate()  # made in the loop

        def interrupted(name: str) -> None:
            self.run_state.interrupted = True
            self.progress.event("interrupt", graceful(name, work="changes", on_wire="PATCHes", grace=grace))

        try:
            async with Client(api_url, api_key, timeout=wait, concurrency=concurrency) as self.client:
                with stop_on_signals(self.stopping, self.progress, interrupted, stop):
                    await self._work(concurrency, grace)
            if self.stopping.is_set():
                for rid, earlier in self.open.items():
                    self.journal.restore(self.change.key, rid, earlier)
                    if earlier is None:
                        self.touched.discard(rid)
        except BulksendError as exc:  # 401: the key was refused
            self.run_state.aborted = exc

    async def _work(self, concurrency: int, grace: float) -> None:
        """Run the workers to the end; on a 401 stop them at once (raised); on
        a stop, wait up to ``grace`` seconds for the PATCHes on the wire, then
        stop the rest (a worker backing off or reading has nothing to wait for)."""
        workers = [asyncio.create_task(self._worker()) for _ in range(min(concurrency, len(self.queue)) or 1)]
        stopped = asyncio.create_task(self.stopping.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(workers)
            while pending and not self.stopping.is_set():
                done, pending = await asyncio.wait(pending | {stopped}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stopped)
                for task in done - {stopped}:
                    failure = task.exception()
                    if failure is not None:
                        raise failure
            deadline = time.monotonic() + grace
            while pending and self.patching and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.05)
        finally:
            tasks: list[asyncio.Future[Any]] = [*workers, stopped]
            if self._listings is not None:
                tasks.append(self._listings)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        try:
            while self.queue and not self.stopping.is_set():
                row = self.queue.pop()
                self.run_state.entries[row.request_id] = await self._apply(row)
        except _Stopped:
            return

    def _finish(self, row: SentRow, state: str, outcome: str, request: dict[str, Any] | None = None) -> Entry:
        status = str(request.get("status") or "") if request is not None else ""
        self.open.pop(row.request_id, None)
        return self.journal.finish(self.change.key, row.request_id, state, outcome, status)

    async def _apply(self, row: SentRow) -> Entry:
        """Make the change on one row's request, at most once (see the class's
        docstring), trying again as the retry policy says. Raises ``_Stopped``
        when a stop comes before the change is settled (the journal keeps what it knows)."""
        rid = row.request_id
        known = self.known.get(rid)
        doubt = rid in self.traced or (known is not None and known.state == SENT)
        if self.stopping.is_set():
            raise _Stopped
        self.open[rid] = self.journal.entry(self.change.key, rid)
        self.journal.begin(self.change.key, rid, row.row, doubt=doubt)
        self.touched.add(rid)
        started, failures = self.retry.clock(), 0
        while True:
            try:
                finished = await self._attempt(row, doubt)
            except (Ambiguous, NotSent) as exc:
                finished = str(exc)
            if isinstance(finished, Entry):
                return finished
            failures += 1
            current = self.journal.entry(self.change.key, rid)
            doubt = current is not None and current.state == SENT
            if not await self.retry.again(failures, started):
                self.open.pop(rid, None)
                return self.journal.note(self.change.key, rid,
                                         f"not confirmed ({finished}); rerun the same command to finish it")

    async def _attempt(self, row: SentRow, doubt: bool) -> Entry | str:
        """One try: read the request, then (when it needs it) the PATCH; its
        Entry, or why not (to try again)."""
        rid = row.request_id
        if not row.email and not row.contact_id:  # nothing to check the server's contact against
            return self._finish(row, FAILED, f"cannot tell this row's contact from the results file (key "
                                             f"{row.key}; its send journal would say): not changed")
        current = await self._current(row)
        if current is None:
            return self._finish(row, FAILED, "HTTP 404: request not found")
        other = other_contact(row, current)
        if other:
            return self._finish(row, FAILED, f"the server says request {rid} is {other}'s, not this row's "
                                             f"({row.who}): not changed")
        if self.change.shows_in(current):
            return self._finish(row, DONE, "done" if doubt or rid in self.sent_here
                                else "done (it showed already: no PATCH sent)", current)
        if doubt and self.change.visible and (not self.plan.again or rid in self.sent_here):
            self.open.pop(rid, None)
            status = current.get("status") or "unknown"
            return self.journal.note(self.change.key, rid, (
                f"may have been applied (a PATCH left; the request shows status {status} now): not sent "
                "again, --again sends it"))
        if self.stopping.is_set():
            raise _Stopped
        return await self._patch(row, str(current.get("status") or ""))

    async def _current(self, row: SentRow) -> dict[str, Any] | None:
        """The row's request as the server has it now (None: 404): from the
        campaigns' listings for a row new to the journal, else ``GET /requests/{id}``."""
        rid = row.request_id
        if rid not in self.known and rid not in self.traced and rid not in self.sent_here:
            if self._listings is None:
                self._listings = asyncio.ensure_future(self._read_campaigns())
            await asyncio.shield(self._listings)
            if rid in self.seen:
                return self.seen.pop(rid)
        if self.stopping.is_set():
            raise _Stopped
        return await self._get(rid)

    async def _read_campaigns(self) -> None:
        """Read the requests of the rows new to the journal through their
        campaigns' listings (``lookup.campaign_requests``, every status), each
        until its rows are seen or it has cost a call per row (a GET each costs
        no more); a listing that cannot be read leaves its rows to their GETs."""
        assert self.client is not None and self.gate is not None
        wanted: dict[str, set[str]] = {}
        for r in self.plan.todo:
            if r.campaign and r.request_id not in self.known and r.request_id not in self.traced:
                wanted.setdefault(r.campaign, set()).add(r.request_id)
        for campaign, expected in wanted.items():
            listing = cast("AsyncGenerator[dict[str, Any], None]", campaign_requests(
                self.client, self.gate, campaign, on_call=_budget(len(expected)), retry=self.retry))
            with contextlib.suppress(_OverBudget, Ambiguous, NotSent):
                async with contextlib.aclosing(listing):
                    async for request in listing:
                        rid = request.get("_id")
                        if isinstance(rid, str) and rid in expected:
                            self.seen[rid] = request
                            expected.discard(rid)
                            if not expected:
                                break

    def _leaving(self, row: SentRow, before: str) -> None:
        """Right before the PATCH leaves (after the gate): ``sent``, committed."""
        self.journal.sending(self.change.key, row.request_id, before)
        self.sent_here.add(row.request_id)
        self.open.pop(row.request_id, None)

    async def _patch(self, row: SentRow, before: str) -> Entry | str:
        """One PATCH: its Entry when the answer settles it, else why not (retry)."""
        body = {"requestId": row.request_id, **self.change.fields()}
        if self.stopping.is_set():
            raise _Stopped
        assert self.client is not None and self.gate is not None
        self.patching += 1
        try:
            answer = await gated_call(self.client, self.gate, "PATCH", "/request", body,
                                      on_send=functools.partial(self._leaving, row, before))
        except (NotSent, BulksendError):  # never reached the server, or answered 401 / a quota's 429
            self.journal.not_sent(self.change.key, row.request_id)
            raise
        finally:
            self.patching -= 1
        if answer.status == 503:  # §2: offline for maintenance, nothing processed
            self.journal.not_sent(self.change.key, row.request_id)
            return error_text(answer)
        verdict, request, text = read_created(answer)
        if verdict == CREATED and request is not None:
            return self._finish(row, DONE, f"done; the server also said: {text}"[:300] if text else "done",
                                request)
        if verdict == REFUSED:
            return self._finish(row, FAILED, text)
        return text  # may have been applied: the next try reads it back first

    async def _get(self, request_id: str) -> dict[str, Any] | None:
        answer = await self._call("GET", f"/requests/{quote(request_id, safe='')}")
        if answer.status == 404:
            return None
        if answer.status == 200 and isinstance(answer.body, dict):
            return answer.body
        raise Ambiguous(f"GET /requests/{request_id} answered {error_text(answer)}")

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One call through the gate, again after each 429; 401 ends the run."""
        assert self.client is not None and self.gate is not None
        return await gated_call(self.client, self.gate, method, path, body)


class _OverBudget(Exception):
    """A campaign's listing has cost a call per row: its other rows are read alone."""


def _budget(calls: int) -> Callable[[], None]:
    """An ``on_call`` for a listing that may make ``calls`` calls (``_OverBudget`` after)."""
    left = calls

    def on_call() -> None:
        nonlocal left
        if left <= 0:
            raise _OverBudget
        left -= 1

    return on_call


# -- what a person reads ----------------------------------------------------------------


def plan_lines(plan: Plan, *, shown: int = 20) -> list[str]:
    """The confirmation: what will change, on which rows (the first ``shown``)."""
    count = len(plan.todo)
    noun = "request" if count == 1 else "requests"
    out = [f"{plan.results}: {count} {noun} will change: {plan.change.describe()}"]
    for row in plan.todo[:shown]:
        now = row.track["request_status"] or "?"
        out.append(f"  row {row.row:<6} {row.who:<32} {now:<10} request {row.request_id}")
    if len(plan.todo) > shown:
        out.append(f"  ... and {len(plan.todo) - shown} more")
    if plan.made:
        out.append(f"  {len(plan.made)} more already have this change (an earlier run): not changed again")
    return out


def run_lines(run: UpdateRun, *, shown: int = 10) -> list[str]:
    """The outcome, as the journal records it: counts (a PATCH cut by a stop
    counts as not confirmed, and says it may have been applied), the rows that
    failed or are not confirmed, what to do next."""
    counts = run.counts
    made = f" ({len(run.plan.made)} already made earlier)" if run.plan.made else ""
    doubt = f" ({counts[SENT]} may have been applied)" if counts[SENT] else ""
    out = [f"update: {counts[DONE]} changed, {counts[FAILED]} failed, "
           f"{counts[BEGUN] + counts[SENT]} not confirmed{doubt}{made}"]
    rows = {r.request_id: r for r in run.plan.todo}
    problems = [(rows[rid], e) for rid, e in run.entries.items() if e.state != DONE and rid in rows]
    for row, entry in sorted(problems, key=lambda p: p[0].row)[:shown]:
        state = "failed" if entry.state == FAILED else "not confirmed"
        outcome = entry.outcome or (MAY_HAVE if entry.state == SENT else NOT_SENT_YET)
        out.append(f"  row {row.row}: {state}: {outcome}")
    out.append(f"results: {run.plan.results} (columns last_update, updated_at, request_status)")
    unsettled = counts[BEGUN] + counts[SENT]
    if run.interrupted or run.aborted is not None or unsettled or len(run.entries) < len(run.plan.todo):
        out.append("rerun the same command to finish: no change is made twice")
    return out
