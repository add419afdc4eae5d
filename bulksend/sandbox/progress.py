"""The sandbox's side of issue 14: PATCH /request and requests that move on by themselves.

Pure rules, no HTTP and no sandbox state (the store applies them):

* ``patch_changes`` checks a PATCH /request body as collect-api.md §7 documents
  it (``requestId``; ``status`` one of ``pending``, ``completed``, ``waiting``,
  ``canceled`` — that spelling —, ``archived`` or a custom status; ``dueDate``
  ISO 8601; ``data`` an object; ``assignedTo`` a user id or email, or
  ``"unset"``; the three message flags) and returns what to change. A status the
  team does not have, ``cancelled`` included (the list spelling), is refused
  with 400: the docs give PATCH its own spelling, and a client that sends the
  other must find out here rather than in production.
* ``advance`` moves open requests through the statuses of §7 over time, as
  clients uploading and a team validating would (``progress_rate``), so that
  ``bulksend status`` has something to show.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

# §7: what PATCH /request takes, and the status each one reads as in listings.
PATCH_STATUSES: Final[dict[str, str]] = {
    "pending": "pending",
    "completed": "completed",
    "waiting": "waiting",
    "canceled": "cancelled",  # PATCH spelling -> list spelling (§7, §9)
    "archived": "archived",
}
# The sandbox team's custom statuses (§7: "or a custom status"); listed and
# filtered like any other, settable through PATCH under this same name.
CUSTOM_STATUSES: Final = ("on-hold",)
PATCH_FIELDS: Final = frozenset({
    "requestId", "status", "dueDate", "data", "assignedTo",
    "sendCompletionMessage", "sendRejectionMessage", "sendReopenMessage",
})
_MESSAGE_FLAGS: Final = ("sendCompletionMessage", "sendRejectionMessage", "sendReopenMessage")

# One step of a request that moves on by itself: status -> [(share, next status)].
# pending: the client uploads (waiting), lets the date pass (due), Collect cannot
# deliver the message (error), the team puts it on hold; waiting: validated
# (completed) or an element rejected (pending again).
_STEPS: Final[dict[str, tuple[tuple[float, str], ...]]] = {
    "pending": ((0.45, "waiting"), (0.2, "due"), (0.15, "completed"), (0.1, "error"), (0.1, "on-hold")),
    "due": ((1.0, "waiting"),),
    "waiting": ((0.8, "completed"), (0.2, "pending")),
    "on-hold": ((1.0, "pending"),),
}


class PatchRefused(Exception):
    """A PATCH /request body the API refuses (400); the message says why."""


def patch_changes(body: dict[str, Any], user_ids: dict[str, str],
                  parse_due_date: Callable[[object], str | None]) -> dict[str, Any]:
    """What a PATCH /request body asks, checked: ``{"status": list spelling,
    "dueDate": ISO UTC or None, "data": {...}, "assignedTo": user id or None}``
    (only the fields given). ``user_ids``: email -> user ``_id`` of the team.

    Raises ``PatchRefused`` for an unknown field, a missing ``requestId``, a
    status outside §7's list and the team's custom ones, or a value of the wrong
    type; ``parse_due_date`` raises its own error for a bad ``dueDate``."""
    unknown = sorted(set(body) - PATCH_FIELDS)
    if unknown:
        raise PatchRefused(f"unknown field {unknown[0]!r} in the PATCH /request body")
    if not isinstance(body.get("requestId"), str) or not body["requestId"]:
        raise PatchRefused("requestId is required")
    changes: dict[str, Any] = {}
    if "status" in body:
        status = body["status"]
        if status in PATCH_STATUSES:
            changes["status"] = PATCH_STATUSES[status]
        elif status in CUSTOM_STATUSES:
            changes["status"] = status
        else:
            allowed = ", ".join([*PATCH_STATUSES, *CUSTOM_STATUSES])
            raise PatchRefused(f"status {status!r} is not one of {allowed}")
    if "dueDate" in body:
        changes["dueDate"] = parse_due_date(body["dueDate"])
    if "data" in body:
        if not isinstance(body["data"], dict):
            raise PatchRefused("data must be an object")
        changes["data"] = body["data"]
    if "assignedTo" in body:
        changes["assignedTo"] = _assignee(body["assignedTo"], user_ids)
    for flag in _MESSAGE_FLAGS:
        if flag in body and not isinstance(body[flag], bool):
            raise PatchRefused(f"{flag} must be true or false")
    return changes


def _assignee(value: object, user_ids: dict[str, str]) -> str | None:
    if value == "unset":
        return None
    if isinstance(value, str) and value in user_ids.values():
        return value
    if isinstance(value, str) and value in user_ids:
        return user_ids[value]
    raise PatchRefused(f"assignedTo {value!r} is not a user id or email of the team, nor \"unset\"")


def messages_sent(body: dict[str, Any], before: str, after: str) -> list[str]:
    """The messages a status change triggers (§4, §7): completion on a move to
    ``completed``, reopen on a move back to ``pending``; none without a change."""
    if before == after:
        return []
    sent = []
    if after == "completed" and body.get("sendCompletionMessage") is True:
        sent.append("completion")
    if after == "pending" and body.get("sendReopenMessage") is True:
        sent.append("reopen")
    return sent


def advance(requests: Iterable[Any], rng: random.Random, rate: float, elapsed: float) -> int:
    """Move open requests on: each takes a step with probability
    ``1 - exp(-rate * elapsed)`` (``rate`` steps per request per second), and a
    pending request whose ``due_date`` has passed becomes ``due``. ``requests``
    have ``status`` and ``due_date`` (ISO UTC or None). Returns how many moved."""
    chance = 1.0 - math.exp(-rate * max(0.0, elapsed))
    clock = datetime.now(UTC)
    now = clock.strftime("%Y-%m-%dT%H:%M:%SZ")
    yesterday = (clock - timedelta(days=1)).strftime("%Y-%m-%dT21:59:00Z")
    moved = 0
    for request in requests:
        steps = _STEPS.get(request.status)
        if steps is None:
            continue  # completed, cancelled, archived, error: final
        if request.status == "pending" and request.due_date and request.due_date < now:
            request.status = "due"
            moved += 1
            continue
        if rng.random() >= chance:
            continue
        draw = rng.random()
        for share, status in steps:
            if draw < share:
                request.status = status
                if status == "due" and not (request.due_date and request.due_date < now):
                    request.due_date = yesterday  # due means its date has passed (§7)
                moved += 1
                break
            draw -= share
    return moved
