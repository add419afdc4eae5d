"""``bulksend status RESULTS.csv``: where every sent request stands now (issue 14).

Every ``sent`` row of a results file holds its request's id. The statuses are
read by listing each campaign's requests, 100 a call, never with one GET per
row (collect-api.md §7, ``GET /requests?campaignId=&limit=100&offset=``): the
default listing, then ``filter=cancelled`` and ``filter=archived``, which it
hides (§6.3; lookup.campaign_requests). A listing stops as soon as every row
expected in that campaign has been seen, so a campaign that holds just the
file's 1,000 requests costs 10 calls; one that also holds 50,000 others costs
up to 500.

Which campaign a row was sent in comes from the send journal (``target``) or
from the default key (``campaignId|email``). A row whose campaign is not known,
or that its campaign's listings did not show (deleted, moved between two pages
while they were read), is read alone with ``GET /requests/{id}`` — at most
``MAX_SINGLE`` of them a run; the first such answer names a campaign, which is
then listed for the other rows of unknown campaign. A 404 there makes the row
``not-found`` (a deleted contact deletes its requests, §7).

Every call passes the same rate gate as ``send``, over one client; a read that
fails (a lost answer, a 5xx) is made again as collect/retry.py says. Ctrl-C and
SIGTERM (sending/stop.py) stop the reads at once and nothing is written: status
changes nothing on the server, so no call is worth waiting for.

Statuses use the list spelling of §7: ``pending``, ``completed``, ``due``,
``waiting``, ``archived``, ``cancelled``, ``error``, or a custom status of the team.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

from bulksend.collect.client import Ambiguous, Client, NotSent, error_text
from bulksend.collect.lookup import campaign_requests, gated_call, parse_time
from bulksend.collect.rategate import PATIENCE, RateGate
from bulksend.collect.retry import CALL_RETRY, RetryPolicy
from bulksend.common.errors import AbortError, BulksendError, ExitStatus
from bulksend.common.progress import Progress
from bulksend.sending.stop import StopRequest, stop_on_signals
from bulksend.store.journal import utc_now
from bulksend.store.runlock import RunLock, hold_output
from bulksend.store.tracked import SentRow, check_output, rewrite, sent_rows
from bulksend.store.world import refuse_rehearsal

NOT_FOUND = "not-found"  # GET /requests/{id} answered 404: deleted
MAX_SINGLE = 100  # GET /requests/{id} calls a run may make for rows the listings did not show
# The summary's order: what needs someone first.
_ORDER = ("due", "error", "pending", "waiting", "completed", "cancelled", "archived")


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as a listing or GET showed it: status (list spelling), dueDate, campaign."""

    status: str
    due_date: str
    campaign: str


@dataclass(slots=True)
class Tracked:
    """One sent row and its request's status (``""``: could not be read this run)."""

    row: int
    key: str
    who: str
    request_id: str
    status: str
    due_date: str


@dataclass
class StatusRun:
    """What ``status`` read: every sent row, the calls it took, when, and where it wrote."""

    results: Path
    output: Path
    read_at: str  # UTC ISO 8601
    calls: int
    rows: list[Tracked] = field(default_factory=list)
    api_url: str = ""  # where the statuses were read

    @property
    def counts(self) -> Counter[str]:
        return Counter(t.status or "unread" for t in self.rows)

    @property
    def overdue(self) -> list[Tracked]:
        """``due`` rows, and ``pending`` ones whose due date has passed; most
        overdue first. A ``due`` row whose due date is later than the read
        (``extended``: ``update --due-date`` moved it, and Collect's status
        has not followed) is not overdue (issue 27)."""
        now = parse_time(self.read_at)
        later = {t.request_id for t in self.extended}
        late = [t for t in self.rows if (t.status == "due" and t.request_id not in later) or (
            t.status == "pending" and now is not None and (parse_time(t.due_date) or now) < now)]
        return sorted(late, key=lambda t: (t.due_date or "9999", t.row))

    @property
    def extended(self) -> list[Tracked]:
        """``due`` rows whose due date is later than the time of the read."""
        now = parse_time(self.read_at)
        return [t for t in self.rows if t.status == "due" and now is not None
                and (when := parse_time(t.due_date)) is not None and when > now]

    def with_status(self, status: str) -> list[Tracked]:
        return [t for t in self.rows if t.status == status]


