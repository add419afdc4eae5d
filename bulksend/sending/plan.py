"""What a real send is about to do, counted before its first POST (issue 28).

On a terminal, ``bulksend send`` shows this and asks before real requests
leave (cli/send.py; the Python API takes a ``confirm`` function instead and
never asks by itself). It is counted after the preflight and the pre-send
checks, over the rows the run will read, exactly as the feeder
(sending/feeder.py) will decide them: invalid, a duplicate of an earlier row,
left out (``--where``, ``--exclude``), already sent, not failed
(``--only-failed``), beyond ``--limit``; the rest are the requests. A row an
earlier run may have sent (``unknown``) is among them: it is looked up first
and sent only when no request is found, so the count is a ceiling.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bulksend.common.outcome import EXCLUDED, FAILED, FILTERED, SENT, UNKNOWN
from bulksend.store.journal import INFLIGHT

if TYPE_CHECKING:
    from bulksend.mapping.items import Catalogue
    from bulksend.sending.choosing import Choice
    from bulksend.settings import Mode
    from bulksend.store.session import Session

_CHUNK = 500  # keys asked of the journal at once


@dataclass
class SendPlan:
    """A real send's plan: ``requests`` (at most; ``looked_up`` of them looked
    up first), by campaign id (``campaigns``, with the preflight's ``names``),
    and the rows not sent by reason (``skipped``, in the order first met)."""

    requests: int = 0
    looked_up: int = 0
    campaigns: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    batch: bool = False

    def lines(self) -> list[str]:
        """The plan for a person, one fact a line."""
        how = " (--batch: in calls of up to 50)" if self.batch else ""
        out = [f"about to create up to {self.requests} request(s){how}:"]
        for campaign, count in self.campaigns.most_common():
            name = self.names.get(campaign, "")
            out.append(f"  {count} in campaign {name!r} ({campaign})" if name else
                       f"  {count} in campaign {campaign}")
        if self.looked_up:
            out.append(f"  of which {self.looked_up} may exist already: "
                       "looked up first, sent only if not found")
        if self.skipped:
            out.append("rows not sent: " + ", ".join(f"{n} {why}" for why, n in self.skipped.items()))
        return out


def plan_send(session: Session, mode: Mode, choice: Choice | None,
              catalogues: dict[str, Catalogue]) -> SendPlan:
    """Count what the run is about to do (see the module's docstring). Reads
    the rows the run will read, and the journal; writes nothing."""
    plan = SendPlan(names={c: cat.name for c, cat in catalogues.items() if cat.name}, batch=mode.batch)
    if session.resume is not None:
        plan.skipped["settled by earlier runs (not read again)"] = session.resume.last.rows
    labels = choice.labels() if choice is not None else {}
    seen: set[bytes] = set()
    chunk: list[tuple[str, str, str | None]] = []  # (key, campaign, the status left out with, if any)
    for row in session.table.rows(session.start):
        mapped = session.mapping.apply(row)
        held = None
        if choice is not None:
            held = FILTERED if choice.filtered(row.values) is not None else (
                EXCLUDED if mapped.payload is not None and choice.excluded(mapped.payload) is not None
                else None)
        if mapped.key is None or (held is None and mapped.payload is None):
            plan.skipped[labels[held] if held is not None else "invalid"] += 1
            continue
        digest = hashlib.blake2b(mapped.key.encode(), digest_size=8).digest()
        if digest in seen:
            plan.skipped["duplicate"] += 1
            continue
        seen.add(digest)
        campaign = str((mapped.payload or {}).get("campaignId", ""))
        chunk.append((mapped.key, campaign, held))
        if len(chunk) >= _CHUNK:
            _count(plan, chunk, session, mode, labels)
    _count(plan, chunk, session, mode, labels)
    return plan


def _count(plan: SendPlan, chunk: list[tuple[str, str, str | None]], session: Session, mode: Mode,
           labels: dict[str, str]) -> None:
    """Count a chunk of first rows of their key by what the journal knows of them; empties it."""
    if not chunk:
        return
    journal = session.journal
    known = journal.statuses([key for key, _, _ in chunk])
    for key, campaign, held in chunk:
        status = known.get(key)
        maybe = status in (INFLIGHT, UNKNOWN) or (status is None and journal.lookup_new)
        if status == SENT:
            plan.skipped["already sent"] += 1
        elif held is not None:
            plan.skipped[labels[held]] += 1
        elif mode.only_failed and status != FAILED:
            plan.skipped["not failed (--only-failed)"] += 1
        elif mode.limit is not None and plan.requests >= mode.limit:
            plan.skipped[f"beyond --limit {mode.limit}"] += 1
        else:
            plan.requests += 1
            plan.campaigns[campaign] += 1
            plan.looked_up += maybe
    chunk.clear()
