"""What the sandbox refuses before it looks anything up: bodies and queries checked for shape.

POST /request (§4) and POST /requests (§5) bodies, list queries' ``offset`` and
``limit`` (§3), inline contacts (§4) and dates (§1, §4). Pure functions: a refusal
is an ``Invalid`` carrying the HTTP status and the message of the error body; what
the ids refer to (campaigns, elements, contacts) is the store's to check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "EMAIL",
    "FLAGS",
    "Invalid",
    "batch_shape",
    "contact_shape_problem",
    "is_str_list",
    "page",
    "parse_due_date",
    "single_shape",
]

FLAGS: Final = (
    "sendMessage",
    "sendCompletionMessage",
    "sendRejectionMessage",
    "sendReopenMessage",
)
_SINGLE_FIELDS: Final = frozenset(
    {
        "campaignId",
        "contact",
        "items",
        "esignDocs",
        "esignTriggers",
        "data",
        "sample",
        "dueDate",
        "createdBy",
        "assignedTo",
        *FLAGS,
    }
)
_BATCH_FIELDS: Final = frozenset(
    {"campaignId", "contacts", "items", "samples", "dueDate", "assignedTo", *FLAGS}
)
# Hints for the fields a client most often puts on the wrong endpoint (§5 lists
# what POST /requests lacks).
_WRONG_ENDPOINT_HINTS: Final = {
    ("/requests", "contact"): "POST /requests takes `contacts` (an array)",
    ("/requests", "sample"): "POST /requests takes `samples` (an array)",
    ("/requests", "data"): "POST /requests has no `data`; put it in each contact's `data`",
    ("/requests", "createdBy"): "POST /requests does not accept `createdBy`",
    ("/requests", "esignDocs"): "POST /requests does not accept `esignDocs`",
    ("/requests", "esignTriggers"): "POST /requests does not accept `esignTriggers`",
    ("/request", "contacts"): "POST /request takes one `contact`",
    ("/request", "samples"): "POST /request takes one `sample` object",
}
_CONTACT_FIELDS: Final = frozenset(
    {"email", "firstName", "lastName", "company", "data", "tag", "tags", "customFields"}
)
_CUSTOM_FIELD_KEYS: Final = frozenset({"_id", "name", "variable", "value"})
EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_BATCH: Final = 50  # §3, §5
_MAX_LIMIT: Final = 100  # §3: list endpoints
_DEFAULT_LIMIT: Final = 50


class Invalid(Exception):
    """A request the API refuses: its HTTP status and the message of the error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_str_list(value: object) -> bool:
    """Whether ``value`` is a list of strings (empty included)."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def parse_due_date(value: object) -> str | None:
    """dueDate (§4): ISO 8601 date or date-time, or null; answered in UTC like createdAt.

    Returns ``YYYY-MM-DDTHH:MM:SSZ`` (a date alone is midnight UTC) or None; raises
    ``Invalid`` (400) for anything else.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(400, "dueDate must be an ISO 8601 date or date-time string, or null")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(400, f"dueDate {value!r} is not an ISO 8601 date or date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page(query: Mapping[str, str]) -> tuple[int, int]:
    """offset and limit of a list endpoint (§3: limit default 50, at most 100).

    Raises ``Invalid`` (400) for a value that is not an integer or out of range.
    """
    values: dict[str, int] = {}
    for name, default, low, high in (
        ("offset", 0, 0, None),
        ("limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT),
    ):
        raw = query.get(name)
        if raw is None:
            values[name] = default
            continue
        try:
            number = int(raw)
        except ValueError:
            raise Invalid(400, f"{name} must be an integer, got {raw!r}") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise Invalid(400, f"{name} must be {bound}, got {number}")
        values[name] = number
    return values["offset"], values["limit"]


def single_shape(body: dict[str, Any]) -> tuple[str, str | dict[str, Any], str | None]:
    """A POST /request body (§4) checked for shape: (campaign id, contact, due date in UTC).

    The contact is an id or an inline object, as sent. Raises ``Invalid`` (400) on
    the first problem, in the order a reader of §4 would check.
    """
    _check_fields(body, _SINGLE_FIELDS, "/request")
    campaign_id = _check_common(body)
    if "contact" not in body:
        raise Invalid(400, "contact is required: a contact id or a contact object")
    entry = body["contact"]
    problem = contact_shape_problem(entry)
    if problem is not None:
        raise Invalid(400, problem)
    if "data" in body and not isinstance(body["data"], dict):
        raise Invalid(400, "data must be an object")
    if "createdBy" in body and not (isinstance(body["createdBy"], str) and body["createdBy"]):
        raise Invalid(400, "createdBy must be a non-empty string (a user id)")
    if "esignDocs" in body and not (
        isinstance(body["esignDocs"], list) and all(isinstance(doc, dict) for doc in body["esignDocs"])
    ):
        raise Invalid(400, "esignDocs must be an array of objects")
    if "esignTriggers" in body and not is_str_list(body["esignTriggers"]):
        raise Invalid(400, "esignTriggers must be an array of strings")
    if "sample" in body:
        _check_sample(body["sample"], "sample")
    return campaign_id, entry, parse_due_date(body.get("dueDate"))


def batch_shape(body: dict[str, Any]) -> tuple[str, list[Any], str | None]:
    """A POST /requests body (§5) checked for shape: (campaign id, contacts, due date in UTC).

    Each entry of ``contacts`` is checked later, one by one (a bad one is skipped,
    not fatal). Raises ``Invalid`` (400) on the first problem with the body itself.
    """
    _check_fields(body, _BATCH_FIELDS, "/requests")
    campaign_id = _check_common(body)
    contacts = body.get("contacts")
    if "contacts" not in body:
        raise Invalid(400, "contacts is required: an array of contact ids or objects")
    if not isinstance(contacts, list):
        raise Invalid(400, "contacts must be an array of contact ids or objects")
    if not 1 <= len(contacts) <= _MAX_BATCH:
        raise Invalid(400, f"contacts must hold 1 to {_MAX_BATCH} entries, got {len(contacts)}")
    if "samples" in body:
        samples = body["samples"]
        # §5: typed "object", described as an array; the sandbox takes the array.
        if not isinstance(samples, list):
            raise Invalid(400, "samples must be an array of {itemId, url} objects")
        for index, sample in enumerate(samples):
            _check_sample(sample, f"samples[{index}]")
    return campaign_id, contacts, parse_due_date(body.get("dueDate"))


def _check_fields(body: dict[str, Any], allowed: frozenset[str], endpoint: str) -> None:
    for key in body:
        if key not in allowed:
            hint = _WRONG_ENDPOINT_HINTS.get((endpoint, key))
            if hint is not None:
                raise Invalid(400, f"unknown field {key!r}: {hint}")
            raise Invalid(400, f"unknown field {key!r} in the POST {endpoint} body")


def _check_common(body: dict[str, Any]) -> str:
    """Fields shared by §4 and §5, checked for shape; returns the campaign id."""
    if "campaignId" not in body:
        raise Invalid(400, "campaignId is required")
    campaign_id = body["campaignId"]
    if not isinstance(campaign_id, str) or not campaign_id:
        raise Invalid(400, "campaignId must be a non-empty string")
    if "items" in body:
        items = body["items"]
        if not is_str_list(items):
            raise Invalid(400, "items must be an array of element ids (strings)")
        if not items:
            raise Invalid(400, "items must not be empty: omit it to send the whole campaign")
    for flag in FLAGS:
        if flag in body and not isinstance(body[flag], bool):
            raise Invalid(400, f"{flag} must be a boolean (true or false)")
    if "assignedTo" in body and not (isinstance(body["assignedTo"], str) and body["assignedTo"]):
        raise Invalid(400, "assignedTo must be a non-empty string (a user id or email)")
    return campaign_id


def _check_sample(sample: object, where: str) -> None:
    if not isinstance(sample, dict):
        raise Invalid(400, f"{where} must be an object {{itemId, url}}")
    for key in sample:
        if key not in ("itemId", "url"):
            raise Invalid(400, f"{where} has unknown field {key!r} (expected itemId, url)")
    for key in ("itemId", "url"):
        if not isinstance(sample.get(key), str) or not sample[key]:
            raise Invalid(400, f"{where}.{key} is required and must be a string")


def contact_shape_problem(entry: object) -> str | None:
    """Why a contact of a POST body (an id or an inline object, §4) is refused, or None."""
    if isinstance(entry, str):
        return None if entry else "contact id must not be empty"
    if isinstance(entry, dict):
        return _inline_contact_problem(entry)
    return "contact must be a contact id (string) or a contact object"


def _inline_contact_problem(entry: dict[str, Any]) -> str | None:
    """Why an inline contact object (§4) is refused, or None when it is fine."""
    for key in entry:
        if key not in _CONTACT_FIELDS:
            allowed = ", ".join(sorted(_CONTACT_FIELDS))
            return f"contact has unknown field {key!r} (allowed: {allowed})"
    address = entry.get("email")
    if address is None:
        return "contact.email is required"
    if not isinstance(address, str) or not EMAIL.fullmatch(address):
        return f"contact.email {address!r} is not an email address"
    for key in ("firstName", "lastName", "company"):
        if key in entry and not isinstance(entry[key], str):
            return f"contact.{key} must be a string"
    if "data" in entry and not isinstance(entry["data"], dict):
        return "contact.data must be an object"
    for key in ("tag", "tags"):
        tags = entry.get(key)
        if key in entry and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            return f"contact.{key} must be an array of strings"
    if "customFields" in entry:
        return _custom_fields_problem(entry["customFields"])
    return None


def _custom_fields_problem(fields: object) -> str | None:
    if not isinstance(fields, list):
        return "contact.customFields must be an array of objects"
    for index, custom in enumerate(fields):
        if not isinstance(custom, dict) or not isinstance(custom.get("variable"), str):
            return f"contact.customFields[{index}] must be an object with a string `variable`"
        extra = set(custom) - _CUSTOM_FIELD_KEYS
        if extra:
            return f"contact.customFields[{index}] has unknown field {sorted(extra)[0]!r}"
    return None