class Interrupted(BulksendError):
    """Ctrl-C or SIGTERM stopped ``status`` before the end: nothing was written (exit 130)."""

    exit_status = ExitStatus.INTERRUPTED


def order(counts: Counter[str]) -> list[str]:
    """Statuses in the summary's order: known ones, then custom ones, then the rest."""
    tail = ("unread", NOT_FOUND)
    custom = sorted(s for s in counts if s not in _ORDER and s not in tail)
    return [s for s in (*_ORDER, *custom, *tail) if counts[s]]


def track_file(results: Path, *, api_url: str, api_key: str, timeout: float, rate: float | None,
               progress: Progress, output: Path | None = None, retry: RetryPolicy = CALL_RETRY,
               stop: StopRequest | None = None, max_pause: float = 60.0, patience: float = PATIENCE,
               rehearsal: bool = False) -> StatusRun:
    """Read the status of every sent row's request and write it into the
    results (or ``output``): columns ``request_status``, ``due_date``,
    ``status_read_at`` (store/tracked.py). Every call passes one rate gate (``rate``
    a second; a 429 may pause it up to ``max_pause`` seconds, and ``patience``
    bounds a run of 429s: collect/rategate.py); a read that fails (a lost
    answer, a 5xx) is made again as ``retry`` says (collect/retry.py).
    ``rehearsal``: the file may be a rehearsal's (the demo, on its own sandbox).

    Raises ``ResultsError`` (exit 2: not a results file, a sent row without
    request id, an ``output`` that is not ours to write: not a plain file, or
    another run's results, with a journal), ``LockedError`` (a run holds the
    results, or ``output``: its lock is held until it is written),
    ``AuthError`` (401), ``AbortError`` (a listing that cannot be read once
    the retries are spent: exit 3, nothing written), ``QuotaError`` and
    ``PatienceError`` (exit 3) and ``Interrupted`` (exit 130) on Ctrl-C or
    SIGTERM (or ``stop``, from another thread): status changes nothing on the
    server, so no call is worth waiting for; the reads stop at once and
    nothing is written."""
    target = output or results
    if not rehearsal:
        refuse_rehearsal(results, "status")
    lock = RunLock(results)
    lock.acquire()
    held: RunLock | None = None
    try:
        rows, _ = sent_rows(results)
        if output is not None:
            check_output(output, results)
            held = hold_output(output, results)  # issue 25: never over another run's results
        run = StatusRun(results=results, output=target, read_at=utc_now(), calls=0, api_url=api_url)
        seen: dict[str, Seen] = {}
        if rows:
            reader = _Reader({r.request_id: r.campaign for r in rows}, retry, progress)
            reader.waits = (max_pause, patience)
            seen = _read(reader, api_url, api_key, timeout, rate, stop)
            run.calls = reader.calls
        run.rows = [_tracked(r, seen.get(r.request_id)) for r in rows]
        changes = {r.index: {"request_status": seen[r.request_id].status,
                             "due_date": seen[r.request_id].due_date,
                             "status_read_at": run.read_at}
                   for r in rows if r.request_id in seen}
        if changes or target != results:
            rewrite(results, target, changes)
        return run
    finally:
        if held is not None:
            held.release()
        lock.release()


def _read(reader: _Reader, api_url: str, api_key: str, timeout: float, rate: float | None,
          stop: StopRequest | None) -> dict[str, Seen]:
    """``reader``'s statuses. Raises ``Interrupted`` on a stop (Ctrl-C, SIGTERM, ``stop``)."""
    try:
        return asyncio.run(reader.run_with(api_url, api_key, timeout, rate, stop))
    except asyncio.CancelledError:
        if not reader.stopped_by:
            raise
        raise Interrupted(f"{reader.stopped_by}: stopped before every status was read; nothing was written",
                          hint="rerun the same command") from None


def _tracked(row: SentRow, seen: Seen | None) -> Tracked:
    return Tracked(row.row, row.key, row.who, row.request_id,
                   seen.status if seen else "", seen.due_date if seen else "")


