"""Recording: the journal (what was attempted and how it ended) and the results CSV.

Two files sit side by side:

* ``RESULTS.csv.journal`` — an SQLite database, the source of truth. Before a
  row's POST leaves, the attempt is committed there (write-ahead); its outcome
  is committed as soon as it is known. SQLite in WAL mode survives ``kill -9``
  at any instant: a committed transaction is in the WAL file, an uncommitted one
  is rolled back on the next open. Lookups by key keep memory flat on a
  million-row run (no dict of every key in RAM).
* ``RESULTS.csv`` — what a person opens. Each outcome is appended as it
  happens; when the run ends (or is interrupted cleanly) the file is rewritten
  in input order, one line per input row, reading each row's line back from
  where it was appended.

Commits are grouped. The feeder writes the write-ahead marks of the rows it
queues in one commit per refill, and a worker's POST waits for that commit
(``barrier``); outcomes ride a commit at most ``OUTCOME_DELAY`` later. A row
whose mark was committed but whose outcome was not is looked up on the next
run before anything is resent.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import os
import shutil
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeGuard

from bulksend.errors import LockedError, ResultsError
from bulksend.outcome import FAILED, SENT, UNKNOWN, Outcome

COLUMNS = (
    "row",
    "key",
    "status",
    "request_id",
    "portal_url",
    "contact_id",
    "http_status",
    "attempts",
    "error",
    "sent_at",
)

# Journal statuses beyond the CSV ones: PENDING (known, never attempted) and
# INFLIGHT (an attempt was committed, its outcome was not). INFLIGHT is read
# back as unknown: the POST may have reached the server.
PENDING = "pending"
INFLIGHT = "inflight"

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_START) | {"'"}  # quick pre-check; see neutralise()

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
"""


_now_cache: tuple[int, str] = (0, "")


