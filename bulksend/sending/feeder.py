"""The feeder: rows in file order → mapping → journal claim → jobs.

It is the only producer of the run's queue. Each row is mapped; an invalid row
is recorded at once. Valid rows are claimed in the journal a chunk at a time
(one SELECT, one INSERT batch), and each row's fate is then decided in file
order, exactly as if each were claimed alone: a duplicate of an earlier row, a
row an earlier run settled (carried, no API call), or a job for the workers.
With ``--batch``, jobs gather into groups (``Grouper``) before they are queued.

Rows this run leaves out (``--where``, ``--exclude``: sending/choosing.py) are
claimed too, with their reason, so that which row of a key is a duplicate does
not depend on the options: a row whose key an earlier row of this run holds is
a duplicate; one whose key an earlier run sent (or may have) keeps that record;
any other is recorded ``filtered`` or ``excluded``, its journal record as it was.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bulksend.collect.lookup import contact_identity, key_fields
from bulksend.common.outcome import (
    DUPLICATE,
    EXCLUDED,
    FAILED,
    FILTERED,
    INVALID,
    READY,
    SENT,
    UNKNOWN,
    Outcome,
)
from bulksend.sending.sender import BATCH_SIZE, BatchPlan, Job
from bulksend.store.journal import INFLIGHT, PENDING

if TYPE_CHECKING:
    from bulksend.mapping.compiled import Mapped, Mapping
    from bulksend.reading.table import Mark, Row, Table
    from bulksend.sending.choosing import Choice
    from bulksend.sending.recorder import Recorder
    from bulksend.settings import Mode
    from bulksend.store.checkpoints import Chain
    from bulksend.store.journal import Record

Put = Callable[[Job | list[Job]], Awaitable[None]]
# Why this run leaves a row out: (FILTERED or EXCLUDED, the results' error); None: it does not.
LeftOut = tuple[str, str] | None


def lookup_target(payload: dict[str, Any], key_paths: list[str] | None = None) -> str:
    """What reconciliation needs to find a row's request: campaign, contact,
    and the values of the key's other fields (matched by look-ups, collect/lookup.py)."""
    contact = payload.get("contact")
    who = contact if isinstance(contact, str) else (contact or {}).get("email", "")
    target: dict[str, Any] = {"campaignId": payload.get("campaignId", ""), "contact": who}
    fields = key_fields(payload, key_paths)
    if fields:
        target["key"] = fields
    return json.dumps(target)


def _no_target(payload: dict[str, Any]) -> str:
    return ""


def carry(outcome: Outcome, record: Record | None) -> None:
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


class Grouper:
    """``--batch``: rows gather by their request-level fields; a group leaves
    when it holds 50 contacts, and at the end of the input. A group never
    holds the same contact twice (a second one sends the group first), so the
    answer can be matched by contact without doubt (§5)."""

    def __init__(self, put: Put) -> None:
        self.put = put
        self.plan = BatchPlan()
        self.groups: dict[str, dict[str, Job]] = {}  # group -> contact identity -> job

    async def add(self, job: Job) -> None:
        if job.reconcile_since is not None:
            self.plan.looked_up_first()
            await self.put(job)
            return
        group = self.plan.grouped(job.payload)
        if group is None:
            await self.put(job)
            return
        who = contact_identity(job.payload.get("contact"))
        if who in self.groups.get(group, {}):
            await self._send(group)
        members = self.groups.setdefault(group, {})
        members[who] = job
        if len(members) >= BATCH_SIZE:
            await self._send(group)
        elif len(self.groups) > 256:  # many distinct groups: send the oldest
            await self._send(next(iter(self.groups)))

    async def flush(self) -> None:
        for group in list(self.groups):
            await self._send(group)

    async def _send(self, group: str) -> None:
        jobs = list(self.groups.pop(group).values())
        self.plan.flushed(len(jobs))
        await self.put(jobs)


@dataclass(frozen=True)
class Rows:
    """The rows a send reads: the input, the mapping that makes each a request,
    the checkpoint chain the run resumes from (None: the first row;
    store/checkpoints.py), which rows this run leaves out (None: none;
    sending/choosing.py), and the rows the check pass read from ``start``
    and kept (None: they are read again; sending/run.py, KEEP_CELLS)."""

    table: Table
    mapping: Mapping
    resume: Chain | None = None
    choice: Choice | None = None
    kept: list[Row] | None = None

    def read(self) -> Iterator[Row]:
        """The rows from ``start``: those kept, else read from the table."""
        return iter(self.kept) if self.kept is not None else self.table.rows(self.start)

    @property
    def start(self) -> Mark | None:
        """Where the reading starts: the last checkpoint's mark, or None."""
        return self.resume.last.mark if self.resume is not None else None

    @property
    def skipped(self) -> tuple[int, int] | None:
        """(row number, base run) up to which a checkpoint skipped rows, or None."""
        return (self.resume.last.number, self.resume.base_run) if self.resume is not None else None


