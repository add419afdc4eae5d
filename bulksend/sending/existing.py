"""Before the first POST: do the rows this journal has never sent already have
a request in their campaign? (issue 10, case 6)

A first run with a new results file, a lost journal, or colleagues who sent
some contacts from the Collect app: the journal cannot know those requests, and
sending again would email the customer twice (§4: a second POST creates a
second request). So the rows the journal does not know are checked against the
campaign's requests — in every status: a cancelled or archived request still
went out — in as few calls as possible:

* one look-up per new row (3 calls: the default listing and the two hidden
  statuses, searched by the contact's email), or
* the whole campaign listed 100 at a time,

whichever costs fewer calls: the listing is read page by page and abandoned
for per-row look-ups once it has cost what they would. A run over a journal
that knows every row makes no call at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bulksend.collect.client import Ambiguous, Client, NotSent
from bulksend.collect.lookup import (
    CALLS_PER_LOOK_UP,
    HIDDEN,
    Found,
    campaign_requests,
    contact_identity,
    look_up,
    parse_time,
)
from bulksend.common.errors import AbortError, InputError
from bulksend.mapping.compiled import Mapping
from bulksend.reading.table import Mark, Table

if TYPE_CHECKING:
    from bulksend.collect.rategate import RateGate
    from bulksend.common.progress import Progress
    from bulksend.store.journal import Journal

KEEP = 20_000  # new rows held in memory; beyond, the rows are read again to match


class ExistingError(InputError):
    """Rows unknown to the journal whose contacts already have a request in the
    campaign: the run stops before sending (exit 2) unless told what to do."""


@dataclass
class NewRow:
    """A valid row whose key the journal has never attempted."""

    row: int
    key: str
    campaign: str
    contact: Any  # the payload's contact: {"email": ...} or an id


@dataclass
class Existing:
    """What the check found: each new row whose contact has a request already."""

    found: list[tuple[NewRow, Found]] = field(default_factory=list)
    calls: int = 0

    @property
    def request_ids(self) -> set[str]:
        return {f.request_id for _, f in self.found}


def new_rows(table: Table, mapping: Mapping, journal: Journal, start: Mark | None) -> Iterator[NewRow]:
    """The valid rows (first of each key) whose key the journal has never attempted."""
    seen: set[str] = set()
    chunk: list[NewRow] = []

    def flush() -> Iterator[NewRow]:
        known = journal.known([r.key for r in chunk])
        yield from (r for r in chunk if r.key not in known)
        chunk.clear()

    for row in table.rows(start):
        mapped = mapping.apply(row)
        if mapped.payload is None or mapped.key is None or mapped.key in seen:
            continue
        seen.add(mapped.key)
        payload = mapped.payload
        campaign = str(payload.get("campaignId", ""))
        chunk.append(NewRow(row.number, mapped.key, campaign, payload.get("contact")))
        if len(chunk) >= 500:
            yield from flush()
    if chunk:
        yield from flush()


async def check_existing(client: Client, gate: RateGate, table: Table, mapping: Mapping,
                         journal: Journal, start: Mark | None, progress: Progress,
                         rows: int = 0) -> Existing:
    """Find the new rows whose contact already has a request in its campaign
    (``rows``: how many rows the input has, for a first run's cost).

    Raises ``AbortError`` (exit 3) when the API cannot answer in full: a run
    that could not check must not send."""
    result = Existing()
    try:
        listed = await _first_run_listing(client, gate, mapping, journal, rows, result)
        if listed is not None and not any(listed.values()):
            return _checked(result, progress)
        await _check_new_rows(client, gate, table, mapping, journal, start, result, listed or {})
    except (Ambiguous, NotSent) as exc:
        raise AbortError(
            f"could not check the campaign's existing requests before sending: {exc}; nothing was sent",
            hint="rerun the same command later (--send-anyway sends without this check)",
        ) from None
    return _checked(result, progress)


def _checked(result: Existing, progress: Progress) -> Existing:
    progress.event("existing", f"checked the rows new to this results file against the campaigns' "
                               f"requests ({result.calls} calls): {len(result.found)} already have one")
    return result


Index = dict[str, Found]  # a campaign's requests by contact (``email:…`` / ``id:…``)


async def _first_run_listing(client: Client, gate: RateGate, mapping: Mapping, journal: Journal,
                             rows: int, result: Existing) -> dict[str, Index] | None:
    """A first run (the journal has attempted nothing) of a mapping with one
    campaign: every row is new, so that campaign is listed before any row is
    mapped here. ``{campaign: its index}``: an empty index (the usual case)
    settles the check; a full one is matched against the rows without being
    listed again. None when this is not a first run, or when the listing would
    cost more than a look-up per row."""
    if mapping.campaign_id is None or rows <= 0 or journal.attempted_any():
        return None
    index = await _list_campaign(client, gate, mapping.campaign_id, CALLS_PER_LOOK_UP * rows, result)
    return None if index is None else {mapping.campaign_id: index}


async def _check_new_rows(client: Client, gate: RateGate, table: Table, mapping: Mapping,
                          journal: Journal, start: Mark | None, result: Existing,
                          listed: dict[str, Index]) -> None:
    """Map the rows, keep those the journal never attempted, and check them
    campaign by campaign (listing or per-row look-ups, whichever costs less);
    a campaign in ``listed`` was listed already and is not listed again."""
    by_campaign: dict[str, list[NewRow]] = {}
    overflow = False
    for count, new in enumerate(new_rows(table, mapping, journal, start)):
        if count >= KEEP:
            overflow = True
            break
        by_campaign.setdefault(new.campaign, []).append(new)
    for campaign, rows in by_campaign.items():
        budget = None if overflow else CALLS_PER_LOOK_UP * len(rows)
        index = listed[campaign] if campaign in listed else await _list_campaign(
            client, gate, campaign, budget, result)
        if index is None:  # the listing would cost more than a look-up per row
            await _look_up_each(client, gate, rows, result)
        elif index:
            matched = rows if not overflow else _every_new_row(table, mapping, journal, start, campaign)
            for new in matched:
                who = contact_identity(new.contact)
                if who in index:
                    result.found.append((new, index[who]))


def _every_new_row(table: Table, mapping: Mapping, journal: Journal, start: Mark | None,
                   campaign: str) -> Iterator[NewRow]:
    return (r for r in new_rows(table, mapping, journal, start) if r.campaign == campaign)


class _OverBudget(Exception):
    pass


async def _list_campaign(client: Client, gate: RateGate, campaign: str, budget: int | None,
                         result: Existing) -> Index | None:
    """The campaign's requests by contact, the oldest one kept for each; None
    when it would take more than ``budget`` calls. The listings of each status
    (§6.3: the default one hides cancelled and archived requests) are read at
    once, each page by page; they are merged in that order."""
    spent = 0

    def on_call() -> None:
        nonlocal spent
        if budget is not None and spent >= budget:
            raise _OverBudget
        spent += 1
        result.calls += 1

    async def listing(status: str | None) -> Index:
        index: Index = {}
        async for request in campaign_requests(client, gate, campaign, on_call=on_call, statuses=(status,)):
            _index_request(index, campaign, request)
        return index

    try:
        async with asyncio.TaskGroup() as group:  # one failing listing cancels the others
            tasks = [group.create_task(listing(status)) for status in (None, *HIDDEN)]
    except BaseExceptionGroup as group_error:
        error = _first_error(group_error)
        if isinstance(error, _OverBudget):
            return None
        raise error from None
    index: Index = {}
    for task in tasks:
        for who, found in task.result().items():
            _keep_oldest(index, who, found)
    return index


def _first_error(group_error: BaseExceptionGroup) -> BaseException:
    """The error a listing raised, as if the listings had been read one by one:
    over budget first (the check falls back to look-ups), then the first other."""
    errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
    over = [e for e in errors if isinstance(e, _OverBudget)]
    return (over or errors or [group_error])[0]


def _index_request(index: Index, campaign: str, request: dict[str, Any]) -> None:
    """Add one listed request to the index: under its contact's id and email,
    unless an older request is there already."""
    contact = request.get("contact")
    if not isinstance(contact, dict):
        raise Ambiguous(f"a request of campaign {campaign} carries no contact")
    found = _as_found(request, contact)
    for who in (contact_identity(str(contact.get("_id") or "")),
                contact_identity({"email": contact.get("email") or ""})):
        if who not in ("id:", "email:"):
            _keep_oldest(index, who, found)


def _keep_oldest(index: Index, who: str, found: Found) -> None:
    """``found`` under ``who`` unless a request at least as old is there (the
    first one met wins a tie or an unreadable time)."""
    if who not in index or _older(found, index[who]):
        index[who] = found


def _older(a: Found, b: Found) -> bool:
    ta, tb = parse_time(a.created_at), parse_time(b.created_at)
    return ta is not None and tb is not None and ta < tb


def _as_found(request: dict[str, Any], contact: dict[str, Any]) -> Found:
    return Found(
        request_id=str(request.get("_id") or ""), portal_url=str(request.get("portalUrl") or ""),
        contact_id=str(contact.get("_id") or ""), created_at=str(request.get("createdAt") or ""),
        status=str(request.get("status") or ""),
    )


async def _look_up_each(client: Client, gate: RateGate, rows: list[NewRow], result: Existing) -> None:
    for new in rows:
        found = await look_up(client, gate, {"campaignId": new.campaign, "contact": new.contact}, None)
        result.calls += CALLS_PER_LOOK_UP
        if found is not None:
            result.found.append((new, found))


def describe(existing: Existing, contacts: str) -> str:
    """The stop message: how many rows, and a few of them with their requests."""
    shown = []
    for new, found in existing.found[:3]:
        who = new.contact.get("email", "") if isinstance(new.contact, dict) else new.contact
        shown.append(f"row {new.row} ({who}: request {found.request_id}, {found.status or 'status unknown'})")
    more = f", and {len(existing.found) - 3} more" if len(existing.found) > 3 else ""
    return (f"{contacts}: {len(existing.found)} row(s) new to this results file already have a request "
            f"in their campaign: {'; '.join(shown)}{more}; nothing was sent")


SKIPPED_NOTE = ("already had request {id} ({status}) in this campaign before this run; "
                "not sent (--skip-existing)")
