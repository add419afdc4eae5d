"""Before the first POST: do the rows this journal has not seen sent already
have a request in their campaign? (issue 10, case 6; issue 23)

A first run with a new results file, a lost journal, or colleagues who sent
some contacts from the Collect app: the journal cannot know those requests, and
sending again would email the customer twice (§4: a second POST creates a
second request). So every row the journal has not seen created (new, never
attempted, or ``failed``: the campaign may have gained a request since its
last answer) is checked against the campaign's requests, in every run and in
every status (a cancelled or archived request still went out), in as few calls
as possible:

* one look-up per row (3 calls: the default listing and the two hidden
  statuses, searched by the contact's email), or
* the whole campaign listed 100 at a time,

whichever costs fewer calls: the listing is read page by page and abandoned
for per-row look-ups once it has cost what they would, or once it holds more
requests than a listing may be read to (``lookup.MAX_PAGES``), whatever its size.
A run over a journal that has seen every row sent makes no call at all.

A request is a row's when it matches the row's key (issue 23, case 1): its
campaign, its contact, and every other key field the server returns
(``dueDate``, ``data.*``, the contact's names), as a look-up matches it
(lookup.py). When a contact has several, the oldest is the row's, in both
modes (case 10). A key field the server does not return leaves the row in
doubt: it stops the run, ``--skip-existing`` or not, since no one can tell
which row the request is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bulksend.collect.client import Ambiguous, Client, NotSent
from bulksend.collect.lookup import (
    CALLS_PER_LOOK_UP,
    HIDDEN,
    Found,
    TooMany,
    Unmatchable,
    _found,
    _Matcher,
    campaign_requests,
    contact_identity,
    key_fields,
    look_up,
    older,
)
from bulksend.common.errors import AbortError, InputError
from bulksend.mapping.compiled import Mapping
from bulksend.reading.table import Mark, Table

if TYPE_CHECKING:
    from bulksend.collect.rategate import RateGate
    from bulksend.common.progress import Progress
    from bulksend.store.journal import Journal

KEEP = 20_000  # new rows held in memory; beyond, the rows are read again to match
# Whether this run leaves a row out (its cells, its payload): --where, --exclude (sending/choosing.py).
LeftOut = Callable[[dict[str, str], dict[str, Any]], bool]


class ExistingError(InputError):
    """Rows unknown to the journal whose contacts already have a request in the
    campaign: the run stops before sending (exit 2) unless told what to do."""


@dataclass
class NewRow:
    """A valid row whose key the journal has not seen sent: its number, key,
    campaign, the payload's contact ({"email": ...} or an id), and its key's
    other fields with the row's values (``lookup.key_fields``)."""

    row: int
    key: str
    campaign: str
    contact: Any
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Existing:
    """What the check found: each row with the request that matches its key
    (the oldest), and the rows in doubt (row key -> why it cannot be told)."""

    found: list[tuple[NewRow, Found]] = field(default_factory=list)
    doubts: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    unlisted: set[str] = field(default_factory=set)  # campaigns found too long to list: looked up per row

    @property
    def request_ids(self) -> set[str]:
        return {f.request_id for _, f in self.found}


def new_rows(table: Table, mapping: Mapping, journal: Journal, start: Mark | None,
             only_failed: bool = False, left_out: LeftOut | None = None) -> Iterator[NewRow]:
    """The valid rows (first of each key) the journal has not seen sent and that
    may be sent (``Journal.unsent``; ``only_failed``: the failed ones; not
    those ``left_out(cells, payload)`` says this run leaves out: --where, --exclude)."""
    seen: set[str] = set()
    chunk: list[NewRow] = []

    def flush() -> Iterator[NewRow]:
        unsent = journal.unsent([r.key for r in chunk], only_failed=only_failed)
        yield from (r for r in chunk if r.key in unsent)
        chunk.clear()

    for row in table.rows(start):
        mapped = mapping.apply(row)
        if mapped.payload is None or mapped.key is None or mapped.key in seen:
            continue
        seen.add(mapped.key)
        payload = mapped.payload
        if left_out is not None and left_out(row.values, payload):
            continue
        campaign = str(payload.get("campaignId", ""))
        chunk.append(NewRow(row.number, mapped.key, campaign, payload.get("contact"),
                            key_fields(payload, mapping.key_paths)))
        if len(chunk) >= 500:
            yield from flush()
    if chunk:
        yield from flush()


