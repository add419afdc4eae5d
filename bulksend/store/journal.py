"""The journal: what was attempted for each key, and how it ended.

``RESULTS.csv.journal`` is an SQLite database, the source of truth. Before a
row's POST leaves, the attempt is committed there (write-ahead); its outcome is
committed as soon as it is known. SQLite in WAL mode survives ``kill -9`` at
any instant: a committed transaction is in the WAL file, an uncommitted one is
rolled back on the next open. Lookups by key keep memory flat on a million-row
run (no dict of every key in RAM).

Commits are grouped. The feeder writes the write-ahead marks of the rows it
queues in one commit per refill, and a worker's POST waits for that commit
(``barrier``); outcomes ride a commit at most ``OUTCOME_DELAY`` later. A row
whose mark was committed but whose outcome was not is looked up on the next
run before anything is resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from bulksend.common.errors import AbortError, BulksendError, ResultsError
from bulksend.common.outcome import FAILED, SENT, UNKNOWN, Outcome
from bulksend.store.runlock import storage_error

# Journal statuses beyond the CSV ones: PENDING (known, never attempted) and
# INFLIGHT (an attempt was committed, its outcome was not). INFLIGHT is read
# back as unknown: the POST may have reached the server.
PENDING = "pending"
INFLIGHT = "inflight"

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
    status TEXT NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    portal_url TEXT NOT NULL DEFAULT '',
    contact_id TEXT NOT NULL DEFAULT '',
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    sent_at TEXT NOT NULL DEFAULT '',
    first_attempt_at TEXT NOT NULL DEFAULT '',
    run_id INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL DEFAULT ''  -- JSON {campaignId, contact}: what a look-up needs
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS line_index (
    row INTEGER PRIMARY KEY, offset INTEGER NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- What `status` and `update` wrote into the results file's tracking columns,
-- by key, taken from the file before a send rewrites it (issue 27): JSON list.
CREATE TABLE IF NOT EXISTS tracked (key TEXT PRIMARY KEY, cells TEXT NOT NULL) WITHOUT ROWID;
"""

# Meta a send writes for the commands that come after it (issue 27): what the
# results file remembers of the send that made it. Never the key.
API_URL = "api_url"  # the API base URL the last send sent to
DUE_READING = "due_reading"  # JSON: how its mapping read dueDate: {"format", "timezone", "type"}
SEND_INPUT = "send_input"  # JSON: its contacts, mapping and reading options, and the folder it ran in