class _Reader:
    """Reads the status of a set of requests: by campaign listings, then alone."""

    def __init__(self, wanted: dict[str, str], retry: RetryPolicy, progress: Progress) -> None:
        self.wanted = dict(wanted)  # request id -> campaign it is expected in ("": unknown)
        self.retry = retry
        self.progress = progress
        self.seen: dict[str, Seen] = {}
        self.listed: set[str] = set()
        self.calls = 0
        self.client: Client | None = None
        self.gate: RateGate | None = None
        self.stopping = asyncio.Event()  # set by Ctrl-C / SIGTERM
        self.stopped_by = ""  # the signal that stopped the reads ("Ctrl-C", "SIGTERM")
        self.waits = (60.0, PATIENCE)  # the gate's max_pause and patience, seconds

    async def run_with(self, api_url: str, api_key: str, wait: float, rate: float | None,
                       stop: StopRequest | None = None) -> dict[str, Seen]:
        """Read every status over one client and one gate. A stop cancels the
        reads at once (status changes nothing: no call is worth waiting for)."""
        self.gate = RateGate(rate, progress=self.progress, max_pause=self.waits[0], patience=self.waits[1])
        task = asyncio.current_task()
        assert task is not None

        def stopped(name: str) -> None:
            self.stopped_by = name
            task.cancel()

        try:
            async with Client(api_url, api_key, timeout=wait, concurrency=1) as self.client:
                with stop_on_signals(self.stopping, self.progress, stopped, stop):
                    await self.read()
        except (Ambiguous, NotSent) as exc:
            raise AbortError(f"could not read the requests' statuses: {exc}; nothing was written",
                             hint="check that the API answers at that address (--api-url names another), "
                             "then rerun the same command") from None
        return self.seen

    def _count(self) -> None:
        self.calls += 1

    def _left(self) -> list[str]:
        return [rid for rid in self.wanted if rid not in self.seen]

    async def read(self) -> None:
        singles = 0
        while left := self._left():
            campaigns = Counter(self.wanted[rid] for rid in left)
            todo = [c for c, _ in campaigns.most_common() if c and c not in self.listed]
            if todo:
                await self._list(todo[0])
                continue
            if singles >= MAX_SINGLE:
                return  # the rest stay unread this run (their columns are kept as they were)
            singles += 1
            # Read again after a lost answer or a 5xx, as the retry policy says.
            await self.retry.call(functools.partial(self._read_alone, left), (Ambiguous, NotSent))

    async def _read_alone(self, left: list[str]) -> None:
        """GET the first of ``left``; the campaign it names is listed next for
        the others of unknown campaign."""
        request_id = left[0]
        request = await self._get(request_id)
        if request is None:
            self.seen[request_id] = Seen(NOT_FOUND, "", self.wanted[request_id])
            return
        self._note(request)
        campaign = str(request.get("campaignId") or "")
        if campaign and campaign not in self.listed:
            for rid in left:  # the others of unknown campaign may well be there too
                if not self.wanted[rid]:
                    self.wanted[rid] = campaign

    async def _list(self, campaign: str) -> None:
        """List ``campaign`` until every row expected there is seen; a page not
        read is asked again as the retry policy says."""
        assert self.client is not None and self.gate is not None
        self.listed.add(campaign)
        expected = {rid for rid in self._left() if self.wanted[rid] == campaign}
        # An async generator (typed AsyncIterator by collect/lookup.py): closed on an early return.
        listing = cast("AsyncGenerator[dict[str, Any], None]",
                       campaign_requests(self.client, self.gate, campaign, on_call=self._count,
                                         retry=self.retry))
        async with contextlib.aclosing(listing):
            async for request in listing:
                self._note(request)
                expected.discard(str(request.get("_id")))
                if not expected:
                    return  # every row expected here is seen: no need for the rest

    def _note(self, request: dict[str, Any]) -> None:
        request_id = request.get("_id")
        if isinstance(request_id, str) and request_id in self.wanted and request_id not in self.seen:
            status = request.get("status")
            self.seen[request_id] = Seen(str(status) if status else "", str(request.get("dueDate") or ""),
                                         str(request.get("campaignId") or ""))

    async def _get(self, request_id: str) -> dict[str, Any] | None:
        """GET /requests/{id} through the gate: the request, or None on 404."""
        assert self.client is not None and self.gate is not None
        path = f"/requests/{quote(request_id, safe='')}"
        self.calls += 1
        answer = await gated_call(self.client, self.gate, "GET", path)
        if answer.status == 404:
            return None
        body = answer.body
        if answer.status == 200 and isinstance(body, dict) and body.get("_id") == request_id:
            return body
        raise Ambiguous(f"GET {path} answered {error_text(answer)}")