@dataclass
class _Check:
    """One check's inputs: where it reads rows, and which journal says what was sent."""

    table: Table
    mapping: Mapping
    journal: Journal
    start: Mark | None
    only_failed: bool
    left_out: LeftOut | None = None

    def rows(self, campaign: str | None = None) -> Iterator[NewRow]:
        return (r for r in new_rows(self.table, self.mapping, self.journal, self.start, self.only_failed,
                                    self.left_out)
                if campaign is None or r.campaign == campaign)


async def check_existing(client: Client, gate: RateGate, table: Table, mapping: Mapping,
                         journal: Journal, start: Mark | None, progress: Progress,
                         rows: int = 0, only_failed: bool = False,
                         left_out: LeftOut | None = None) -> Existing:
    """Find the rows not seen sent whose key already has a request in its
    campaign (``rows``: how many rows the input has, for a first run's cost;
    ``only_failed``: the run sends failed rows only, so only those are checked;
    ``left_out(cells, payload)``: rows this run leaves out, not checked).

    Raises ``AbortError`` (exit 3) when the API cannot answer in full: a run
    that could not check must not send."""
    result = Existing()
    check = _Check(table, mapping, journal, start, only_failed, left_out)
    try:
        listed = await _first_run_listing(client, gate, mapping, journal, rows, result)
        if listed is not None and not any(listed.values()):
            return _checked(result, progress)
        await _check_new_rows(client, gate, check, result, listed or {})
    except (Ambiguous, NotSent) as exc:
        raise AbortError(
            f"could not check the campaign's existing requests before sending: {exc}; nothing was sent",
            hint="rerun the same command later: every row is checked before it is sent",
        ) from None
    return _checked(result, progress)


def _checked(result: Existing, progress: Progress) -> Existing:
    progress.event("existing", f"checked the rows this results file has not seen sent against the "
                               f"campaigns' requests ({result.calls} calls): {len(result.found)} already "
                               "have one")
    return result


Index = dict[str, list[dict[str, Any]]]  # a campaign's requests by contact (``email:…`` / ``id:…``)


async def _first_run_listing(client: Client, gate: RateGate, mapping: Mapping, journal: Journal,
                             rows: int, result: Existing) -> dict[str, Index] | None:
    """A first run (the journal has attempted nothing) of a mapping with one
    campaign: every row is new, so that campaign is listed before any row is
    mapped here. ``{campaign: its index}``: an empty index (the usual case)
    settles the check; a full one is matched against the rows without being
    listed again. None when this is not a first run, or when the listing would
    cost more than a look-up per row (or cannot be read in full)."""
    if mapping.campaign_id is None or rows <= 0 or journal.attempted_any():
        return None
    index = await _list_campaign(client, gate, mapping.campaign_id, CALLS_PER_LOOK_UP * rows, result)
    if index is None:  # every row is in it: listing it again for fewer rows would cost no less
        result.unlisted.add(mapping.campaign_id)
        return None
    return {mapping.campaign_id: index}


