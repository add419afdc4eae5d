"""On resume, settle many unknown rows with a few listings (issue 11, case 8).

A killed run leaves the rows whose POST may have left ``unknown`` (in flight
in the journal). Each is looked up before any resend; one at a time, that is
three calls a row (collect/lookup.py). When there are many, it is cheaper to list
their campaign once, 100 requests a call, and settle them all against it:
found, the row is ``sent`` with that request; not found (the listing read in
full), it is ``failed`` and the run sends it like any new row — in a batch,
with ``--batch``. A row the listing cannot settle (a key field the server does
not return, a ``createdAt`` it cannot read) stays unknown and takes the
one-by-one path, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bulksend.collect.client import Ambiguous, Client, NotSent
from bulksend.collect.lookup import (
    CALLS_PER_LOOK_UP,
    ServerClock,
    _found,
    _Matcher,
    campaign_requests,
    iso_utc,
    key_fields,
    payload_of_record,
)
from bulksend.common.outcome import FAILED, SENT, Outcome

if TYPE_CHECKING:
    from bulksend.collect.rategate import RateGate
    from bulksend.common.progress import Progress
    from bulksend.store.journal import Journal, Record

MIN_ROWS = 4  # below this, one look-up per row costs no more than a listing
NOT_CREATED = "looked up: no such request on the server, so it was not created; the next send sends it"


class _OverBudget(Exception):
    pass


@dataclass
class _Unknown:
    record: Record
    payload: dict[str, Any]


async def settle_unknown(client: Client, gate: RateGate, journal: Journal, key_paths: list[str] | None,
                         progress: Progress) -> int:
    """Settle the journal's unknown rows campaign by campaign, where a listing
    costs fewer calls than a look-up per row; returns how many were settled."""
    by_campaign: dict[str, list[_Unknown]] = {}
    for record in journal.unsettled():
        payload = payload_of_record(record)
        if payload is not None:
            by_campaign.setdefault(str(payload.get("campaignId", "")), []).append(_Unknown(record, payload))
    settled = 0
    for campaign, unknown in by_campaign.items():
        if len(unknown) < MIN_ROWS:
            continue
        clock = ServerClock()
        try:
            requests = await _list(client, gate, campaign, CALLS_PER_LOOK_UP * len(unknown), clock)
        except (_OverBudget, Ambiguous, NotSent):
            continue  # each row takes the one-by-one path
        settled += _settle_against(requests, unknown, campaign, clock, journal, key_paths)
    if settled:
        journal.commit()
        progress.event("reconciled", f"{settled} unknown row(s) settled from their campaigns' listings")
    return settled


async def _list(client: Client, gate: RateGate, campaign: str, budget: int,
                clock: ServerClock) -> list[dict[str, Any]]:
    spent = 0

    def on_call() -> None:
        nonlocal spent
        if spent >= budget:
            raise _OverBudget
        spent += 1

    return [r async for r in campaign_requests(client, gate, campaign, clock=clock, on_call=on_call)]


def _settle_against(requests: list[dict[str, Any]], unknown: list[_Unknown], campaign: str,
                    clock: ServerClock, journal: Journal, key_paths: list[str] | None) -> int:
    """Match each unknown row against a campaign's full listing."""
    holders = journal.holders([str(r.get("_id")) for r in requests if isinstance(r.get("_id"), str)])
    claimed: set[str] = set()
    settled = 0
    for row in unknown:
        record, payload = row.record, row.payload
        contact = payload.get("contact")
        email = str(contact.get("email", "")) if isinstance(contact, dict) else ""
        contact_id = contact if isinstance(contact, str) else ""
        fields = key_fields(payload, ["campaignId", "contact", *_target_paths(record)] if record.target
                            else key_paths)

        def taken(request_id: str, key: str = record.key) -> bool:
            return request_id in claimed or holders.get(request_id, key) != key

        matcher = _Matcher(campaign, email, contact_id, fields, clock.floor(record.first_attempt_at), taken)
        try:
            mine = next((r for r in requests if matcher.is_ours(r)), None)
        except Ambiguous:  # Unmatchable: a key field the listing does not carry
            continue
        if mine is None and matcher.doubt:
            continue
        outcome = Outcome(row=record.row, key=record.key, attempts=record.attempts,
                          http_status=record.http_status)
        if mine is None:
            outcome.status, outcome.error = FAILED, NOT_CREATED
        else:
            found = _found(mine, contact_id)
            claimed.add(found.request_id)
            outcome.status = SENT
            outcome.request_id, outcome.portal_url = found.request_id, found.portal_url
            outcome.contact_id, outcome.sent_at = found.contact_id, iso_utc(found.created_at)
        journal.record(outcome)
        settled += 1
    return settled


def _target_paths(record: Record) -> list[str]:
    import json

    return list((json.loads(record.target).get("key") or {}).keys())
