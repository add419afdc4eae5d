"""Reconciliation: was a request for this row created? (collect-api.md §6)

There is no idempotency key, so a row whose POST may have reached the server
(a lost answer, a 5xx but 503, a 2xx without a request) is looked up before
anything is sent again. Only an answer that was read and understood in full can
say "not created": an HTML page, an object where a list belongs, a 404, a page
that could not be read to the end all leave the row ``unknown`` (``Ambiguous``).

What a look-up reads, and why:

* ``GET /requests?campaignId=&search=<email>``, every page (``limit`` ≤ 100),
  and again with ``filter=cancelled`` and ``filter=archived``, which the
  default listing hides (§6.3, §7): a request cancelled since still went out.
  ``search`` is a substring match across names, email and custom data, so each
  row is matched on the contact's exact email (case-insensitively) or id.
* ``GET /contacts/{id}`` for a row that names its contact by id: its embedded
  ``requests`` are capped at 50 and their order is not documented (§6.2), so
  they settle the question only when fewer than 50 came back; otherwise the
  contact's email is searched in the campaign as above.
* The time window: only requests created since the row's first attempt count,
  less an hour (``SKEW``). The server's clock is read from each answer's
  ``Date`` header (RFC 9110 §6.6.1), and the hour absorbs what that header
  cannot tell (a proxy's clock), so the window does not depend on two clocks
  agreeing to the minute.
* Custom keys: a request matches only when every key field that the server
  returns matches too (``dueDate``, the contact's names, custom ``data``); a
  key field the server does not return leaves the row unknown, saying why.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bulksend.collect.client import Ambiguous, Answer, Client, NotSent, error_text, key_refused, quota_reached

if TYPE_CHECKING:
    from bulksend.collect.rategate import RateGate
    from bulksend.collect.retry import RetryPolicy
    from bulksend.store.journal import Record

PAGE = 100  # GET /requests: limit is at most 100 (§7)
CALLS_PER_LOOK_UP = 1 + 2  # a look-up lists the default statuses, then the two hidden ones
MAX_PAGES = 200  # per listing: 20,000 matching requests; beyond, the answer is not "read in full"
HIDDEN = ("cancelled", "archived")  # statuses the default listing omits (§6.3)
EMBEDDED_CAP = 50  # GET /contacts/{id} embeds at most 50 requests (§6.2)

# A request created up to this long before our first attempt (on the server's
# clock as its Date header tells it) is still taken as ours. The Date header
# may come from a proxy whose clock is not the one that stamps `createdAt`, so
# the margin is wide: an hour. Requests that existed before the run are not
# what it guards against (the pre-send check, sending/existing.py, finds those, and
# their ids are excluded); it keeps a look-up from taking a request of last
# week for today's.
SKEW = dt.timedelta(hours=1)

# Key paths that name the campaign and the contact: every look-up matches them.
IDENTITY_PATHS = frozenset({"campaignId", "contact", "contact.email", "contact._id"})


def parse_time(text: str) -> dt.datetime | None:
    """Collect timestamps come as ``2022-07-04 07:20:06 UTC`` or ISO 8601 (§1)."""
    if not text:
        return None
    t = text.strip().replace(" UTC", "Z")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def iso_utc(text: str) -> str:
    """A Collect timestamp (§1: either format) as UTC ISO 8601 to the second; "" if unreadable."""
    when = parse_time(text)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else ""


@dataclass(frozen=True, slots=True)
class Found:
    """A request that a look-up found: its ``_id``, portal URL, contact id,
    ``createdAt`` and ``status`` as the server gave them."""

    request_id: str
    portal_url: str
    contact_id: str
    created_at: str
    status: str = ""


class TooMany(Ambiguous):
    """A listing holds more than ``MAX_PAGES`` pages: it cannot be read in full
    here (a caller with another way to ask, one contact at a time, takes it)."""


class Unmatchable(Ambiguous):
    """The row's key holds a field the server's answers do not carry: a
    look-up cannot tell this row's request from another's."""


def contact_identity(contact: Any) -> str:
    """How answers name a payload's contact: ``id:<contact id>`` or
    ``email:<lower-cased email>`` (a batch answer's, a campaign listing's)."""
    if isinstance(contact, str):
        return "id:" + contact
    if isinstance(contact, dict):
        return "email:" + str(contact.get("email", "")).lower()
    return ""


def key_fields(payload: dict[str, Any], key_paths: list[str] | None) -> dict[str, Any]:
    """The key's fields beyond campaign and contact, with the row's values:
    ``{"dueDate": "2026-12-31T23:59:00+01:00"}``. Empty for the default keys."""
    fields: dict[str, Any] = {}
    for path in key_paths or ():
        if path in IDENTITY_PATHS:
            continue
        value: Any = payload
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        fields[path] = value
    return fields


async def gated_call(client: Client, gate: RateGate, method: str, path: str, body: Any = None,
                     params: dict[str, str] | None = None,
                     on_send: Callable[[], None] | None = None) -> Answer:
    """One call through the run's gate, made again after each 429 (20 times at
    most); the answer tells the gate how it went. ``on_send()`` runs right
    before each time the call leaves (after the gate: update's write-ahead
    mark). Raises ``AuthError`` on 401, ``QuotaError`` on a Retry-After longer
    than ``--max-pause`` (as a POST does), ``Ambiguous`` when the 429s never
    stop, ``NotSent``/``Ambiguous`` as ``Client.call`` does."""
    for _ in range(20):
        sent = await gate.acquire()
        if on_send is not None:
            on_send()
        try:
            answer = await client.call(method, path, body, params)
        finally:
            gate.answered(sent)
        if answer.status == 429:
            if answer.retry_after is not None and answer.retry_after > gate.max_pause:
                raise quota_reached(answer.retry_after, gate.max_pause)
            gate.throttled(sent, answer.retry_after)
            continue
        if answer.status == 401:
            raise key_refused()
        if answer.status == 503:
            gate.unavailable(sent)
        else:
            gate.success(sent)
        return answer
    raise Ambiguous(f"{method} {path} kept being rate limited")


async def call_understood(client: Client, gate: RateGate, path: str,
                          params: dict[str, str] | None = None) -> Answer:
    """One look-up GET through the gate (``gated_call``): a 200, or ``Ambiguous``
    on anything else (a 404 included: a proxy's or a wrong URL's 404 does not
    say "not created"). Raises ``AuthError`` on 401."""
    answer = await gated_call(client, gate, "GET", path, params=params)
    if answer.status != 200:
        raise Ambiguous(f"look-up GET {path} answered {error_text(answer)}")
    return answer


def _list_of_dicts(answer: Answer, what: str) -> list[dict[str, Any]]:
    body = answer.body
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise Ambiguous(f"look-up {what}: the answer is not a list of requests ({type(body).__name__})")
    return body


async def campaign_requests(client: Client, gate: RateGate, campaign: str, search: str = "",
                            clock: ServerClock | None = None,
                            on_call: Callable[[], None] | None = None,
                            statuses: tuple[str | None, ...] = (None, *HIDDEN),
                            retry: RetryPolicy | None = None,
                            ) -> AsyncIterator[dict[str, Any]]:
    """Every request of ``campaign`` (matching ``search`` when given), in every
    status: the default listing (``None``), then each hidden status, page by
    page; ``statuses``: only these listings. ``on_call()`` runs before each call
    (it may raise to stop the listing). ``retry``: a page not read or not
    understood is asked again as it says (None: not asked again).

    Raises ``Ambiguous`` when any page is not understood, ``TooMany`` when
    there are more than ``MAX_PAGES`` pages of them."""
    for status in statuses:
        for page in range(MAX_PAGES):
            params = {"campaignId": campaign, "limit": str(PAGE), "offset": str(page * PAGE)}
            if search:
                params["search"] = search
            if status:
                params["filter"] = status
            read = functools.partial(_page, client, gate, campaign, params, clock, on_call)
            rows = await (read() if retry is None else retry.call(read, (Ambiguous, NotSent)))
            for row in rows:
                yield row
            if len(rows) < PAGE:
                break
        else:
            raise TooMany(f"more than {MAX_PAGES * PAGE} requests match in campaign {campaign}")


async def _page(client: Client, gate: RateGate, campaign: str, params: dict[str, str],
                clock: ServerClock | None, on_call: Callable[[], None] | None) -> list[dict[str, Any]]:
    """One page of a campaign's listing (``campaign_requests``)."""
    if on_call is not None:
        on_call()
    answer = await call_understood(client, gate, "/requests", params)
    if clock is not None:
        clock.observe(answer)
    return _list_of_dicts(answer, f"of campaign {campaign}")


