"""The look-ups (§6, §7): what each GET answers, computed from the store; no HTTP.

Each function takes the store and the call's parameters (a query's mapping of
strings, or an id) and returns the JSON-able answer, or raises ``Invalid`` (400 for
a bad parameter, 404 for an unknown id). Those on requests first move requests on
(``Store.advance``), so a client sees them progress between two calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bulksend.sandbox.bodies import Invalid, page
from bulksend.sandbox.catalogue import ELEMENT_KINDS, TEAM, USERS, derived_id
from bulksend.sandbox.records import Contact, search_text
from bulksend.sandbox.store import Store

__all__ = [
    "campaign",
    "campaigns_page",
    "contact_detail",
    "contacts_page",
    "request_detail",
    "requests_page",
    "team",
    "users",
]

_MAX_EMBEDDED_REQUESTS: Final = 50  # §6: GET /contacts/{id}
_HIDDEN_BY_DEFAULT: Final = frozenset({"cancelled", "archived", "draft"})  # §6 step 3
_CONTACT_SORTS: Final[dict[str, tuple[str, bool]]] = {  # §7 GET /contacts `sort`
    "fnAsc": ("firstName", False),
    "fnDesc": ("firstName", True),
    "lnAsc": ("lastName", False),
    "lnDesc": ("lastName", True),
    "emAsc": ("email", False),
    "emDesc": ("email", True),
    "tagAsc": ("tag", False),
    "tagDesc": ("tag", True),
}


def requests_page(store: Store, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET /requests (§6): one campaign's requests, most recent first, one page.

    ``campaignId`` is required; ``filter`` a status (empty: every status; absent:
    all but cancelled, archived and draft); ``search`` a text in the contact's
    names, email and custom data; ``offset`` and ``limit`` as in §3.
    """
    campaign_id = query.get("campaignId")
    if not campaign_id:
        raise Invalid(400, "campaignId query parameter is required")
    if campaign_id not in store.campaigns:
        raise Invalid(404, f"campaign {campaign_id} not found")
    offset, limit = page(query)
    store.advance()
    status = query.get("filter")
    search = query.get("search", "").casefold()
    rows: list[dict[str, Any]] = []
    skipped = 0
    for found in reversed(store.by_campaign[campaign_id]):  # most recent first
        if status is not None and status != "" and found.status != status:
            continue
        if not status and found.status in _HIDDEN_BY_DEFAULT:
            continue
        if search and not any(search in text.casefold() for text in search_text(found)):
            continue
        if skipped < offset:
            skipped += 1
            continue
        rows.append(found.current_json())
        if len(rows) == limit:
            break
    return rows


def request_detail(store: Store, request_id: str) -> dict[str, Any]:
    """GET /requests/{id} (§7): the request, its data, and its own copy of each element
    of the campaign it asks for (all of them when it was sent without ``items``)."""
    store.advance()
    found = store.requests.get(request_id)
    if found is None:
        raise Invalid(404, f"request {request_id} not found")
    detail = found.current_json()
    campaign = store.campaigns[found.campaign_id]
    wanted = None if found.items is None else set(found.items)
    # §7: each element of a request has its own id and an itemId pointing back to
    # the campaign element.
    for kind in ELEMENT_KINDS:
        elements = []
        for element in campaign[kind]:
            if wanted is not None and element["id"] not in wanted and element.get("itemId") not in wanted:
                continue
            own = dict(element, id=derived_id(found.id, element["id"]), itemId=element["id"])
            own["status"] = "open"
            if kind == "documents":
                own["uploads"] = []
            elements.append(own)
        detail[kind] = elements
    return detail


def contacts_page(store: Store, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET /contacts (§6, §7): ``email`` exact (case-sensitive unless
    case_sensitive_emails is off), ``firstname`` / ``lastname`` exact but not
    case-sensitive, ``search`` in names, email and custom values, ``sort``, one page."""
    offset, limit = page(query)
    found: list[Contact] = list(store.contacts.values())
    if "email" in query:
        found = store.contacts_with_email(query["email"])
    for param, attribute in (("firstname", "first_name"), ("lastname", "last_name")):
        if param in query:
            wanted = query[param].casefold()
            found = [c for c in found if (getattr(c, attribute) or "").casefold() == wanted]
    search = query.get("search", "").casefold()
    if search:
        found = [c for c in found if any(search in text.casefold() for text in _contact_text(c))]
    rows = [c.to_json() for c in found]
    if "sort" in query:
        if query["sort"] not in _CONTACT_SORTS:
            raise Invalid(400, f"sort must be one of {', '.join(_CONTACT_SORTS)}, got {query['sort']!r}")
        key, descending = _CONTACT_SORTS[query["sort"]]
        rows.sort(key=lambda row: str(row[key] or "").casefold(), reverse=descending)
    return rows[offset : offset + limit]


def _contact_text(contact: Contact) -> tuple[str, ...]:
    return (
        contact.email,
        contact.first_name or "",
        contact.last_name or "",
        *(str(custom.get("value")) for custom in contact.custom),
    )


def contact_detail(store: Store, contact_id: str) -> dict[str, Any]:
    """GET /contacts/{id} (§6): the contact and at most 50 of its requests embedded.

    The docs' example lists them oldest first (``embedded_order`` "oldest"), so for a
    contact with more than 50 the newest are then not there at all.
    """
    contact = store.contacts.get(contact_id)
    if contact is None:
        raise Invalid(404, f"contact {contact_id} not found")
    store.advance()
    detail = contact.to_json()
    if store.config.embedded_order == "oldest":
        embedded = contact.requests[:_MAX_EMBEDDED_REQUESTS]
    else:
        embedded = contact.requests[::-1][:_MAX_EMBEDDED_REQUESTS]
    detail["requests"] = [
        {
            "_id": r.id,
            "campaignId": r.campaign_id,
            "createdAt": r.created_at,
            "status": r.status,
            "privacy": r.privacy,
            "branding": {"useBranding": False},
        }
        for r in embedded
    ]
    return detail


def campaigns_page(store: Store, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET /campaigns (§7): one page of campaigns, each with its requests counted."""
    offset, limit = page(query)
    rows = []
    for found in list(store.campaigns.values())[offset : offset + limit]:
        requests = store.by_campaign[found["_id"]]
        pending = sum(1 for r in requests if r.status == "pending")
        done = sum(1 for r in requests if r.status == "completed")
        rows.append(
            {
                "_id": found["_id"],
                "name": found["name"],
                "createdAt": found["createdAt"],
                "status": found["status"],
                "count": {
                    "request": len(requests),
                    "open": pending,
                    "done": done,
                    "due": 0,
                    "waiting": 0,
                    "error": 0,
                    "message": 0,
                },
            }
        )
    return rows


def campaign(store: Store, campaign_id: str) -> dict[str, Any]:
    """GET /campaigns/{id} (§7): the campaign with its elements by kind."""
    found = store.campaigns.get(campaign_id)
    if found is None:
        raise Invalid(404, f"campaign {campaign_id} not found")
    return found


def team(store: Store) -> dict[str, Any]:
    """GET /team (§7), with the configured ``team_tz``."""
    return {**TEAM, "tz": store.config.team_tz}


def users() -> list[dict[str, Any]]:
    """GET /users (§7): the team's two users."""
    return USERS
