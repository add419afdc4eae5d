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
import errno
import fcntl
import io
import json
import os
import shutil
import sqlite3
import stat
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeGuard, TypeVar

from bulksend.errors import AbortError, BulksendError, LockedError, ResultsError, UsageError
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


def journal_files(results: Path) -> tuple[Path, Path, Path]:
    """The journal and SQLite's two working files beside it: these three and the
    results CSV belong together (a journal without its ``-wal`` is an older state)."""
    journal = journal_path(results)
    return journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")


def remove_journal(results: Path) -> None:
    """Delete a results file's journal, with SQLite's WAL and shared-memory files."""
    for path in journal_files(results):
        path.unlink(missing_ok=True)


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


def tmp_path(results: Path) -> Path:
    """Where the results CSV is rewritten before it replaces the file (atomically)."""
    return results.with_name(results.name + ".tmp")


def side_files(results: Path) -> list[tuple[str, Path]]:
    """Every file a run writes beside RESULTS.csv, with what it is (for messages)."""
    journal, wal, shm = journal_files(results)
    return [("its journal", journal), ("its journal's -wal", wal), ("its journal's -shm", shm),
            ("its lock", lock_path(results)), ("its rewrite", tmp_path(results))]


# -- one name per file: links are refused, never followed (issue 11) --------
# The lock and the journal are found by the results file's *name*. A second
# name for the same file (a symbolic or a hard link) would give a second lock
# and a second journal, and a second run could send the same rows again. So a
# results file, and every side file, must be a plain file with one name.

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def storage_error(path: Path | str, exc: OSError | sqlite3.Error, doing: str) -> BulksendError:
    """The error for a file that cannot be written. A full disk (or quota, or an
    I/O error) is an abort, exit 3: free space and rerun, it resumes. Anything
    else (no permission, a folder in the way) is a usage error, exit 2."""
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
    else:
        cause = str(exc)
        full = "full" in cause or "disk I/O" in cause
    if full:
        return AbortError(f"{path}: cannot {doing}: {cause}; nothing more is sent",
                          hint=f"free space on the disk that holds {path}, then rerun the same command: "
                          "it resumes")
    return ResultsError(f"{path}: cannot {doing}: {cause}")


def refuse_link(path: Path, what: str, hint: str) -> None:
    """Raise ResultsError when ``path`` is a symbolic link, or a file with more
    than one name (``st_nlink`` > 1). A missing file passes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ResultsError(f"{path}: cannot check the {what}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise ResultsError(f"{path}: the {what} is a symbolic link (to {os.readlink(path)}); "
                           "bulksend never writes through a link", hint=hint)
    if st.st_nlink > 1:
        raise ResultsError(f"{path}: the {what} has {st.st_nlink} names (hard links); bulksend "
                           "needs it to have one, or two runs could each think it is theirs", hint=hint)


def check_no_links(results: Path) -> None:
    """The results file and every side file beside it: plain files with one name."""
    real = os.path.realpath(results)
    refuse_link(results, "results file",
                f"pass the file's own path (--results {real})" if real != os.path.abspath(results)
                else "pass a results file with one name (copy it, then remove the extra names)")
    for what, path in side_files(results):
        refuse_link(path, f"results file's {what.removeprefix('its ')} file",
                    f"remove {path} (only the link goes), check who made it, and rerun")


def _check_one_name(fd: int, path: Path, what: str) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        shape = "is not a plain file" if not stat.S_ISREG(st.st_mode) else f"has {st.st_nlink} names"
        raise ResultsError(f"{path}: the {what} {shape}; bulksend never writes through a link",
                           hint=f"remove {path} and rerun")
    return st


def open_nofollow(path: Path, flags: int, what: str, mode: int = 0o666) -> tuple[int, os.stat_result]:
    """``os.open`` that never follows a symbolic link and refuses a file with
    other names: (fd, its stat). Raises ResultsError, or AbortError when the
    disk is full (see ``storage_error``)."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ResultsError(f"{path}: the {what} is a symbolic link; bulksend never writes through a link",
                               hint=f"remove {path} (only the link goes) and rerun") from None
        raise storage_error(path, exc, f"open the {what}") from exc
    return fd, _check_one_name(fd, path, what)


def create_exclusive(path: Path, what: str) -> int:
    """A new file at ``path``, created here (O_EXCL, never through a link). One
    left there (by a killed run, or planted) is removed first: unlinking a
    name never touches the file a link points to."""
    for _ in range(3):
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except OSError as exc:
            raise storage_error(path, exc, f"create the {what}") from exc
    raise ResultsError(f"{path}: the {what} keeps coming back as another file; refusing to write it",
                       hint="check what else writes in this folder")


