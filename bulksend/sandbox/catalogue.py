"""The seeded world: campaigns, team, users, contacts and one old request, and the ids' form.

Fixed for every seed, so the demo and the tests can name campaigns, elements and
contacts; only ids the sandbox generates at run time depend on the seed.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Final

from bulksend.sandbox.records import Contact, Request

__all__ = [
    "DEMO_CAMPAIGN_ID",
    "DEMO_ITEM_IDS",
    "ELEMENT_KINDS",
    "ONBOARDING_CAMPAIGN_ID",
    "ONBOARDING_ITEM_IDS",
    "PORTAL",
    "SEEDED_CONTACT_IDS",
    "SEEDED_REQUEST_ID",
    "TEAM",
    "USERS",
    "USER_IDS",
    "campaigns",
    "derived_id",
    "new_id",
    "seeded_contacts",
    "seeded_request",
]

# Meteor's "unmistakable" alphabet: Collect ids such as xvr69EYLKXvTkfYuk are
# Meteor ids, 17 characters from this set (§1).
_ID_ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
_ID_LENGTH: Final = 17
PORTAL: Final = "https://app.usecollect.com/portal"

DEMO_CAMPAIGN_ID: Final = "xvr69EYLKXvTkfYuk"  # the campaign id of the §4 example
DEMO_ITEM_IDS: Final[dict[str, str]] = {  # element name -> element `id` (what `items` takes)
    "ID card": "pdHfyaXvuoEWnRNnm",
    "Proof of address": "S7pJyePKjxXimLipA",
    "Registration certificate": "8oMXrrSvERrsEnBix",
    "Driving licence": "vJBoynXXMEDXTiSD7",
    "Vehicle details": "2GMd7Jw8Zi8efHaCn",  # a form
    "Instructions": "sxcr6nyAZbi47xYwd",  # a text block
}
ONBOARDING_CAMPAIGN_ID: Final = "zZCYitJRjp8n7XG5Q"
ONBOARDING_ITEM_IDS: Final[dict[str, str]] = {
    "Signed contract": "nWHdn2bYErXrZpbt6",
    "Bank details": "r7v6Lk7oJKWaTQr3C",
    "Personal information": "Zu68KzNpYKcWvKxM3",  # a form
    "Welcome": "LYCAQa7kwtSpHQtaj",  # a page
}
SEEDED_CONTACT_IDS: Final[dict[str, str]] = {  # email -> contact `_id`
    "maincontact@example.com": "xtPWKQqcAk8MJfoz5",  # the contact of the §4 example
    "jane.smith@example.com": "WmTjsFknzHdmfs3Ra",  # the id used in the §5 example
    "Grace.Hopper@Example.com": "K9eMhWR7YQRFHSE8A",  # mixed case: §6 email look-up is exact
}
_SEEDED_NAMES: Final[dict[str, tuple[str, str, str | None]]] = {  # email -> first, last, company
    "maincontact@example.com": ("John", "Doe", "Acme"),
    "jane.smith@example.com": ("Jane", "Smith", None),
    "Grace.Hopper@Example.com": ("Grace", "Hopper", "US Navy"),
}
# An old request of maincontact in the demo campaign: reconciliation must filter on
# createdAt (§6) rather than take any request it finds.
SEEDED_REQUEST_ID: Final = "nw42MmBsJoccgutST"
USER_IDS: Final[dict[str, str]] = {  # email -> user `_id` (for createdBy / assignedTo)
    "owner@sandbox.example": "yvsbMv2mRPfSPuRNv",
    "assistant@sandbox.example": "vsxQAWiyaKs3J49q5",
}
ELEMENT_KINDS: Final = ("documents", "forms", "texts", "pages")
_EXTENSIONS: Final = ["pdf", "jpg", "jpeg", "png"]

# Each campaign's elements in their order: (kind, name, itemId). An element's `id`
# is in DEMO_ITEM_IDS / ONBOARDING_ITEM_IDS. itemId differs from id on purpose:
# `items` takes the element's `id` (§6); which one POST /request wants is not
# settled by the docs, so the sandbox takes either.
_CAMPAIGNS: Final = (
    (DEMO_CAMPAIGN_ID, "Vehicle documents", "2022-06-01T09:00:00Z", DEMO_ITEM_IDS, (
        ("documents", "ID card", "TMjehMxdX2LeLW8SN"),
        ("documents", "Proof of address", "wsZN5XcA2C8CXcPDq"),
        ("documents", "Registration certificate", "3Sa5Dhn7Wi9i9Dtbn"),
        ("documents", "Driving licence", "FZ9W2wEdA9wgrEcdq"),
        ("forms", "Vehicle details", "t2J2Di6rkmZePHFD6"),
        ("texts", "Instructions", "WTz4vrkJJv7kQsrTQ"),
    )),
    (ONBOARDING_CAMPAIGN_ID, "Employee onboarding", "2023-01-16T08:30:00Z", ONBOARDING_ITEM_IDS, (
        ("documents", "Signed contract", "gjS2PzsifPzu2YnYp"),
        ("documents", "Bank details", "7PNLxHZyMCFnKKgrP"),
        ("forms", "Personal information", "8mfMFpFW4tm8xmc9d"),
        ("pages", "Welcome", "nKC7nYWzBBpvcn2cz"),
    )),
)
_FORM_FIELDS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {  # form name -> (id, name, type)
    "Vehicle details": (
        ("cvKTPGNCtXjR73Qrn", "Brand", "shortText"),
        ("93yLdbzqzfh76tY9B", "Model", "shortText"),
        ("vj4tjFbSiYpL2SWfk", "Plate", "shortText"),
    ),
    "Personal information": (
        ("XDwMdkvxio6B2LdPP", "Date of birth", "date"),
        ("jfAawhKLJyfQMSz83", "Address", "longText"),
    ),
}

TEAM: Final = {
    "_id": "CDFHTHYHLLSaw8Mhi",
    "tz": "Europe/Paris",
    "name": "Sandbox team",
    "plan": {"name": "Premium", "end": "2030-12-31T23:59:59Z"},
}
USERS: Final = [
    {
        "_id": USER_IDS["owner@sandbox.example"],
        "role": "admin",
        "email": "owner@sandbox.example",
        "status": "active",
        "firstName": "Olivia",
        "lastName": "Owner",
    },
    {
        "_id": USER_IDS["assistant@sandbox.example"],
        "role": "member",
        "email": "assistant@sandbox.example",
        "status": "active",
        "firstName": "Adam",
        "lastName": "Assistant",
    },
]


def new_id(rng: random.Random) -> str:
    """A fresh Meteor-style id (§1): 17 characters of the unmistakable alphabet, from ``rng``."""
    return "".join(rng.choices(_ID_ALPHABET, k=_ID_LENGTH))


def derived_id(*parts: str) -> str:
    """A stable Meteor-style id for things computed on demand (request elements)."""
    digest = hashlib.blake2b(":".join(parts).encode(), digest_size=_ID_LENGTH).digest()
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in digest)


def campaigns() -> list[dict[str, Any]]:
    """The two seeded campaigns in GET /campaigns/{id}'s shape (§7); a fresh copy each call."""
    return [_campaign(*row) for row in _CAMPAIGNS]