def utc_now() -> str:
    """UTC now as ISO 8601 to the second; formatted once per second (hot path)."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _now_cache[1]


def neutralise(cell: str) -> str:
    """Keep a spreadsheet from running a cell as a formula (PRODUCT.md, CSV
    contract): prefix ``'``. A cell that already reads ``'=…`` gets one more, so
    that ``unneutralise`` gives back exactly what was written."""
    if cell and cell.lstrip("'").startswith(_FORMULA_START):
        return "'" + cell
    return cell


def unneutralise(cell: str) -> str:
    if cell[:1] == "'" and cell.lstrip("'").startswith(_FORMULA_START):
        return cell[1:]
    return cell


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


def journal_path(results: Path) -> Path:
    return results.with_name(results.name + ".journal")


def remove_journal(results: Path) -> None:
    """Delete a results file's journal, with SQLite's WAL and shared-memory files."""
    journal = journal_path(results)
    for path in (journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")):
        path.unlink(missing_ok=True)


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


class RunLock:
    """One run per results file. ``flock`` dies with its process, so a lock left by
    a killed run never blocks the next one."""

    def __init__(self, results: Path) -> None:
        self.path = lock_path(results)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsError(f"{self.path}: cannot create the lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {other})" if other else ""
            raise LockedError(
                f"{self.path.with_suffix('')}: another bulksend run is using this results file{who}",
                hint="wait for it to finish, or pass a different --results file",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            # The file stays: removing it would race with a run that is opening it.


class Journal:
    """The write-ahead record of every key's attempts and outcome."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        except sqlite3.DatabaseError as exc:
            raise ResultsError(
                f"{path}: not a bulksend journal ({exc})",
                hint="move it away or pick another --results file",
            ) from exc
        self.db.execute("BEGIN")
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
        self.run_id = int(self.get_meta("runs") or "0") + 1
        self.set_meta("runs", str(self.run_id))
        self.commit()

    # -- meta ---------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def delete_meta(self, name: str) -> None:
        self.db.execute("DELETE FROM meta WHERE name=?", (name,))

    # -- reading ------------------------------------------------------------
    def get(self, key: str) -> Record | None:
        self._apply_pending()
        row = self.db.execute(
            f"SELECT {RECORD_COLUMNS} FROM rows WHERE key=?",
            (key,),
        ).fetchone()
        return None if row is None else Record(*row)

    def holder_of(self, request_id: str) -> str | None:
        """The key whose row holds ``request_id``, if any. A full scan (no index:
        it would cost every write): called only when a look-up finds a request."""
        self._apply_pending()
        row = self.db.execute("SELECT key FROM rows WHERE request_id=? LIMIT 1", (request_id,)).fetchone()
        return None if row is None else str(row[0])

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

    def known(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` this journal has seen attempted or settled: any
        status but a bare claim (pending, never attempted)."""
        self._apply_pending()
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in self.db.execute(
                f"SELECT key FROM rows WHERE key IN ({marks}) AND NOT (status=? AND attempts=0)",
                [*chunk, PENDING]))
        return found

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

        ``skipped`` = (number, base run): this run skipped rows up to ``number``
        (see checkpoints.py). A key claimed at one of those rows by a run since
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

    def import_record(self, record: Record) -> None:
        """A record rebuilt from a results CSV; as met by no run (run_id 0)."""
        values = dataclasses.astuple(dataclasses.replace(record, run_id=0))
        self.db.execute(
            f"INSERT OR IGNORE INTO rows ({RECORD_COLUMNS}) VALUES ({','.join('?' * len(values))})", values
        )

    # -- where each results line sits in the live results file -------------
    def index_line(self, row: int, offset: int, size: int) -> None:
        self._index.append((row, offset, size))
        if len(self._index) >= 4096:  # a long stretch of carried rows: keep memory flat
            self._apply_pending()

    def forget_stale(self, base_run: int, after: int) -> None:
        """End of a run that skipped rows up to ``after``: a key claimed since
        ``base_run`` at a later row that this run did not meet is no longer held
        by that row (it was edited): drop the claim, so no later run takes it
        for a skipped row's."""
        self._apply_pending()
        self.db.execute("UPDATE rows SET run_id=0 WHERE run_id>=? AND run_id<? AND row>?",
                        (base_run, self.run_id, after))

    def clear_index(self) -> None:
        self._index.clear()
        self.db.execute("DELETE FROM line_index")

    def iter_index(self) -> Iterator[tuple[int, int, int]]:
        self._apply_pending()
        yield from self.db.execute("SELECT row, offset, size FROM line_index ORDER BY row")

    # -- committing ---------------------------------------------------------
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
        self.commit(keep_claims=True)
        for hook in self.after_commit:
            hook()
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @property
    def commit_due(self) -> bool:
        """An urgent commit is on its way: ``barrier()`` would wait for it."""
        return self._commit_scheduled

    async def barrier(self) -> None:
        """Return once everything recorded so far is committed."""
        if not self._commit_scheduled:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._apply_pending()
        with contextlib.suppress(sqlite3.OperationalError):
            self.db.execute("COMMIT")
        self.db.close()


class _LineFormatter:
    """One CSV line as text, reusing one writer and buffer (hot path)."""

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.writer = csv.writer(self.buf, lineterminator="\r\n")

    def __call__(self, cells: Sequence[str]) -> str:
        # Most lines need no quoting: no cell holds a comma, a quote or a line
        # break (the joined text then has exactly one comma per boundary). For
        # those, the csv module's line is the plain join: 0.3 µs instead of 2.
        try:
            text = ",".join(cells)
        except TypeError:  # a cell that is not text: the csv module writes str() of it
            text = '"'
        if (len(cells) > 1 and text.count(",") == len(cells) - 1
                and '"' not in text and "\n" not in text and "\r" not in text):
            return text + "\r\n"
        self.buf.seek(0)
        self.buf.truncate()
        self.writer.writerow(cells)
        return self.buf.getvalue()


_line = _LineFormatter()


class _Limited:
    """The first ``size`` bytes of a binary file, for shutil.copyfileobj."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


class ResultsWriter:
    """Owns the results CSV: appends each outcome as it happens, then rewrites
    the file in input order at the end of the run."""

    def __init__(
        self,
        path: Path,
        journal: Journal | None,
        input_columns: Sequence[str],
        *,
        with_payload: bool = False,
    ) -> None:
        self.path = path
        self.journal = journal
        self.input_columns = list(input_columns)
        self.with_payload = with_payload
        self.header = [*COLUMNS, *(["payload"] if with_payload else []), *self.input_columns]
        self._live: IO[str] | None = None
        # Where each row's line sits in the live file (byte offset and size):
        # the in-order rewrite at the end reads the lines back from the live
        # file itself. Kept in the journal (memory stays flat on a million
        # rows), or in these two arrays when there is no journal.
        self._offsets = array("q")
        self._sizes = array("q")
        self._pos = 0
        self._keep = 0  # bytes of the existing file kept at its start

    def open(self, keep: int = 0) -> None:
        """Start the live file; ``keep`` > 0: keep the existing file's first
        ``keep`` bytes (header and the lines of rows skipped, see checkpoints.py)."""
        try:
            if keep:
                os.truncate(self.path, keep)
                self._live = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            else:
                # utf-8-sig: Excel opens a BOM-marked CSV with accents intact.
                self._live = open(self.path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115
        except OSError as exc:
            raise ResultsError(
                f"{self.path}: cannot write the results file: {exc.strerror}"
            ) from exc
        self._keep = keep
        if keep:
            self._pos = keep
        else:
            header = _line(self.header)
            self._live.write(header)
            self._pos = len(codecs.BOM_UTF8) + len(header.encode("utf-8"))
        if self.journal is not None:
            self.journal.clear_index()
            self.journal.after_commit.append(self.flush)

    def format(self, outcome: Outcome) -> str:
        cells = [
            str(outcome.row),
            outcome.key,
            outcome.status,
            outcome.request_id,
            outcome.portal_url,
            outcome.contact_id,
            "" if outcome.http_status is None else str(outcome.http_status),
            str(outcome.attempts),
            outcome.error,
            outcome.sent_at,
        ]
        if self.with_payload:
            cells.append(
                "" if outcome.payload is None
                else json.dumps(outcome.payload, ensure_ascii=False, separators=(",", ":"))
            )
        values = outcome.values
        cells.extend(values.get(c, "") for c in self.input_columns)
        for i, cell in enumerate(cells):
            if cell and cell[0] in _FORMULA_FIRST:
                cells[i] = neutralise(cell)
        return _line(cells)

    def write(self, outcome: Outcome) -> None:
        line = self.format(outcome)
        assert self._live is not None
        self._live.write(line)
        row = outcome.row
        size = len(line.encode("utf-8"))
        if self.journal is not None:
            self.journal.index_line(row, self._pos, size)  # a row written twice: the later wins
        else:
            if row >= len(self._offsets):
                grow = row + 1 - len(self._offsets) + 4096
                self._offsets.extend(array("q", [-1]) * grow)
                self._sizes.extend(array("q", [0]) * grow)
            self._offsets[row] = self._pos
            self._sizes[row] = size
        self._pos += size

    def flush(self) -> None:
        if self._live is not None:
            self._live.flush()

    def finish(self, after: Sequence[int] = ()) -> dict[int, int]:
        """Rewrite the file in input order: one line per input row. Returns, for
        each row number in ``after`` (ascending), the size of the file's part
        that holds the header and the lines of rows up to that one."""
        if self._live is not None:
            self._live.close()
            self._live = None
        if self.journal is not None:
            self.journal.commit()
        tmp = self.path.with_name(self.path.name + ".tmp")
        ends: dict[int, int] = {}
        wanted = list(after)
        with open(self.path, "rb") as live, open(tmp, "wb") as out:
            if self._keep:
                shutil.copyfileobj(_Limited(live, self._keep), out, 1 << 20)
            else:
                out.write(codecs.BOM_UTF8 + _line(self.header).encode("utf-8"))
            index: Iterable[tuple[int, int, int]] = (
                self.journal.iter_index() if self.journal is not None
                else ((row, o, s) for row, (o, s) in enumerate(zip(self._offsets, self._sizes, strict=True)))
            )
            for row, offset, size in index:
                while wanted and wanted[0] < row:
                    ends[wanted.pop(0)] = out.tell()
                if offset >= 0:
                    live.seek(offset)
                    out.write(live.read(size))
            for number in wanted:
                ends[number] = out.tell()
        os.replace(tmp, self.path)
        return ends

    def abandon(self) -> None:
        if self._live is not None:
            self._live.close()
            self._live = None


def is_results_header(header: Sequence[str] | None) -> TypeGuard[Sequence[str]]:
    return header is not None and tuple(header[: len(COLUMNS)]) == COLUMNS


def not_results_file(path: Path) -> ResultsError:
    return ResultsError(
        f"{path}: not a bulksend results file (its first columns are not {', '.join(COLUMNS[:3])}, …)",
        hint="pass the results CSV a send wrote, or another --results file name",
    )


def read_results(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a results CSV as dicts (the contract's columns plus the input's)."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file: {exc.strerror}") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not is_results_header(header):
                raise not_results_file(path)
            for cells in reader:
                yield {h: unneutralise(c) for h, c in zip(header, cells, strict=False)}
        except (UnicodeDecodeError, csv.Error):
            raise not_results_file(path) from None


def check_results_target(results: Path, contacts: str) -> None:
    """Refuse a --results path whose file is not ours to overwrite: the input
    itself, or any existing file that is not a bulksend results CSV."""
    parent = results.parent
    if not parent.is_dir():
        raise ResultsError(f"{results}: the folder {parent} does not exist",
                           hint="create it, or pass another --results path")
    if results.is_dir():
        raise ResultsError(f"{results}: is a directory", hint="--results takes a file name")
    if not results.exists():
        return
    if contacts != "-":
        try:
            same = os.path.samefile(results, contacts)
        except OSError:
            same = False
        if same:
            raise ResultsError(f"{results}: is the contacts file itself; refusing to overwrite it",
                               hint="pass another --results file name")
    if results.stat().st_size == 0:
        return
    try:
        with open(results, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        header = None
    if not is_results_header(header):
        raise ResultsError(
            f"{results}: exists and is not a bulksend results file; refusing to overwrite it",
            hint="pass another --results file name",
        )


def seed_journal_from_csv(journal: Journal, results: Path) -> int:
    """A results CSV without its journal (copied elsewhere, journal deleted):
    rebuild the journal from it so that sent rows are never sent again."""
    n = 0
    for line in read_results(results):
        status = line.get("status", "")
        key = line.get("key", "")
        if not key or status not in (SENT, FAILED, UNKNOWN):
            continue
        http = line.get("http_status", "")
        journal.import_record(
            Record(
                key=key,
                row=int(line.get("row") or 0),
                status=status,
                request_id=line.get("request_id", ""),
                portal_url=line.get("portal_url", ""),
                contact_id=line.get("contact_id", ""),
                http_status=int(http) if http.isdigit() else None,
                attempts=int(line.get("attempts") or 0),
                error=line.get("error", ""),
                sent_at=line.get("sent_at", ""),
                # Unknown: we cannot tell when it was tried; look back a day.
                first_attempt_at=line.get("sent_at", ""),
                run_id=0,
            )
        )
        n += 1
    journal.commit()
    return n
