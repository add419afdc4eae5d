"""The journal of ``bulksend update``'s changes: ``RESULTS.csv.updates`` (issues 14, 23).

One row per (change, request): the change is the PATCH /request body without
its ``requestId`` (canonical JSON), so two runs of the same command share their
rows. What a row's ``state`` says, and what a rerun does with it:

* ``begun``: chosen by a run, no PATCH of it has left. A rerun reads the
  request and sends the change unless it shows.
* ``sent``: a PATCH left, it may have been applied. A rerun reads the request:
  done if the change shows, else it is **not sent again** unless asked (``--again``).
* ``done``: the server answered with the request, or showed the change. Nothing more.
* ``failed``: refused (a 4xx, a 200 with errors and no request, a 404, another
  contact's request). A rerun tries again.

``sent`` is committed right before each PATCH leaves (write-ahead), and set
back to ``begun`` only by an answer that says the PATCH was not applied (a 503,
a 429, a 401, a connection that never reached the server). So a ``sent`` row is
settled from what the journal knows was sent, never from a status others can
move: a client who submitted since (``waiting``) does not make a second reopen
message go out (issue 23, case 3).

Each change that may have reached the server takes the next ``seq``. A ``done``
change is "already made" only while no later change of the same field (status,
due date, assignee) was sent to that request since: an undo of an undo is a new
change (case 4). ``before`` keeps the status the run read before its PATCH.

SQLite in WAL mode; every transition is one committed statement, so a kill at
any instant leaves the last committed state. Journals written before issue 23
gain the columns ``seq`` and ``before`` when opened.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bulksend.common.errors import ResultsError
from bulksend.store.journal import utc_now
from bulksend.store.runlock import refuse_link

BEGUN, SENT, DONE, FAILED = "begun", "sent", "done", "failed"
# The fields a change sets; the message flags go with a status change and set nothing.
SETS = frozenset({"status", "dueDate", "assignedTo", "data"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    change TEXT NOT NULL,              -- the PATCH body without requestId, canonical JSON
    request_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    state TEXT NOT NULL,               -- begun | sent | done | failed
    outcome TEXT NOT NULL DEFAULT '',  -- one line for the results' last_update
    status_after TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,    -- order of the changes that may have reached the server
    before TEXT NOT NULL DEFAULT '',   -- the request's status as read before the PATCH
    PRIMARY KEY (change, request_id)
) WITHOUT ROWID;
"""
_ADDED = {"seq": "INTEGER NOT NULL DEFAULT 0", "before": "TEXT NOT NULL DEFAULT ''"}


@dataclass(frozen=True, slots=True)
class Entry:
    """A request's record for one change: state, outcome, status after, when
    (UTC ISO 8601), its place in the order of changes sent, and the status
    read before its PATCH."""

    state: str
    outcome: str
    status_after: str
    at: str
    seq: int = 0
    before: str = ""