async def _check_new_rows(client: Client, gate: RateGate, check: _Check, result: Existing,
                          listed: dict[str, Index]) -> None:
    """Map the rows, keep those the journal has not seen sent, and check them
    campaign by campaign (listing or per-row look-ups, whichever costs less);
    a campaign in ``listed`` was listed already and is not listed again."""
    by_campaign: dict[str, list[NewRow]] = {}
    overflow = False
    for count, new in enumerate(check.rows()):
        if count >= KEEP:
            overflow = True
            break
        by_campaign.setdefault(new.campaign, []).append(new)
    claimed: set[str] = set()  # requests given to a row of this check: never to a second one
    for campaign, rows in by_campaign.items():
        budget = None if overflow else CALLS_PER_LOOK_UP * len(rows)
        index = listed[campaign] if campaign in listed else None if campaign in result.unlisted else (
            await _list_campaign(client, gate, campaign, budget, result))
        every: Iterable[NewRow] = rows if not overflow else check.rows(campaign)
        if index is None:  # a look-up per row costs less, or the listing is too long to read
            await _look_up_each(client, gate, every, result, _taken(check.journal, claimed))
        elif index:
            _match_listing(index, every, result, check.journal, claimed)


def _taken(journal: Journal, claimed: set[str]) -> Callable[[str, str], bool]:
    """Whether a request is another row's: given to one in this check, or held by another key."""
    def taken(key: str, request_id: str) -> bool:
        if request_id in claimed:
            return True
        holder = journal.holder_of(request_id)
        return holder is not None and holder != key
    return taken


def _match_listing(index: Index, rows: Iterable[NewRow], result: Existing, journal: Journal,
                   claimed: set[str]) -> None:
    """Match each row against a campaign's listed requests, by its key."""
    for chunk in _chunks(rows, 500):
        of_row = {new.key: index.get(contact_identity(new.contact), []) for new in chunk}
        candidates = [str(r.get("_id")) for requests in of_row.values() for r in requests]
        held = journal.holders(candidates) if candidates else {}
        for new in chunk:
            requests = of_row[new.key]
            if not requests:
                continue

            def taken(request_id: str, key: str = new.key, holders: dict[str, str] = held) -> bool:
                return request_id in claimed or holders.get(request_id, key) != key

            found, doubt = _oldest_match(new, requests, taken)
            _note(result, new, found, doubt, claimed)


