"""``bulksend validate --preview N``: requests as a person reads them (issue 15).

Each preview shows one POST /request body (collect-api.md §4) as it will be
sent, laid out by meaning rather than as JSON: who it goes to, their custom
data, the items asked for, the due date (with its offset, and in words), and
any other field. Nothing here reads files or the network.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

__all__ = ["preview_lines"]

_LABEL: Final = 12  # width of the label column
_CONTACT_FIELDS: Final = ("email", "firstName", "lastName", "company", "data")


def preview_lines(payload: dict[str, Any], *, row: int, number: int) -> list[str]:
    """The lines showing one request: a title naming ``number`` (1, 2, …) and the
    spreadsheet ``row``, then one line per part. ``payload`` is the body the
    mapping built (Mapping.apply); items are shown as written (a name is sent
    as its element's id, resolved when sending)."""
    lines = [f"request {number} (row {row})"]

    def add(label: str, text: str) -> None:
        lines.append(f"  {label:<{_LABEL}}{text}")

    add("campaign", str(payload.get("campaignId", "")))
    contact = payload.get("contact")
    if isinstance(contact, dict):
        add("contact", _person(contact))
        if contact.get("company"):
            add("company", str(contact["company"]))
        if isinstance(contact.get("data"), dict) and contact["data"]:
            add("data", _pairs(contact["data"]))
        others = {k: v for k, v in contact.items() if k not in _CONTACT_FIELDS}
        if others:
            add("contact +", _pairs(others))
    else:
        add("contact", f"existing contact {contact}")
    items = payload.get("items")
    if items:
        add("items", ", ".join(str(i) for i in items))
    else:
        add("items", "(none given: the whole campaign)")
    if "dueDate" in payload:
        add("due date", _due(str(payload["dueDate"])))
    rest = {k: v for k, v in payload.items() if k not in ("campaignId", "contact", "items", "dueDate")}
    for name, value in rest.items():
        add(name, _value(value))
    return lines


def _person(contact: dict[str, Any]) -> str:
    name = " ".join(str(contact[k]) for k in ("firstName", "lastName") if contact.get(k))
    email = contact.get("email")
    if name and email:
        return f"{name} <{email}>"
    return str(email or name or "(no email or name)")


def _pairs(values: dict[str, Any]) -> str:
    return " · ".join(f"{k}: {_value(v)}" for k, v in values.items())


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _due(text: str) -> str:
    """``2026-12-01T23:59:00+01:00 (Tue 1 Dec 2026, 23:59 at UTC+01:00)``; the
    text alone when it is not ISO 8601."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    words = f"{moment:%a} {moment.day} {moment:%b %Y}, {moment:%H:%M}"
    if moment.tzinfo is None:
        return f"{text} ({words}; the offset is the team's, known when sending)"
    offset = moment.strftime("%z")
    return f"{text} ({words} at UTC{offset[:3]}:{offset[3:]})"