class UpdateJournal:
    """The changes made, one row per (change, request); see the module's docstring.

    Raises ``ResultsError`` (exit 2) when ``path`` is not such a journal, or
    when it or SQLite's ``-wal``/``-shm`` beside it is a symbolic link, has
    other names, or is not a plain file: it is never written through a link
    (issue 25), as the send journal is not (store/runlock.py)."""

    def __init__(self, path: Path) -> None:
        for side in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            refuse_link(side, "update journal" if side == path else f"update journal's {side.name[-4:]}",
                        f"remove {side} (only the link goes), check who made it, and rerun")
        try:
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            have = {name for _, name, *_ in self.db.execute("PRAGMA table_info(changes)")}
            for name, declared in _ADDED.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE changes ADD COLUMN {name} {declared}")
            self._seq = int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise ResultsError(f"{path}: not a bulksend update journal ({exc})",
                               hint="move it away: the next run reads each request back before any "
                                    "PATCH, and sends no change the results file says may have been "
                                    "applied") from exc

    def entries(self, change: str) -> dict[str, Entry]:
        """Every request's record for ``change``: request id -> Entry."""
        return {rid: Entry(*rest) for rid, *rest in self.db.execute(
            "SELECT request_id, state, outcome, status_after, at, seq, before FROM changes WHERE change=?",
            (change,))}

    def entry(self, change: str, request_id: str) -> Entry | None:
        """The record of ``change`` for one request, or None."""
        row = self.db.execute("SELECT state, outcome, status_after, at, seq, before FROM changes "
                              "WHERE change=? AND request_id=?", (change, request_id)).fetchone()
        return None if row is None else Entry(*row)

    def superseded(self, change: str, request_ids: Sequence[str]) -> set[str]:
        """Those of ``request_ids`` to which another change of a field this one
        sets was sent (or made) after this one last was: for them, this change
        is new again (an undo of an undo)."""
        fields = set(json.loads(change)) & SETS
        later: set[str] = set()
        for i in range(0, len(request_ids), 500):
            chunk = list(request_ids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT change, request_id, seq FROM changes WHERE request_id IN ({marks}) "
                "AND state IN (?, ?)", [*chunk, SENT, DONE]).fetchall()
            mine = {rid: seq for other, rid, seq in rows if other == change}
            for other, rid, seq in rows:
                if other != change and seq > mine.get(rid, -1) and fields & set(json.loads(other)):
                    later.add(rid)
        return later

    def begin(self, change: str, request_id: str, row: int, *, doubt: bool = False) -> None:
        """A run takes the change up for ``request_id`` (its row ``row``):
        ``begun`` (``doubt``: ``sent``, an earlier PATCH may have been applied),
        with what an earlier run wrote for it cleared (its outcome belongs to that run)."""
        self.db.execute(
            "INSERT INTO changes (change, request_id, row, state, at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(change, request_id) DO UPDATE SET state=excluded.state, at=excluded.at, "
            "outcome='', status_after=''",
            (change, request_id, row, SENT if doubt else BEGUN, utc_now()))

    def sending(self, change: str, request_id: str, before: str = "") -> None:
        """Write-ahead: a PATCH for it leaves now (``sent``, the next ``seq``;
        ``before``: the request's status as read before it)."""
        self._seq += 1
        self.db.execute("UPDATE changes SET state=?, seq=?, at=?, before=? WHERE change=? AND request_id=?",
                        (SENT, self._seq, utc_now(), before, change, request_id))

    def not_sent(self, change: str, request_id: str) -> None:
        """An answer said the PATCH was not applied: back to ``begun``."""
        self.db.execute("UPDATE changes SET state=? WHERE change=? AND request_id=? AND state=?",
                        (BEGUN, change, request_id, SENT))

    def finish(self, change: str, request_id: str, state: str, outcome: str, status_after: str) -> Entry:
        """``done`` or ``failed``, with the outcome a person reads and the status
        the answer showed. A change made without a PATCH of this run (it showed
        already) takes the next ``seq`` too: it is the request's latest."""
        at = utc_now()
        seq_sql = ", seq=?" if state == DONE else ""
        args: list[object] = [state, outcome, status_after, at]
        if state == DONE:
            self._seq += 1
            args.append(self._seq)
        self.db.execute(f"UPDATE changes SET state=?, outcome=?, status_after=?, at=?{seq_sql} "
                        "WHERE change=? AND request_id=?", [*args, change, request_id])
        found = self.entry(change, request_id)
        return found if found is not None else Entry(state, outcome, status_after, at)

    def note(self, change: str, request_id: str, outcome: str) -> Entry:
        """Why the change is not settled (its state kept: ``begun`` or ``sent``)."""
        self.db.execute("UPDATE changes SET outcome=?, at=? WHERE change=? AND request_id=?",
                        (outcome, utc_now(), change, request_id))
        found = self.entry(change, request_id)
        assert found is not None
        return found

    def restore(self, change: str, request_id: str, earlier: Entry | None) -> None:
        """A run stopped before any PATCH of it left: put back what was recorded
        before that run began it (nothing, if nothing was)."""
        if earlier is None:
            self.db.execute("DELETE FROM changes WHERE change=? AND request_id=? AND state=?",
                            (change, request_id, BEGUN))
        else:
            self.db.execute("UPDATE changes SET state=?, outcome=?, status_after=?, at=?, seq=?, before=? "
                            "WHERE change=? AND request_id=? AND state IN (?, ?)",
                            (earlier.state, earlier.outcome, earlier.status_after, earlier.at,
                             earlier.seq, earlier.before, change, request_id, BEGUN, SENT))

    def close(self) -> None:
        self.db.close()
