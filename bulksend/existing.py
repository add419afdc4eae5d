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

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bulksend.client import Ambiguous, Client, NotSent
from bulksend.errors import AbortError, InputError
from bulksend.lookup import (
    CALLS_PER_LOOK_UP,
    Found,
    campaign_requests,
    contact_identity,
    look_up,
    parse_time,
)
from bulksend.mapping import Mapping
from bulksend.reading import Mark, Table

if TYPE_CHECKING:
    from bulksend.journal import Journal
    from bulksend.progress import Progress
    from bulksend.sending import RateGate

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
        if await _first_run_campaign_is_empty(client, gate, mapping, journal, rows, result):
            return _checked(result, progress)
        await _check_new_rows(client, gate, table, mapping, journal, start, result)
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


async def _first_run_campaign_is_empty(client: Client, gate: RateGate, mapping: Mapping, journal: Journal,
                                       rows: int, result: Existing) -> bool:
    """A first run (the journal has attempted nothing) of a mapping with one
    campaign: every row is new, so when that campaign holds no request at all
    (the usual case), no row needs mapping here. True when that settles it."""
    if mapping.campaign_id is None or rows <= 0 or journal.attempted_any():
        return False
    index = await _list_campaign(client, gate, mapping.campaign_id, CALLS_PER_LOOK_UP * rows, result)
    return index is not None and not index


async def _check_new_rows(client: Client, gate: RateGate, table: Table, mapping: Mapping,
                          journal: Journal, start: Mark | None, result: Existing) -> None:
    """Map the rows, keep those the journal never attempted, and check them
    campaign by campaign (listing or per-row look-ups, whichever costs less)."""
    by_campaign: dict[str, list[NewRow]] = {}
    overflow = False
    for count, new in enumerate(new_rows(table, mapping, journal, start)):
        if count >= KEEP:
            overflow = True
            break
        by_campaign.setdefault(new.campaign, []).append(new)
    for campaign, rows in by_campaign.items():
        budget = None if overflow else CALLS_PER_LOOK_UP * len(rows)
        index = await _list_campaign(client, gate, campaign, budget, result)
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
                         result: Existing) -> dict[str, Found] | None:
    """The campaign's requests by contact (``email:…`` / ``id:…``), the oldest
    one kept for each; None when it would take more than ``budget`` calls."""
    spent = 0

    def on_call() -> None:
        nonlocal spent
        if budget is not None and spent >= budget:
            raise _OverBudget
        spent += 1
        result.calls += 1

    index: dict[str, Found] = {}
    try:
        async for request in campaign_requests(client, gate, campaign, on_call=on_call):
            contact = request.get("contact")
            if not isinstance(contact, dict):
                raise Ambiguous(f"a request of campaign {campaign} carries no contact")
            found = _as_found(request, contact)
            for who in (contact_identity(str(contact.get("_id") or "")),
                        contact_identity({"email": contact.get("email") or ""})):
                if who not in ("id:", "email:") and (who not in index or _older(found, index[who])):
                    index[who] = found
    except _OverBudget:
        return None
    return index


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