def peek_meta(path: Path, names: Sequence[str]) -> dict[str, str]:
    """The values of ``names`` in the meta of the journal at ``path``, read
    only (no run is counted, no lock is needed): those it holds; {} when there
    is no journal or it cannot be read."""
    if not path.exists():
        return {}
    # A journal closed cleanly has no -wal: read it as immutable, which makes no
    # -wal or -shm beside it (a read-only connection would, and leave them).
    wal = path.with_name(path.name + "-wal").exists()
    try:
        name = str(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")  # as a URI reads them
        db = sqlite3.connect(f"file:{name}?mode=ro" + ("" if wal else "&immutable=1"), uri=True)
        try:
            marks = ",".join("?" * len(names))
            found = db.execute(f"SELECT name, value FROM meta WHERE name IN ({marks})", list(names))
            return {str(name): str(value) for name, value in found}
        finally:
            db.close()
    except sqlite3.Error:
        return {}



_now_cache: tuple[int, str] = (0, "")


def utc_now() -> str:
    """UTC now as ISO 8601 to the second; formatted once per second (hot path)."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _now_cache[1]


@dataclass(slots=True)
class Record:
    """A key's row in the journal."""

    key: str
    row: int
    status: str
    request_id: str
    portal_url: str
    contact_id: str
    http_status: int | None
    attempts: int
    error: str
    sent_at: str
    first_attempt_at: str
    run_id: int
    target: str = ""


# The journal columns a Record holds, in its field order.
RECORD_COLUMNS = ",".join(f.name for f in dataclasses.fields(Record))


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _storage(method: Callable[Concatenate[Journal, _P], _T]) -> Callable[Concatenate[Journal, _P], _T]:
    """A journal method that reads or writes SQLite: once a write has failed (a
    full disk), every later call raises that failure again; an SQLite error
    becomes a one-line BulksendError (``Journal.fail``), never a traceback."""

    def wrapper(self: Journal, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self.broken is not None:
            raise self.broken
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise self.fail(exc) from exc

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


# Set in the journal when it was found to know fewer rows than its results CSV
# (its -wal lost, an older copy): rows it never met may have been in flight
# when the newer state was lost, so they are looked up before they are sent,
# until a run has met every row (see ``claim_many`` and ``seed_journal_from_csv``).
LOOKUP_NEW = "lookup_new_keys"


class Journal:
    """The write-ahead record of every key's attempts and outcome.

    Fails closed: when a commit cannot be written (disk full, I/O error), the
    journal is ``broken``: ``barrier()`` and every later read or write raise
    that error (an AbortError, exit 3), so no POST leaves whose attempt is not
    on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.broken: BulksendError | None = None
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit is in the WAL when it returns; it survives a killed
            # process (not a power cut, which is not what we guard against here).
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (WAL → database, with an fsync) every ~40 MB of WAL
            # rather than every 4 MB: they were a visible share of a fast run.
            self.db.execute("PRAGMA wal_autocheckpoint=10000")
            self.db.executescript(SCHEMA)
            self.db.execute("BEGIN")
        except sqlite3.DatabaseError as exc:
            error = storage_error(path, exc, "open the journal")
            if isinstance(error, AbortError):  # a full disk, not a foreign file
                raise error from exc
            raise ResultsError(
                f"{path}: not a bulksend journal ({exc})",
                hint="move it away or pick another --results file",
            ) from exc
        # Writes wait here for the next grouped commit, which applies each list
        # with one executemany (far cheaper per row than an execute each).
        self._attempts: list[tuple[str, str, str]] = []
        self._records: list[tuple[object, ...]] = []
        self._index: list[tuple[int, int, int]] = []  # (row, offset, size) of results lines
        # New keys met by claim_many, not written yet. A new key whose attempt
        # begins before they are is written once, already in flight (one INSERT
        # instead of an INSERT and an UPDATE), so grouped commits leave them
        # waiting: an unwritten claim reads as a new key, as a pending one
        # would. Every other write-out (the next claim_many included) writes
        # what is left as pending.
        self._claims: dict[str, tuple[str, int, str, str, int, str]] = {}
        self._marked: list[tuple[str, int, str, str, int, str]] = []  # claims whose attempt began
        self._commit_scheduled = False  # an urgent commit is on its way
        self._lazy: asyncio.TimerHandle | None = None  # a delayed one is
        self._waiters: list[asyncio.Future[None]] = []
        self.after_commit: list[Callable[[], None]] = []
        self._behind: threading.Thread | None = None  # checkpoint_behind's thread
        self.run_id = int(self.get_meta("runs") or "0") + 1
        self.set_meta("runs", str(self.run_id))
        self.lookup_new = self.get_meta(LOOKUP_NEW) is not None
        self.commit()

    def fail(self, exc: BaseException) -> BulksendError:
        """Mark the journal broken by ``exc`` (first failure wins) and return
        the error every later call raises."""
        if self.broken is None:
            if isinstance(exc, BulksendError):
                self.broken = exc
            elif isinstance(exc, OSError | sqlite3.Error):
                self.broken = storage_error(self.path, exc, "record the run in the journal")
                if not isinstance(self.broken, AbortError):  # the journal is unusable either way
                    self.broken = AbortError(self.broken.message, hint=self.broken.hint)
            else:
                self.broken = AbortError(f"{self.path}: cannot record the run in the journal: {exc}")
        return self.broken

    # -- meta ---------------------------------------------------------------
    @_storage
    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    @_storage
    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    @_storage
    def delete_meta(self, name: str) -> None:
        self.db.execute("DELETE FROM meta WHERE name=?", (name,))

    # -- reading ------------------------------------------------------------
    @_storage
    def get(self, key: str) -> Record | None:
        self._apply_pending()
        row = self.db.execute(
            f"SELECT {RECORD_COLUMNS} FROM rows WHERE key=?",
            (key,),
        ).fetchone()
        return None if row is None else Record(*row)

    @_storage
    def holder_of(self, request_id: str) -> str | None:
        """The key whose row holds ``request_id``, if any. A full scan (no index:
        it would cost every write): called only when a look-up finds a request."""
        self._apply_pending()
        row = self.db.execute("SELECT key FROM rows WHERE request_id=? LIMIT 1", (request_id,)).fetchone()
        return None if row is None else str(row[0])

    @_storage
    def holders(self, request_ids: Sequence[str]) -> dict[str, str]:
        """``{request_id: key}`` for those of ``request_ids`` some row holds
        (one scan per 500 ids, for many at once)."""
        self._apply_pending()
        held: dict[str, str] = {}
        for i in range(0, len(request_ids), 500):
            chunk = request_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            held.update((rid, key) for key, rid in self.db.execute(
                f"SELECT key, request_id FROM rows WHERE request_id IN ({marks})", chunk))
        return held

    @_storage
    def attempted_any(self) -> bool:
        """Whether any key was ever attempted or settled (not a first run)."""
        self._apply_pending()
        found = self.db.execute("SELECT 1 FROM rows WHERE NOT (status=? AND attempts=0) LIMIT 1", (PENDING,))
        return found.fetchone() is not None

    @_storage
    def unsent(self, keys: Sequence[str], *, only_failed: bool = False) -> set[str]:
        """Those of ``keys`` no request is known for and none may be in flight:
        the pre-send check's rows (existing.py; issue 23, case 2). A key the
        journal never met (unless ``lookup_new``: such a key is looked up, at
        any time, before it is sent), one met but never attempted (``pending``)
        and one ``failed`` (its answers said "not created"; the campaign may
        have gained a request since). ``only_failed``: the failed ones only."""
        self._apply_pending()
        wanted = (FAILED,) if only_failed else (FAILED, PENDING)
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT key, status FROM rows WHERE key IN ({marks})", chunk))
        new_ok = not (only_failed or self.lookup_new)
        return {k for k in keys if (found[k] in wanted if k in found else new_ok)}

    @_storage
    def adopt(self, key: str, row: int, found: Any, note: str) -> None:
        """Record ``key`` as sent with a request that existed before this run
        (``found``: a lookup.Found), as ``--skip-existing`` asks."""
        self._apply_pending()
        self.db.execute(
            "INSERT INTO rows (key,row,status,request_id,portal_url,contact_id,error,sent_at,run_id) "
            "VALUES (?,?,?,?,?,?,?,?,0) ON CONFLICT(key) DO UPDATE SET status=excluded.status, "
            "request_id=excluded.request_id, portal_url=excluded.portal_url, "
            "contact_id=excluded.contact_id, error=excluded.error, sent_at=excluded.sent_at",
            (key, row, SENT, found.request_id, found.portal_url, found.contact_id, note, found.created_at),
        )

    # -- writing ------------------------------------------------------------
    @_storage
    def unsettled(self) -> list[Record]:
        """Keys whose last attempt's outcome is not known."""
        self._apply_pending()
        return [
            Record(*r)
            for r in self.db.execute(
                f"SELECT {RECORD_COLUMNS} FROM rows WHERE status IN (?, ?)",
                (INFLIGHT, UNKNOWN),
            )
        ]

    CLAIM_CHUNK = 64  # keys the feeder claims per claim_many() call

    @_storage
    def claim_many(
        self, items: Sequence[tuple[str, int, Any]], target_of: Callable[[Any], str],
        skipped: tuple[int, int] | None = None,
    ) -> list[Record | None]:
        """Mark each key as met in this run at its row, in order, with one
        SELECT and at most one UPDATE batch (new keys are written out later, see
        ``_claims``). For each item:
        None when the key is new; else its record as it was before this run met
        it (``row`` being the row that now holds the key). A key met earlier in
        this run is a duplicate: its record has ``run_id == self.run_id`` and
        the first row that met it. ``target_of(payload)`` is computed only for
        keys whose look-up target is not stored yet.

        After a rebuild from the results CSV (``LOOKUP_NEW``), a new key comes
        back as an ``unknown`` record (run 0, no first attempt): the caller
        looks it up before sending it.

        ``skipped`` = (number, base run): this run skipped rows up to ``number``
        (see store/checkpoints.py). A key claimed at one of those rows by a run since
        ``base run`` is still held by that row, so it counts as met in this run."""
        self._apply_pending()
        keys = list({key for key, _, _ in items})
        found: dict[str, Record] = {}
        marks = ",".join("?" * len(keys))
        for got in self.db.execute(
            f"SELECT {RECORD_COLUMNS} FROM rows WHERE key IN ({marks})",
            keys,
        ):
            found[got[0]] = Record(*got)
        results: list[Record | None] = []
        updates: list[tuple[int, int, str, str]] = []
        first_row: dict[str, int] = {}  # keys met earlier in this batch
        for key, row, payload in items:
            if key in first_row:  # a duplicate within the batch
                record = found.get(key)
                results.append(Record(key, first_row[key], PENDING if record is None else record.status,
                                      "", "", "", None, 0, "", "", "", self.run_id, ""))
                continue
            record = found.get(key)
            if (record is not None and skipped is not None and record.row <= skipped[0]
                    and skipped[1] <= record.run_id < self.run_id):
                record = dataclasses.replace(record, run_id=self.run_id)  # held by a skipped row
                first_row[key] = record.row
            if record is None and self.lookup_new:
                # Maybe in flight when a newer journal state was lost: look it up first.
                self._claims[key] = (key, row, UNKNOWN, "", self.run_id, target_of(payload))
                first_row[key] = row
                results.append(Record(key, row, UNKNOWN, "", "", "", None, 0, "", "", "", 0, ""))
                continue
            results.append(record)
            if record is None:
                self._claims[key] = (key, row, PENDING, "", self.run_id, target_of(payload))
                first_row[key] = row
            elif record.run_id != self.run_id:
                target = record.target or target_of(payload)
                updates.append((row, self.run_id, target, key))
                first_row[key] = row
                record.row = row  # the row that now holds the key
            # else: met in an earlier batch of this run; the caller sees a duplicate
        if updates:
            self.db.executemany("UPDATE rows SET row=?, run_id=?, target=? WHERE key=?", updates)
        return results

    def begin_attempt(self, key: str) -> None:
        """Write-ahead: the POST for ``key`` is about to leave. Await ``barrier()``
        before sending: it returns once this is committed."""
        claim = self._claims.pop(key, None)
        if claim is not None:  # new, not written yet: written once, in flight
            self._marked.append((key, claim[1], INFLIGHT, utc_now(), claim[4], claim[5]))
        else:
            if self._records:  # keep the order: an earlier outcome, then this attempt
                self._apply_pending(keep_claims=True)
            self._attempts.append((INFLIGHT, utc_now(), key))
        self._schedule_commit(urgent=True)

    @_storage
    def restore(self, key: str, status: str) -> None:
        """A row marked in flight was never sent after all (the run stopped
        first): give it back its earlier status, so no look-up is needed."""
        self._apply_pending()
        self.db.execute("UPDATE rows SET status=? WHERE key=? AND status=?", (status, key, INFLIGHT))
        self._schedule_commit(urgent=True)

    def record(self, outcome: Outcome, *, status: str | None = None) -> None:
        """The outcome of a keyed row (sent/failed/unknown) is known; ``status``
        overrides the outcome's own (a retryable failure recorded as failed)."""
        self._records.append((
            status or outcome.status,
            outcome.attempts,
            outcome.request_id,
            outcome.portal_url,
            outcome.contact_id,
            outcome.http_status,
            outcome.error,
            outcome.sent_at,
            outcome.key,
        ))
        self._schedule_commit(urgent=False)

    _INSERT = "INSERT INTO rows (key,row,status,first_attempt_at,run_id,target) VALUES (?,?,?,?,?,?)"

    def _apply_pending(self, *, keep_claims: bool = False) -> None:
        # Order matters: a key's row, then an attempt, then its outcome may
        # wait in the same group.
        if self._marked:
            self.db.executemany(self._INSERT, self._marked)
            self._marked.clear()
        if self._claims and not keep_claims:
            self.db.executemany(self._INSERT, self._claims.values())
            self._claims.clear()
        if self._attempts:
            self.db.executemany(
                "UPDATE rows SET status=?, first_attempt_at="
                "CASE WHEN first_attempt_at='' THEN ? ELSE first_attempt_at END WHERE key=?",
                self._attempts,
            )
            self._attempts.clear()
        if self._records:
            self.db.executemany(
                "UPDATE rows SET status=?, attempts=?, request_id=?, portal_url=?, contact_id=?, "
                "http_status=?, error=?, sent_at=? WHERE key=?",
                self._records,
            )
            self._records.clear()
        if self._index:
            self.db.executemany("INSERT OR REPLACE INTO line_index VALUES (?, ?, ?)", self._index)
            self._index.clear()

    @_storage
    def import_record(self, record: Record) -> None:
        """A record rebuilt from a results CSV, as met by no run (run_id 0);
        it replaces what the journal held for the key."""
        values = dataclasses.astuple(dataclasses.replace(record, run_id=0))
        self.db.execute(
            f"INSERT OR REPLACE INTO rows ({RECORD_COLUMNS}) VALUES ({','.join('?' * len(values))})", values
        )

    @_storage
    def statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """The journal's status of each of ``keys`` it knows (at most ~900 keys a call)."""
        self._apply_pending()
        marks = ",".join("?" * len(keys))
        return dict(self.db.execute(f"SELECT key, status FROM rows WHERE key IN ({marks})", list(keys)))

    # -- the tracking columns of status and update (issue 27) ---------------
    @_storage
    def keep_tracked(self, cells: Iterable[tuple[str, Sequence[str]]]) -> int:
        """Replace the tracking cells kept (``(key, cells)`` pairs, from the
        results file before a send rewrites it); returns how many keys have some."""
        self.db.execute("DELETE FROM tracked")
        kept = 0
        chunk: list[tuple[str, str]] = []
        for key, values in cells:
            chunk.append((key, json.dumps(list(values), ensure_ascii=False)))
            if len(chunk) >= 1000:
                self.db.executemany("INSERT OR REPLACE INTO tracked VALUES (?, ?)", chunk)
                kept += len(chunk)
                chunk.clear()
        self.db.executemany("INSERT OR REPLACE INTO tracked VALUES (?, ?)", chunk)
        return kept + len(chunk)

    @_storage
    def has_tracked(self) -> bool:
        """Whether any key has tracking cells kept."""
        return self.db.execute("SELECT 1 FROM tracked LIMIT 1").fetchone() is not None

    @_storage
    def tracked(self, key: str) -> list[str] | None:
        """The tracking cells kept for ``key``, or None."""
        row = self.db.execute("SELECT cells FROM tracked WHERE key=?", (key,)).fetchone()
        return None if row is None else [str(cell) for cell in json.loads(row[0])]

    # -- where each results line sits in the live results file -------------
    def index_line(self, row: int, offset: int, size: int) -> None:
        self._index.append((row, offset, size))
        if len(self._index) >= 4096:  # a long stretch of carried rows: keep memory flat
            self._apply_pending()

    @_storage
    def forget_stale(self, base_run: int, after: int) -> None:
        """End of a run that skipped rows up to ``after``: a key claimed since
        ``base_run`` at a later row that this run did not meet is no longer held
        by that row (it was edited): drop the claim, so no later run takes it
        for a skipped row's."""
        self._apply_pending()
        self.db.execute("UPDATE rows SET run_id=0 WHERE run_id>=? AND run_id<? AND row>?",
                        (base_run, self.run_id, after))

    @_storage
    def clear_index(self) -> None:
        self._index.clear()
        self.db.execute("DELETE FROM line_index")

    def iter_index(self) -> Iterator[tuple[int, int, int]]:
        """(row, offset, size) of each results line, by row; read a few
        thousand at a time (memory stays flat on a million rows)."""
        cursor = self._index_cursor()
        while rows := self._fetch(cursor):
            yield from rows

    @_storage
    def _index_cursor(self) -> sqlite3.Cursor:
        self._apply_pending()
        return self.db.execute("SELECT row, offset, size FROM line_index ORDER BY row")

    @_storage
    def _fetch(self, cursor: sqlite3.Cursor) -> list[tuple[int, int, int]]:
        return cursor.fetchmany(4096)

    # -- committing ---------------------------------------------------------
    @_storage
    def commit(self, *, keep_claims: bool = False) -> None:
        self._apply_pending(keep_claims=keep_claims)
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    # An attempt's mark is urgent: its POST waits for the commit (barrier). An
    # outcome is not: it rides along within OUTCOME_DELAY. A kill in between
    # leaves the row marked in flight, and the next run looks it up first.
    OUTCOME_DELAY = 0.05

    def _schedule_commit(self, *, urgent: bool) -> None:
        if self._commit_scheduled or (self._lazy is not None and not urgent):
            return  # already on its way (and finding the loop costs a getpid() system call)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: commit now
            self._grouped_commit()
            if self.broken is not None:
                raise self.broken from None
            return
        if urgent:
            if self._lazy is not None:
                self._lazy.cancel()
                self._lazy = None
            self._commit_scheduled = True
            loop.call_soon(self._grouped_commit)
        elif self._lazy is None:
            self._lazy = loop.call_later(self.OUTCOME_DELAY, self._grouped_commit)

    def _grouped_commit(self) -> None:
        self._commit_scheduled = False
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        waiters, self._waiters = self._waiters, []
        try:
            self.commit(keep_claims=True)
            for hook in self.after_commit:  # the results file's flush: a full disk fails it too
                hook()
        except (BulksendError, OSError, sqlite3.Error) as exc:
            # Run from the event loop (call_soon): nothing above would catch
            # it. The waiting POSTs get the error instead of leaving.
            error = self.fail(exc)
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(error)
            return
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @property
    def commit_due(self) -> bool:
        """An urgent commit is on its way (``barrier()`` would wait for it), or
        the journal is broken (``barrier()`` would raise)."""
        return self._commit_scheduled or self.broken is not None

    async def barrier(self) -> None:
        """Return once everything recorded so far is committed; raise the
        journal's failure (AbortError) when it could not be."""
        if self.broken is not None:
            raise self.broken
        if not self._commit_scheduled:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def checkpoint_behind(self) -> None:
        """Copy the WAL into the database from a thread of its own, on a second
        connection, while this one goes on (the run's end: the results file's
        rewrite and the checkpoints' hashing). SQLite does the copying with the
        GIL released, so it overlaps that work instead of following it in
        ``close`` (issue 29). A PASSIVE checkpoint: it waits for no one and
        changes no committed data; ``close`` checkpoints whatever is left.
        Best effort: any error leaves it all to ``close``."""
        if self._behind is not None or self.broken is not None:
            return

        def run() -> None:
            with contextlib.suppress(sqlite3.Error, OSError):
                db = sqlite3.connect(self.path, isolation_level=None)
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    db.close()

        self._behind = threading.Thread(target=run, name="journal-checkpoint", daemon=True)
        self._behind.start()

    def close(self) -> None:
        if self._behind is not None:
            self._behind.join()
        with contextlib.suppress(sqlite3.Error):
            self._apply_pending()
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("COMMIT")
        self.db.close()


class LineIndex:
    """Where each line of the live results file sits: (row, offset, size), as
    written. The first ``MEMORY_LINES`` lines are kept here, in three arrays
    (24 bytes a line); past them, every line goes to the journal's line_index
    table, which keeps memory flat on a million rows. The table alone costs an
    SQLite insert per row and a sorted read at the end (issue 29)."""

    MEMORY_LINES = 1 << 17

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.rows, self.offsets, self.sizes = array("q"), array("q"), array("q")
        self.spilled = False

    def clear(self) -> None:
        """No line yet (nor any in the journal: a run that stopped may have left some)."""
        self.rows, self.offsets, self.sizes = array("q"), array("q"), array("q")
        self.spilled = False
        self.journal.clear_index()

    def add(self, row: int, offset: int, size: int) -> None:
        """Row ``row``'s line was written at ``offset``, ``size`` bytes long."""
        if self.spilled:
            self.journal.index_line(row, offset, size)
            return
        self.rows.append(row)
        self.offsets.append(offset)
        self.sizes.append(size)
        if len(self.rows) >= self.MEMORY_LINES:
            for entry in zip(self.rows, self.offsets, self.sizes, strict=True):
                self.journal.index_line(*entry)
            self.rows, self.offsets, self.sizes = array("q"), array("q"), array("q")
            self.spilled = True

    def by_row(self, *, in_order: bool) -> Iterable[tuple[int, int, int]]:
        """(row, offset, size) of each row's last line, by row; ``in_order``:
        the lines were written for ever higher rows (no sort needed)."""
        if self.spilled:
            return self.journal.iter_index()
        if in_order:
            return zip(self.rows, self.offsets, self.sizes, strict=True)
        return self._sorted()

    def _sorted(self) -> Iterator[tuple[int, int, int]]:
        rows = self.rows
        order = sorted(range(len(rows)), key=rows.__getitem__)  # stable: a row's lines in the order written
        last = len(order) - 1
        for j, i in enumerate(order):
            if j < last and rows[order[j + 1]] == rows[i]:
                continue  # a row written twice: its later line wins
            yield rows[i], self.offsets[i], self.sizes[i]