def _campaign(
    campaign_id: str,
    name: str,
    created_at: str,
    ids: dict[str, str],
    elements: tuple[tuple[str, str, str], ...],
) -> dict[str, Any]:
    campaign: dict[str, Any] = {"_id": campaign_id, "name": name, "createdAt": created_at, "status": "open"}
    campaign |= {kind: [] for kind in ELEMENT_KINDS}
    for order, (kind, element_name, item_id) in enumerate(elements):
        element: dict[str, Any] = {
            "id": ids[element_name], "itemId": item_id, "name": element_name, "order": order,
            "visibility": "visible",
        }
        if kind == "documents":
            element |= {"mandatory": True, "multipleupload": False, "extensions": list(_EXTENSIONS)}
        if kind == "forms":
            element["items"] = [
                {"id": id_, "name": label, "type": type_} for id_, label, type_ in _FORM_FIELDS[element_name]
            ]
        campaign[kind].append(element)
    return campaign


def seeded_contacts() -> list[Contact]:
    """The three seeded contacts, new objects each call; maincontact already has its old request
    counted (``seeded_request`` makes it)."""
    contacts = []
    for address, contact_id in SEEDED_CONTACT_IDS.items():
        first, last, company = _SEEDED_NAMES[address]
        contacts.append(Contact(id=contact_id, email=address, first_name=first, last_name=last,
                                company=company, created_at="2022-07-03T13:51:27Z"))
    main = contacts[0]
    main.nb_request, main.last_activity = 1, "2022-07-04T07:20:06Z"
    return contacts


def seeded_request(main: Contact) -> Request:
    """maincontact's old, completed request in the demo campaign (SEEDED_REQUEST_ID)."""
    return Request(id=SEEDED_REQUEST_ID, campaign_id=DEMO_CAMPAIGN_ID, created_at="2022-07-04T07:20:06Z",
                   portal_url=f"{PORTAL}/uGFRDeEL3Ct2uYo2c/{SEEDED_REQUEST_ID}",
                   due_date="2022-07-11T21:59:00Z", contact=main, contact_json=main.to_json(),
                   data={}, items=None, status="completed")
