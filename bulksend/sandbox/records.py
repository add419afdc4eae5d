"""The store's records: a contact and a request, and how each reads in JSON (§4, §6, §7)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Contact", "Request", "search_text"]


@dataclass(slots=True, eq=False)
class Contact:
    """A contact of the team; ``custom`` holds its custom attributes ({_id, name, variable, value})."""

    id: str
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    created_at: str
    tags: list[str] = field(default_factory=list)
    custom: list[dict[str, Any]] = field(default_factory=list)
    nb_request: int = 0
    last_activity: str | None = None
    requests: list[Request] = field(default_factory=list)  # oldest first

    def to_json(self) -> dict[str, Any]:
        """The contact object of §4 and §7 (without its requests)."""
        return {
            "_id": self.id,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "company": self.company,
            "tag": list(self.tags),
            "custom": [dict(c) for c in self.custom],
            "nbRequest": self.nb_request,
            "createdAt": self.created_at,
            "lastActivity": self.last_activity,
        }


@dataclass(slots=True, eq=False)
class Request:
    """A request of one contact in one campaign; timestamps are ISO UTC strings."""

    id: str
    campaign_id: str
    created_at: str
    portal_url: str
    due_date: str | None
    contact: Contact
    contact_json: dict[str, Any]  # the contact as it was when the request was created
    data: dict[str, Any]
    items: list[str] | None
    status: str = "pending"
    privacy: str = "private"
    assigned_to: str | None = None  # PATCH /request's assignedTo (not in the §4 object)

    def to_json(self, contact_json: dict[str, Any] | None = None) -> dict[str, Any]:
        """The request object of §4, with the contact as it was at creation unless given."""
        return {
            "_id": self.id,
            "campaignId": self.campaign_id,
            "createdAt": self.created_at,
            "portalUrl": self.portal_url,
            "status": self.status,
            "dueDate": self.due_date,
            "privacy": self.privacy,
            "contact": self.contact_json if contact_json is None else contact_json,
            "contributors": [],
            "branding": {"useBranding": False},
        }

    def current_json(self) -> dict[str, Any]:
        """The request as listings and PATCH show it (§6, §7): its contact as it is now, and its data."""
        return self.to_json(self.contact.to_json()) | {"data": dict(self.data)}


def search_text(request: Request) -> list[str]:
    """What GET /requests ``search`` looks in (§6 step 3): the contact's names and
    email, plus all custom data (the request's and the contact's custom attributes)."""
    contact = request.contact
    texts = [contact.first_name or "", contact.last_name or "", contact.email]
    values = [*request.data.values(), *(custom.get("value") for custom in contact.custom)]
    for value in values:
        texts.append(value if isinstance(value, str) else json.dumps(value))
    return texts