class RunLock:
    """One run per results file. ``flock`` dies with its process, so a lock left by
    a killed run never blocks the next one.

    The lock file is opened without following a link and must have one name;
    once it is held, the results file and its side files are checked the same
    way (``check_no_links``), so a second name for the results file cannot get
    a second lock. Raises LockedError when another run holds it, ResultsError
    for a link, AbortError when the disk is full."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.path = lock_path(results)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd, _ = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, "lock file", 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {other})" if other else ""
            raise LockedError(
                f"{self.results}: another bulksend run is using this results file{who}",
                hint="wait for it to finish, or pass a different --results file",
            ) from None
        try:
            check_no_links(self.results)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            os.close(fd)
            raise storage_error(self.path, exc, "write the lock file") from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            # The file stays: removing it would race with a run that is opening it.


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

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._apply_pending()
        with contextlib.suppress(sqlite3.Error):
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
        self._identity: tuple[int, int] | None = None  # (device, inode) of the live file

    def open(self, keep: int = 0) -> None:
        """Start the live file; ``keep`` > 0: keep the existing file's first
        ``keep`` bytes (header and the lines of rows skipped, see checkpoints.py)."""
        if self.journal is not None:
            # The file is about to change: the journal no longer vouches for it.
            self.journal.delete_meta(STAMP)
            self.journal.commit()
        # Opened without following a link and checked to have one name before
        # anything is cut from it (a hard link's other name is never emptied).
        fd, st = open_nofollow(self.path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if keep else 0),
                               "results file")
        self._identity = (st.st_dev, st.st_ino)
        try:
            os.ftruncate(fd, keep)
            # utf-8-sig: Excel opens a BOM-marked CSV with accents intact.
            self._live = open(fd, "a" if keep else "w",  # noqa: SIM115
                              encoding="utf-8" if keep else "utf-8-sig", newline="")
        except OSError as exc:
            os.close(fd)
            raise storage_error(self.path, exc, "write the results file") from exc
        self._keep = keep
        if keep:
            self._pos = keep
        else:
            header = _line(self.header)
            self._write(header)
            self._pos = len(codecs.BOM_UTF8) + len(header.encode("utf-8"))
        if self.journal is not None:
            self.journal.clear_index()
            self.journal.after_commit.append(self.flush)

    def _write(self, text: str) -> None:
        assert self._live is not None
        try:
            self._live.write(text)
        except OSError as exc:
            raise storage_error(self.path, exc, "write the results file") from exc

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
        self._write(line)
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
        """Write out what is buffered; AbortError when the disk is full."""
        if self._live is not None:
            try:
                self._live.flush()
            except OSError as exc:
                raise storage_error(self.path, exc, "write the results file") from exc

    def finish(self, after: Sequence[int] = ()) -> dict[int, int]:
        """Rewrite the file in input order: one line per input row. Returns, for
        each row number in ``after`` (ascending), the size of the file's part
        that holds the header and the lines of rows up to that one.

        The rewrite goes to RESULTS.csv.tmp, created afresh (never through a
        link), and replaces the results file only if that is still the file
        this run wrote. Raises AbortError when the disk is full (the journal
        holds every outcome: rerun to write the file), ResultsError when the
        results file was replaced or linked during the run."""
        live, self._live = self._live, None
        if live is not None:
            try:
                live.close()
            except OSError as exc:
                raise storage_error(self.path, exc, "write the results file") from exc
        if self.journal is not None:
            self.journal.commit()
        tmp = tmp_path(self.path)
        try:
            ends = self._rewrite(tmp, list(after))
            replace_checked(tmp, self.path, self._identity)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise storage_error(tmp, exc, "rewrite the results file") from exc
        if self.journal is not None:
            self.journal.set_meta(STAMP, results_stamp(self.path))
            self.journal.commit()
        return ends

    def _rewrite(self, tmp: Path, wanted: list[int]) -> dict[int, int]:
        ends: dict[int, int] = {}
        fd, st = open_nofollow(self.path, os.O_RDONLY, "results file")
        if self._identity is not None and (st.st_dev, st.st_ino) != self._identity:
            os.close(fd)
            raise _replaced(self.path)
        with open(fd, "rb") as live, open(create_exclusive(tmp, "results rewrite"), "wb") as out:
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
        return ends

    def abandon(self) -> None:
        """Close the live file as it is (a hard stop); a full disk is not
        reported again here: whatever stopped the run already was."""
        live, self._live = self._live, None
        if live is not None:
            with contextlib.suppress(OSError):
                live.close()


STAMP = "results_stamp"  # journal meta: the results file as the last complete rewrite left it


def results_stamp(path: Path) -> str:
    """Device, inode, size and mtime (ns) of ``path``: equal stamps mean the file
    was not touched (a copy, a rewrite or an append each change it)."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _replaced(path: Path) -> ResultsError:
    return ResultsError(
        f"{path}: was replaced or linked by something else during the run; not overwriting it",
        hint="the journal holds every outcome: move that file away, then rerun the same command",
    )