class Feeder:
    """Turns the input's rows into claimed jobs; see the module's docstring.
    ``mode``: whether anything is sent (a dry run), which rows (only failed
    ones, a limit) and how (``--batch``)."""

    def __init__(self, mode: Mode, rows: Rows, recorder: Recorder, put: Put, stopping: asyncio.Event) -> None:
        self.mode = mode
        self.rows = rows
        self.mapping = mapping = rows.mapping
        self.journal = recorder.journal
        self.recorder = recorder
        self.put = put
        self.stopping = stopping
        self.skipped = rows.skipped  # (row number, base run) up to which a checkpoint skipped rows
        self.grouper = Grouper(put) if mode.batch else None
        self.queued = 0
        self.choice = rows.choice
        self.listed_sent: list[int] = []  # rows on a do-not-contact list that an earlier run sent
        # `bulksend reconcile` needs each key's campaign and contact; the default
        # keys (campaignId|email, campaignId|contact id) say it themselves, so the
        # target is stored only for custom keys.
        default_key = mapping.key_paths in (["campaignId", "contact.email"], ["campaignId", "contact"])
        self.target_of = _no_target if default_key else functools.partial(lookup_target,
                                                                           key_paths=mapping.key_paths)

    async def run(self) -> None:
        chunk: list[tuple[Outcome, Any, LeftOut]] = []
        for i, row in enumerate(self.rows.read()):
            if i % 256 == 255:
                await asyncio.sleep(0)  # let workers and the commit run
            outcome = Outcome(row=row.number, values=row.values)
            mapped = self.mapping.apply(row)
            left_out = None if self.choice is None else self._left_out(row.values, mapped)
            if left_out is not None and mapped.key is None:  # left out, and not even a key: nothing to keep
                outcome.status, outcome.error = left_out
                self.recorder.finish(outcome, carried=True)
                continue
            invalid = mapped.error is not None or mapped.key is None or mapped.payload is None
            if left_out is None and invalid:
                outcome.status, outcome.error = INVALID, mapped.error or "invalid row"
                carried = mapped.key is not None and self._sent_before(outcome, mapped.key)
                self.recorder.finish(outcome, carried=carried)  # carried: no API call
                continue
            assert mapped.key is not None
            outcome.key = mapped.key
            outcome.payload = mapped.payload
            chunk.append((outcome, mapped.payload, left_out))
            if len(chunk) >= self.journal.CLAIM_CHUNK:
                await self._decide(chunk)
                chunk = []
        if chunk:
            await self._decide(chunk)
        if self.grouper is not None:
            await self.grouper.flush()
        self._warn_listed_sent()

    def _left_out(self, cells: dict[str, str], mapped: Mapped) -> LeftOut:
        """Why this run leaves the row out, or None: outside --where (whatever
        it holds), or a valid row whose contact is on a do-not-contact list."""
        assert self.choice is not None
        why = self.choice.filtered(cells)
        if why is not None:
            return FILTERED, why
        if mapped.payload is not None:
            why = self.choice.excluded(mapped.payload)
            if why is not None:
                return EXCLUDED, why
        return None

    async def _decide(self, chunk: list[tuple[Outcome, Any, LeftOut]]) -> None:
        records = self.journal.claim_many(
            [(o.key, o.row, payload) for o, payload, _ in chunk], self._target, self.skipped
        )
        for (outcome, payload, left_out), record in zip(chunk, records, strict=True):
            job = self._job(outcome, payload, record, left_out)
            if job is None:
                continue
            self.queued += 1
            if self.grouper is not None:
                await self.grouper.add(job)
            else:
                await self.put(job)

    def _target(self, payload: Any) -> str:
        """The look-up target of a claimed row (a left-out one may have no payload)."""
        return "" if payload is None else self.target_of(payload)

    def _job(self, outcome: Outcome, payload: Any, record: Record | None, left_out: LeftOut = None,
             ) -> Job | None:
        """The row's job, or None once its line is written (duplicate, carried, held back, left out)."""
        mode = self.mode
        if record is not None and record.run_id == self.journal.run_id:
            outcome.status = DUPLICATE
            outcome.error = f"same key as row {record.row} ({outcome.key}); not sent"
            self.recorder.finish(outcome)
            return None
        carry(outcome, record)
        if left_out is not None:
            self._leave_out(outcome, left_out)
            return None
        if mode.dry_run:
            outcome.status = READY
            self.recorder.finish(outcome)
            return None
        previous = PENDING if record is None else record.status
        held = (
            previous == SENT  # already sent: no API call
            or self.stopping.is_set()
            or (mode.only_failed and previous != FAILED)
            or (mode.limit is not None and self.queued >= mode.limit)
        )
        if held:
            self.recorder.finish(outcome, carried=True)
            return None
        since = None
        if previous in (INFLIGHT, UNKNOWN):
            since = record.first_attempt_at if record is not None else ""
        return Job(outcome, payload, since, previous=previous)

    def _leave_out(self, outcome: Outcome, left_out: tuple[str, str]) -> None:
        """A row this run leaves out (its record carried): filtered or excluded;
        but sent, or unknown, when an earlier run sent it or may have: that
        record stands (the journal is not written either way)."""
        status, why = left_out
        if outcome.status == SENT:
            if status == EXCLUDED:
                self.listed_sent.append(outcome.row)
        elif outcome.status == UNKNOWN:
            outcome.error = f"{why}; an earlier run may have sent it: it is looked up before any resend"
        else:
            outcome.status, outcome.error = status, why
        self.recorder.finish(outcome, carried=True)

    def _warn_listed_sent(self) -> None:
        rows = self.listed_sent
        if rows:
            shown = ", ".join(str(r) for r in rows[:5]) + (", …" if len(rows) > 5 else "")
            text = (f"{len(rows)} row(s) on a do-not-contact list already had a request sent by an earlier "
                    f"run (rows {shown}): nothing more was sent to them")
            self.recorder.summary.warnings.append(text)
            self.recorder.progress.event("warning", text)

    def _sent_before(self, outcome: Outcome, key: str) -> bool:
        """A row refused only because its due date is now past (its key is known):
        when an earlier run sent it, or may have, it keeps that run's record rather
        than turning invalid. Fills the outcome and returns True in that case."""
        record = self.journal.get(key)
        if record is None or record.run_id == self.journal.run_id or record.status not in (
                SENT, INFLIGHT, UNKNOWN):
            return False
        outcome.key = key
        carry(outcome, record)
        return True