def _chunks(rows: Iterable[NewRow], size: int) -> Iterator[list[NewRow]]:
    chunk: list[NewRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _note(result: Existing, new: NewRow, found: Found | None, doubt: str, claimed: set[str]) -> None:
    if found is None:
        return
    claimed.add(found.request_id)
    result.found.append((new, found))
    if doubt:
        result.doubts[new.key] = doubt


def _oldest_match(new: NewRow, requests: list[dict[str, Any]],
                  taken: Callable[[str], bool]) -> tuple[Found | None, str]:
    """The oldest request that matches the row's key, or (when none does for
    sure) the oldest one of its contact that a key field the listing does not
    carry leaves in doubt, with why."""
    contact = new.contact
    email = str(contact.get("email", "")) if isinstance(contact, dict) else ""
    contact_id = contact if isinstance(contact, str) else ""
    matcher = _Matcher(new.campaign, email, contact_id, new.fields, None, taken)
    mine: Found | None = None
    doubtful: Found | None = None
    doubt = ""
    for request in requests:
        try:
            ours = matcher.is_ours(request)
        except Unmatchable as exc:
            found = _found(request, contact_id)
            if doubtful is None or older(found, doubtful):
                doubtful, doubt = found, str(exc)
            continue
        if ours:
            found = _found(request, contact_id)
            mine = found if mine is None or older(found, mine) else mine
    if mine is not None:
        return mine, ""
    return doubtful, doubt


class _OverBudget(Exception):
    pass


async def _list_campaign(client: Client, gate: RateGate, campaign: str, budget: int | None,
                         result: Existing) -> Index | None:
    """The campaign's requests by contact, as listed; None when the listing
    would take more than ``budget`` calls, or holds more requests than a
    listing may be read to (``TooMany``: look-ups per row take over, whatever
    the number of rows). The listings of each status (§6.3: the default one
    hides cancelled and archived requests) are read at once, each page by page."""
    spent = 0

    def on_call() -> None:
        nonlocal spent
        if budget is not None and spent >= budget:
            raise _OverBudget
        spent += 1
        result.calls += 1

    async def listing(status: str | None) -> list[dict[str, Any]]:
        return [r async for r in campaign_requests(client, gate, campaign, on_call=on_call,
                                                   statuses=(status,))]

    try:
        async with asyncio.TaskGroup() as group:  # one failing listing cancels the others
            tasks = [group.create_task(listing(status)) for status in (None, *HIDDEN)]
    except BaseExceptionGroup as group_error:
        error = _first_error(group_error)
        if isinstance(error, _OverBudget | TooMany):
            return None
        raise error from None
    index: Index = {}
    for task in tasks:
        for request in task.result():
            _index_request(index, campaign, request)
    return index


def _first_error(group_error: BaseExceptionGroup) -> BaseException:
    """The error a listing raised, as if the listings had been read one by one:
    over budget or too many first (the check falls back to look-ups), then the first other."""
    errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
    over = [e for e in errors if isinstance(e, _OverBudget | TooMany)]
    return (over or errors or [group_error])[0]


def _index_request(index: Index, campaign: str, request: dict[str, Any]) -> None:
    """Add one listed request to the index, under its contact's id and email."""
    contact = request.get("contact")
    if not isinstance(contact, dict):
        raise Ambiguous(f"a request of campaign {campaign} carries no contact")
    for who in (contact_identity(str(contact.get("_id") or "")),
                contact_identity({"email": contact.get("email") or ""})):
        if who not in ("id:", "email:"):
            index.setdefault(who, []).append(request)


async def _look_up_each(client: Client, gate: RateGate, rows: Iterable[NewRow], result: Existing,
                        taken: Callable[[str, str], bool]) -> None:
    """One look-up per row, by its key, the oldest match kept (as a listing's);
    a key field the answers do not carry: the oldest request of its contact, in doubt."""
    claimed: set[str] = set()
    for new in rows:
        payload = {"campaignId": new.campaign, "contact": new.contact, **_nested(new.fields)}

        def mine(request_id: str, key: str = new.key) -> bool:
            return request_id in claimed or taken(key, request_id)

        doubt = ""
        try:
            found = await look_up(client, gate, payload, None, key_paths=list(new.fields), taken=mine,
                                  oldest=True)
        except Unmatchable as exc:
            result.calls += CALLS_PER_LOOK_UP
            doubt = str(exc)
            found = await look_up(client, gate, payload, None, taken=mine, oldest=True)
        result.calls += CALLS_PER_LOOK_UP
        _note(result, new, found, doubt, claimed)


def _nested(fields: dict[str, Any]) -> dict[str, Any]:
    """``{"data.model": "Clio"}`` -> ``{"data": {"model": "Clio"}}``: a payload's shape for look_up."""
    payload: dict[str, Any] = {}
    for path, value in fields.items():
        *parents, leaf = path.split(".")
        node = payload
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return payload


def describe(existing: Existing, contacts: str) -> str:
    """The stop message: how many rows, and a few of them with their requests."""
    shown = []
    for new, found in existing.found[:3]:
        who = new.contact.get("email", "") if isinstance(new.contact, dict) else new.contact
        doubt = existing.doubts.get(new.key)
        why = f"; cannot tell whether it is this row's: {doubt}" if doubt else ""
        shown.append(f"row {new.row} ({who}: request {found.request_id}, "
                     f"{found.status or 'status unknown'}{why})")
    more = f", and {len(existing.found) - 3} more" if len(existing.found) > 3 else ""
    return (f"{contacts}: {len(existing.found)} row(s) new to this results file already have a "
            f"request in their campaign: {'; '.join(shown)}{more}; nothing was sent")


SKIPPED_NOTE = ("already had request {id} ({status}) in this campaign before this run; "
                "not sent (--skip-existing)")