def replace_checked(tmp: Path, results: Path, identity: tuple[int, int] | None) -> None:
    """``os.replace(tmp, results)``, unless ``results`` became a symbolic link
    (or another file than ``identity``, its (device, inode)): a link is never
    replaced by a plain file. Raises ResultsError then (``tmp`` is removed)."""
    try:
        st = os.lstat(results)
    except FileNotFoundError:
        st = None
    # A hard link made during the run keeps the live file under its other
    # name; only the name this run owns is replaced.
    if st is not None and (stat.S_ISLNK(st.st_mode)
                           or (identity is not None and (st.st_dev, st.st_ino) != identity)):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _replaced(results)
    os.replace(tmp, results)


def is_results_header(header: Sequence[str] | None) -> TypeGuard[Sequence[str]]:
    return header is not None and tuple(header[: len(COLUMNS)]) == COLUMNS


def not_results_file(path: Path) -> ResultsError:
    return ResultsError(
        f"{path}: not a bulksend results file (its first columns are not {', '.join(COLUMNS[:3])}, …)",
        hint="pass the results CSV a send wrote, or another --results file name",
    )


# A results cell has no length limit: an input cell may be as long as the
# input reader allows (csv.field_size_limit(), 131,072 characters), and the
# formula neutraliser adds a quote to it; a dry run's payload cell holds a whole
# request. The results reader lifts the csv module's (process-wide) limit while
# it parses each line, and only then (reading.py relies on it for its inputs).
_NO_LIMIT = 2**31 - 1


def csv_lines(handle: IO[str]) -> Iterator[list[str]]:
    """The lines of a CSV bulksend wrote, whatever the length of a cell."""
    reader = csv.reader(handle)
    while True:
        limit = csv.field_size_limit(_NO_LIMIT)
        try:
            cells = next(reader, None)
        finally:
            csv.field_size_limit(limit)
        if cells is None:
            return
        yield cells


def _results_lines(path: Path) -> Iterator[tuple[Sequence[str], list[str]]]:
    """(header, cells) for each line of a results CSV; ResultsError when it is not one."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file: {exc.strerror}") from exc
    with handle:
        lines = csv_lines(handle)
        try:
            header = next(lines, None)
            if not is_results_header(header):
                raise not_results_file(path)
            for cells in lines:
                yield header, cells
        except (UnicodeDecodeError, csv.Error):
            raise not_results_file(path) from None


def read_results(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a results CSV as dicts (the contract's columns plus the input's),
    cells as they were before neutralising. Raises ResultsError when ``path``
    cannot be read or is not a results CSV."""
    for header, cells in _results_lines(path):
        yield {h: unneutralise(c) for h, c in zip(header, cells, strict=False)}


