"""The record of what happened to one input row."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulksend.common.errors import BulksendError, ExitStatus

# Statuses a row can end a run with (PRODUCT.md, "Results CSV").
SENT = "sent"
FAILED = "failed"
INVALID = "invalid"
DUPLICATE = "duplicate"
UNKNOWN = "unknown"
READY = "ready"
# Rows this run chose not to send (issue 28): outside ``--where`` (FILTERED) or
# on a ``--exclude`` do-not-contact list (EXCLUDED). Neither is a problem (the
# exit status stays 0) nor final: the journal keeps what it knew of the key
# (never sent, failed), so a later run without the option sends them, once.
FILTERED = "filtered"
EXCLUDED = "excluded"

STATUSES = (SENT, FAILED, INVALID, DUPLICATE, UNKNOWN, READY, FILTERED, EXCLUDED)
# Rows the run meant to send that did not go (or may not have): they make the
# exit status 1 (PRODUCT.md, "Exit status").
NOT_SENT = (FAILED, INVALID, DUPLICATE, UNKNOWN)


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


@dataclass
class Summary:
    results: Path
    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    posts: int = 0
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    interrupted: bool = False
    aborted: BulksendError | None = None
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    # What the person should know besides problems: the due dates' zone
    # (validate), how --batch sent the rows.
    notes: list[str] = field(default_factory=list)
    examples: dict[str, list[Outcome]] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)  # validate: what was read, then what was left out
    # validate: each choice made for the person, with its evidence (issue 24)
    guesses: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> ExitStatus:
        if self.aborted is not None:
            return self.aborted.exit_status
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if any(self.counts[s] for s in NOT_SENT):
            return ExitStatus.ROWS_NOT_SENT
        return ExitStatus.OK

    def note(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.status in NOT_SENT:
            kept = self.examples.setdefault(outcome.status, [])
            if len(kept) < 5:
                kept.append(outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": str(self.results),
            "rows": self.total,
            "counts": dict(self.counts),
            "posts": self.posts,
            "started_at": _iso_utc(self.started),
            "finished_at": _iso_utc(time.time()),
            "elapsed_seconds": round(self.elapsed, 3),
            "interrupted": self.interrupted,
            "aborted": None if self.aborted is None else str(self.aborted),
            "dry_run": self.dry_run,
            "notes": self.notes,
            "exit_code": int(self.exit_status),
        }


def _iso_utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