class ServerClock:
    """The server's clock as its answers' ``Date`` headers tell it: the offset,
    in seconds, to add to this machine's time (0 until an answer said)."""

    def __init__(self) -> None:
        self.offset: float | None = None

    def observe(self, answer: Answer) -> None:
        if self.offset is None and answer.server_time is not None:
            self.offset = answer.server_time - time.time()

    def floor(self, since: str) -> dt.datetime | None:
        """The earliest ``createdAt`` a request made at local time ``since`` can carry."""
        local = parse_time(since)
        if local is None:
            return None
        return local + dt.timedelta(seconds=self.offset or 0.0) - SKEW


class _Matcher:
    """Decides, request by request, whether one is this row's."""

    def __init__(self, campaign: str, email: str, contact_id: str, fields: dict[str, Any],
                 floor: dt.datetime | None, taken: Callable[[str], bool]) -> None:
        self.campaign = campaign
        self.email = email.casefold()
        self.contact_id = contact_id
        self.fields = fields
        self.floor = floor
        self.taken = taken
        self.doubt = ""  # why a request that may be ours could not be ruled in or out

    def is_ours(self, request: dict[str, Any]) -> bool:
        contact = request.get("contact")
        contact = contact if isinstance(contact, dict) else {}
        who_id = str(contact.get("_id") or "")
        who_email = str(contact.get("email") or "").casefold()
        if not ((self.contact_id and who_id == self.contact_id) or (self.email and who_email == self.email)):
            return False
        if str(request.get("campaignId") or self.campaign) != self.campaign:
            return False
        request_id = request.get("_id")
        if not isinstance(request_id, str) or not request_id or self.taken(request_id):
            return False
        if self.floor is not None:
            created = parse_time(str(request.get("createdAt") or ""))
            if created is None:
                self.doubt = f"request {request_id} has no readable createdAt"
                return False
            if created < self.floor:
                return False
        return self._fields_match(request, request_id)

    def _fields_match(self, request: dict[str, Any], request_id: str) -> bool:
        for path, ours in self.fields.items():
            theirs = _server_value(request, path)
            if theirs is _MISSING:
                raise Unmatchable(
                    f"the key holds {path}, which Collect's look-ups do not return, so request "
                    f"{request_id} cannot be told apart from this row's; check it in Collect"
                )
            if not _same(path, ours, theirs):
                return False
        return True


