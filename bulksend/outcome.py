"""The record of what happened to one input row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Statuses a row can end a run with (PRODUCT.md, "Results CSV").
SENT = "sent"
FAILED = "failed"
INVALID = "invalid"
DUPLICATE = "duplicate"
UNKNOWN = "unknown"
READY = "ready"

STATUSES = (SENT, FAILED, INVALID, DUPLICATE, UNKNOWN, READY)


@dataclass(slots=True)
class Outcome:
    """One row's outcome; a failed row is data, not an exception."""

    row: int
    key: str = ""
    status: str = READY
    request_id: str = ""
    portal_url: str = ""
    contact_id: str = ""
    http_status: int | None = None
    attempts: int = 0
    error: str = ""
    sent_at: str = ""
    # not part of the CSV contract: the payload (dry run), the input's cells
    payload: dict[str, Any] | None = None
    values: dict[str, str] = field(default_factory=dict)