# -- what a person (or a scheduler) reads ------------------------------------------


def summary_lines(run: StatusRun, *, shown: int = 10, bar: str = "█", commands: bool = True) -> list[str]:
    """The glanceable summary: counts by status with a bar, overdue rows first,
    then the rows Collect could not send with the command that resends them
    (``commands`` False: without it, where the requests' sandbox is gone: the demo)."""
    counts = run.counts
    calls = f"{run.calls} call" + ("" if run.calls == 1 else "s")
    out = [f"{run.output}: {len(run.rows)} requests, read {run.read_at} in {calls}"]
    widest = max(counts.values(), default=1)
    for status in order(counts):
        size = max(1, math.ceil(30 * counts[status] / widest))
        label = {"due": "due (overdue)", "unread": "not read", NOT_FOUND: "not found"}.get(status, status)
        out.append(f"  {label:<16}{counts[status]:>6}  {bar * size}")
    late = run.overdue
    if late:
        out.append(f"overdue ({len(late)}), most overdue first:")
        out.extend(_row_line(t, f"due date {t.due_date}" if t.due_date else "") for t in late[:shown])
        out.extend(_more(len(late), shown))
    extended = run.extended
    if extended:
        out.append(f"due, but with a later due date now ({len(extended)}; extended): not overdue")
        out.extend(_row_line(t, f"due date {t.due_date}") for t in extended[:shown])
        out.extend(_more(len(extended), shown))
    failed = run.with_status("error")
    if failed:
        out.append(f"error: Collect could not send these ({len(failed)}):")
        out.extend(_row_line(t, "") for t in failed[:shown])
        out.extend(_more(len(failed), shown))
        if commands:
            out.append(f"  to send their message again: {resend_command(run.output, failed)}")
    if counts[NOT_FOUND]:
        where = run.api_url or "the API"
        out.append(f"not found ({counts[NOT_FOUND]}): {where} has no request with their ids: deleted in "
                   "Collect (deleting a contact deletes its requests), or sent to another API (--api-url)")
    if counts["unread"]:
        out.append(f"  {counts['unread']} requests could not be read this run; rerun to read them")
    return out


def bar_for(stream: IO[str]) -> str:
    """The bar's character: a block where the stream can write it, else ``#``."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "█".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "#"
    return "█"


def _row_line(t: Tracked, extra: str) -> str:
    return f"  row {t.row:<6} {t.who:<32} {t.status:<10} {extra}".rstrip()


def _more(total: int, shown: int) -> list[str]:
    return [f"  ... and {total - shown} more (--json lists them all)"] if total > shown else []


def resend_command(results: Path, rows: list[Tracked]) -> str:
    """Back to pending with the reopen message (§4: sent when the status returns to pending)."""
    import shlex

    numbers = ",".join(str(t.row) for t in sorted(rows, key=lambda t: t.row))
    return (f"bulksend update {shlex.quote(str(results))} --rows {numbers} "
            "--status pending --send-reopen-message")


def summary_json(run: StatusRun) -> dict[str, Any]:
    """The same for machines: counts, every overdue and error row, every row."""

    def rows(items: list[Tracked]) -> list[dict[str, Any]]:
        return [{"row": t.row, "key": t.key, "request_id": t.request_id, "status": t.status,
                 "due_date": t.due_date} for t in items]

    failed = run.with_status("error")
    return {
        "results": str(run.output), "read_at": run.read_at, "calls": run.calls,
        "requests": len(run.rows), "counts": {s: run.counts[s] for s in order(run.counts)},
        "overdue": rows(run.overdue), "extended": rows(run.extended), "error": rows(failed),
        "resend_error": resend_command(run.output, failed) if failed else None,
        "rows": rows(run.rows),
    }