_MISSING = object()


def _server_value(request: dict[str, Any], path: str) -> Any:
    """The value of a key path in a request as look-ups return it (§7): the
    request's own fields (``dueDate``, ``data``) and its embedded contact's."""
    if path == "dueDate":
        return request.get("dueDate", _MISSING)
    head, _, rest = path.partition(".")
    if head == "contact" and rest in ("firstName", "lastName", "company"):
        contact = request.get("contact")
        return contact.get(rest, _MISSING) if isinstance(contact, dict) else _MISSING
    if head == "data" and rest and isinstance(request.get("data"), dict):
        return request["data"].get(rest, _MISSING)
    return _MISSING


def _same(path: str, ours: Any, theirs: Any) -> bool:
    if path != "dueDate" or ours is None or theirs is None:
        return ours == theirs or (ours in (None, "") and theirs in (None, ""))
    return same_due(str(ours), str(theirs))


def same_due(ours: str, theirs: str) -> bool:
    """Whether the server's ``dueDate`` is the one we sent: the same instant
    to the minute, or for a bare day a time on that day in the team's zone
    (§9: 23:59 local in every example), anywhere from UTC-12 to UTC+14."""
    mine, server = parse_time(ours), parse_time(theirs)
    if mine is None or server is None:
        return ours == theirs
    if len(ours.strip()) == 10:
        return -14 * 3600 <= (server - mine).total_seconds() < 38 * 3600
    return abs((server - mine).total_seconds()) < 60