def check_results_target(results: Path, contacts: str) -> None:
    """Refuse a --results path whose file is not ours to overwrite: the input
    itself, or any existing file that is not a bulksend results CSV."""
    parent = results.parent
    if not parent.is_dir():
        raise ResultsError(f"{results}: the folder {parent} does not exist",
                           hint="create it, or pass another --results path")
    if results.is_dir():
        raise ResultsError(f"{results}: is a directory", hint="--results takes a file name")
    check_no_links(results)
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
            header = next(csv_lines(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        header = None
    if not is_results_header(header):
        raise ResultsError(
            f"{results}: exists and is not a bulksend results file; refusing to overwrite it",
            hint="pass another --results file name",
        )


def journal_vouches(journal: Journal, results: Path) -> bool:
    """The results file is exactly as this journal's last complete rewrite left
    it (``STAMP``): the journal knows every row the file records."""
    try:
        return journal.get_meta(STAMP) == results_stamp(results)
    except OSError:
        return False


@dataclass
class Seeded:
    """Rows taken from a results CSV into its journal that the journal lacked or
    had at an earlier state (pending, failed), by the status they got; and
    ``settled``: rows the journal had in flight that the CSV records sent (a
    killed run's line can reach the disk before its outcome's commit)."""

    sent: int = 0
    unknown: int = 0
    failed: int = 0
    settled: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.unknown + self.failed


def _record_of(line: dict[str, str], status: str) -> Record:
    http = line.get("http_status", "")
    row = line.get("row", "")
    attempts = line.get("attempts", "")
    return Record(
        key=line["key"], row=int(row) if row.isdigit() else 0, status=status,
        request_id=line.get("request_id", "") if status == SENT else "",
        portal_url=line.get("portal_url", "") if status == SENT else "",
        contact_id=line.get("contact_id", ""),
        http_status=int(http) if http.isdigit() else None,
        attempts=int(attempts) if attempts.isdigit() else 0,
        error=line.get("error", ""), sent_at=line.get("sent_at", "") if status == SENT else "",
        # When it was first tried is not in the CSV: "" makes a look-up accept a
        # request of any date for the key (never a resend of one that exists).
        first_attempt_at="", run_id=0,
    )


def _csv_status(line: dict[str, str], complete: bool) -> str | None:
    """What a results line says of its key, for the journal: None (nothing to
    take), or SENT/UNKNOWN/FAILED. A line cut short (a killed run's last
    append) that says sent or unknown is taken as unknown: looked up."""
    status = line.get("status", "")
    if not line.get("key") or status not in (SENT, FAILED, UNKNOWN):
        return None
    if status == SENT and not (complete and line.get("request_id")):
        return UNKNOWN
    return status


def seed_journal_from_csv(journal: Journal, results: Path) -> Seeded:
    """Take from the results CSV every row the journal knows less about (issue 11):
    the journal missing, emptied, copied without its ``-wal``, or an older copy.

    A row the CSV records ``sent`` becomes sent in the journal, with its request
    id; ``unknown`` becomes unknown where the journal had it pending or failed
    (it is looked up before any resend); ``failed`` is taken for keys the
    journal lacks. What the journal knows better (a later outcome) stays. When
    anything was taken, keys the journal never met are looked up before they
    are sent (``LOOKUP_NEW``), until a run has met every row: the lost state
    may have held rows in flight. Raises ResultsError when the CSV cannot be read."""
    seeded = Seeded()
    chunk: list[tuple[dict[str, str], str]] = []
    for header, cells in _results_lines(results):
        line = {h: unneutralise(c) for h, c in zip(header, cells, strict=False)}
        status = _csv_status(line, complete=len(cells) >= len(header))
        if status is not None:
            chunk.append((line, status))
        if len(chunk) >= 500:
            _take(journal, chunk, seeded)
    _take(journal, chunk, seeded)
    if seeded.total:
        journal.set_meta(LOOKUP_NEW, "1")
        journal.lookup_new = True
    journal.commit()
    return seeded


def _take(journal: Journal, chunk: list[tuple[dict[str, str], str]], seeded: Seeded) -> None:
    known = journal.statuses([line["key"] for line, _ in chunk])
    for line, status in chunk:
        had = known.get(line["key"])
        if had in (INFLIGHT, UNKNOWN) and status == SENT:
            seeded.settled += 1
        elif not (had is None or (status != FAILED and had in (PENDING, FAILED))):
            continue  # the journal knows as much or more
        else:
            setattr(seeded, status, getattr(seeded, status) + 1)
        journal.import_record(_record_of(line, status))
        known[line["key"]] = status
    chunk.clear()


def _identity(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def check_outputs_apart(outputs: Sequence[tuple[str, Path | str]],
                        inputs: Sequence[tuple[str, Path | str]]) -> None:
    """Refuse (UsageError, exit 2) an output that is the same file as an input
    or as another output: same device and inode, whatever the names (a link, a
    ``..`` path, another mount of the folder). ``outputs``/``inputs``: (what,
    path) pairs, e.g. ("--summary-json", "last.json"), ("the contacts file",
    "contacts.csv"); an input "-" (standard input) is left out."""
    seen: dict[tuple[int, int], tuple[str, Path | str]] = {}
    for what, path in inputs:
        ident = None if str(path) == "-" else _identity(path)
        if ident is not None:
            seen.setdefault(ident, (what, path))
    for what, path in outputs:
        ident = _identity(path)
        if ident is None:
            continue
        if ident in seen:
            other, other_path = seen[ident]
            raise UsageError(f"{path}: {what} is the same file as {other} ({other_path}); "
                             "refusing to overwrite it",
                             hint=f"pass another path for {what.split(' (')[0]}")
        seen[ident] = (what, path)