async def look_up(client: Client, gate: RateGate, payload: dict[str, Any], since: str | None, *,
                  key_paths: list[str] | None = None,
                  taken: Callable[[str], bool] = lambda request_id: False,
                  oldest: bool = False) -> Found | None:
    """Was a request for this payload's campaign and contact (and the rest of
    its key) created since ``since`` (local UTC ISO 8601; None: at any time)?

    Returns what was found, or None only when every answer was read and
    understood in full. ``taken(request_id)`` says a request already belongs
    to another row. ``oldest``: every answer is read and the oldest match
    (``createdAt``; the first met on a tie or an unreadable time) is returned,
    the rule the pre-send check applies in both its modes (existing.py);
    else the first match met. Raises ``Ambiguous`` (``Unmatchable`` for a key the
    server's answers cannot match) or ``NotSent`` when the question cannot be
    answered, and ``AuthError`` on 401."""
    campaign = str(payload.get("campaignId", ""))
    contact = payload.get("contact")
    clock = ServerClock()
    email, contact_id = "", ""
    if isinstance(contact, str):
        contact_id = contact
        answer = await call_understood(client, gate, f"/contacts/{contact}")
        clock.observe(answer)
        body = answer.body
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise Ambiguous(f"look-up GET /contacts/{contact}: the answer is not a contact with its requests")
        email = str(body.get("email") or "")
        embedded = body["requests"]
        fields = key_fields(payload, key_paths)
        if len(embedded) < EMBEDDED_CAP and not fields:
            matcher = _Matcher(campaign, "", contact_id, {}, clock.floor(since or ""), taken)
            return _pick(
                [dict(r, contact={"_id": contact_id}) for r in embedded if isinstance(r, dict)],
                matcher, contact_id, oldest)
        if not email:
            raise Ambiguous(f"contact {contact} has {len(embedded)} or more requests and no email "
                            "to search them by")
    else:
        email = str((contact or {}).get("email", "")) if isinstance(contact, dict) else ""
    matcher = _Matcher(campaign, email, contact_id, key_fields(payload, key_paths), None, taken)
    choice = _Choice(matcher, contact_id, oldest)
    async for request in campaign_requests(client, gate, campaign, email, clock):
        if matcher.floor is None and since:
            matcher.floor = clock.floor(since)
        if choice.offer(request):
            break
    return choice.result()


def older(a: Found, b: Found) -> bool:
    """Whether ``a`` was created before ``b`` (False when either time is unreadable)."""
    ta, tb = parse_time(a.created_at), parse_time(b.created_at)
    return ta is not None and tb is not None and ta < tb


def _pick(requests: list[dict[str, Any]], matcher: _Matcher, contact_id: str, oldest: bool) -> Found | None:
    """The first of ``requests`` that is ours (``oldest``: the oldest of them)."""
    choice = _Choice(matcher, contact_id, oldest)
    for request in requests:
        if choice.offer(request):
            break
    return choice.result()


class _Choice:
    """The request a look-up settles on among those it reads, in the order
    read: the first that is ours, or (``oldest``) the oldest of them."""

    def __init__(self, matcher: _Matcher, contact_id: str, oldest: bool) -> None:
        self.matcher = matcher
        self.contact_id = contact_id
        self.oldest = oldest
        self.mine: Found | None = None

    def offer(self, request: dict[str, Any]) -> bool:
        """Take ``request`` if it is ours; True when reading may stop (a first match is enough)."""
        if not self.matcher.is_ours(request):
            return False
        found = _found(request, self.contact_id)
        if self.mine is None or older(found, self.mine):
            self.mine = found
        return not self.oldest

    def result(self) -> Found | None:
        """What was found; None: not created. Ambiguous when nothing matched
        but a request could not be told ours or not."""
        if self.mine is None and self.matcher.doubt:
            raise Ambiguous(f"look-up could not tell: {self.matcher.doubt}")
        return self.mine


def _found(request: dict[str, Any], contact_id: str) -> Found:
    contact = request.get("contact")
    return Found(
        request_id=str(request.get("_id", "")),
        portal_url=str(request.get("portalUrl", "") or ""),
        contact_id=contact_id or (str(contact.get("_id", "") or "") if isinstance(contact, dict) else ""),
        created_at=str(request.get("createdAt", "") or ""),
        status=str(request.get("status", "") or ""),
    )


def payload_of_record(record: Record) -> dict[str, Any] | None:
    """The look-up needs the campaign, the contact (email or id) and the
    values of the key's other fields (run.lookup_target wrote them)."""
    if record.target:
        target = json.loads(record.target)
        who = str(target.get("contact", ""))
        contact: Any = {"email": who} if "@" in who else who
        payload: dict[str, Any] = {"campaignId": target.get("campaignId", ""), "contact": contact}
        for path, value in (target.get("key") or {}).items():
            *parents, leaf = path.split(".")
            node = payload
            for part in parents:
                child = node.get(part)
                node[part] = child = child if isinstance(child, dict) else {}
                node = child
            node[leaf] = value
        return payload
    parts = record.key.split("|")  # the default key: campaignId|email or campaignId|contact id
    if len(parts) == 2 and parts[0] and parts[1]:
        contact = {"email": parts[1]} if "@" in parts[1] else parts[1]
        return {"campaignId": parts[0], "contact": contact}
    return None
