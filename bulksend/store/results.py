"""The results CSV: what a person opens, written from the run's outcomes.

Each outcome is appended to ``RESULTS.csv`` as it happens; when the run ends
(or is interrupted cleanly) the file is rewritten in input order, one line per
input row, reading each row's line back from where it was appended (the
journal indexes where each line sits). A file whose lines were appended in
input order, once each, already is that file: it is kept as it is (issue 18).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import os
import re
import shutil
import stat
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeGuard

from bulksend.common.errors import AbortError, ResultsError, UsageError
from bulksend.common.outcome import FAILED, SENT, UNKNOWN, Outcome
from bulksend.common.portable import posix
from bulksend.store.journal import (
    INFLIGHT,
    LOOKUP_NEW,
    PENDING,
    Journal,
    LineIndex,
    Record,
)
from bulksend.store.runlock import (
    check_no_links,
    create_exclusive,
    not_plain_error,
    open_nofollow,
    open_to_read,
    output_problem,
    storage_error,
    tmp_path,
)

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
# The columns ``status`` and ``update`` add right after the contract's
# (store/tracked.py); a send that resumes keeps them (issue 27).
TRACK_COLUMNS = ("request_status", "due_date", "status_read_at", "last_update", "updated_at")
_NO_TRACK = [""] * len(TRACK_COLUMNS)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_START) | {"'"}  # quick pre-check; see neutralise()

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


# A cell that may start like a formula, seen in the cells joined by commas: at
# the start, or right after a comma (a cell holding a comma itself may match
# too: then each cell is checked, as without this pre-check).
_FORMULA_AFTER_COMMA = re.compile(r",[=+\-@\t\r']")


class _LineFormatter:
    """One CSV line as text, reusing one writer and buffer (hot path)."""

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.writer = csv.writer(self.buf, lineterminator="\r\n")

    def __call__(self, cells: list[str], *, guard: bool = False) -> str:
        """``cells`` as one CSV line; ``guard``: each cell that starts like a
        formula neutralised first (``neutralise``)."""
        # Most lines need no quoting: no cell holds a comma, a quote or a line
        # break (the joined text then has exactly one comma per boundary). For
        # those, the csv module's line is the plain join: 0.3 µs instead of 2.
        # The guard's pre-check reads the same joined text: 0.2 µs instead of
        # a look at each cell's first character (0.8 µs for 14 cells).
        try:
            text = ",".join(cells)
        except TypeError:  # a cell that is not text: the csv module writes str() of it
            text = '"'
            guard_each = guard
        else:
            guard_each = guard and (text[:1] in _FORMULA_FIRST
                                    or _FORMULA_AFTER_COMMA.search(text) is not None)
        if guard_each:
            cells = [neutralise(cell) if isinstance(cell, str) and cell[:1] in _FORMULA_FIRST else cell
                     for cell in cells]
            try:
                text = ",".join(cells)
            except TypeError:
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
    the file in input order at the end of the run. ``track``: each line also
    gets the tracking columns (TRACK_COLUMNS, after the contract's) the journal
    kept for its key (``Journal.tracked``): what ``status`` and ``update``
    wrote survives a resume (issue 27)."""

    def __init__(
        self,
        path: Path,
        journal: Journal | None,
        input_columns: Sequence[str],
        *,
        with_payload: bool = False,
        track: bool = False,
    ) -> None:
        self.path = path
        self.journal = journal
        self.input_columns = list(input_columns)
        self.with_payload = with_payload
        self.track = track and journal is not None
        # The input's column names are cells too (issue 25): a header =HYPERLINK(…) gets the guard.
        self.header = [*COLUMNS, *(["payload"] if with_payload else []),
                       *(TRACK_COLUMNS if self.track else ()),
                       *(neutralise(name) for name in self.input_columns)]
        self._live: IO[str] | None = None
        # Where each row's line sits in the live file (byte offset and size):
        # the in-order rewrite at the end reads the lines back from the live
        # file itself. With a journal, a LineIndex keeps them (memory stays flat
        # on a million rows); without one, these two arrays, by row number.
        self._lines = LineIndex(journal) if journal is not None else None
        self._offsets = array("q")
        self._sizes = array("q")
        self._pos = 0
        self._keep = 0  # bytes of the existing file kept at its start
        self._start = 0  # where the first line of this run goes (after the header or the kept bytes)
        self._last_row = -1  # the row of the last line written
        self._in_order = True  # every line so far for a higher row than the one before
        self._identity: tuple[int, int] | None = None  # (device, inode) of the live file

    def open(self, keep: int = 0) -> None:
        """Start the live file; ``keep`` > 0: keep the existing file's first
        ``keep`` bytes (header and the lines of rows skipped, see store/checkpoints.py)."""
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
        self._start = self._pos
        self._last_row, self._in_order = -1, True
        if self._lines is not None:
            self._lines.clear()
        if self.journal is not None:
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
        if self.track:
            assert self.journal is not None
            cells.extend((self.journal.tracked(outcome.key) if outcome.key else None) or _NO_TRACK)
        values = outcome.values
        cells += [values.get(c, "") for c in self.input_columns]
        return _line(cells, guard=True)

    def write(self, outcome: Outcome) -> None:
        line = self.format(outcome)
        self._write(line)
        row = outcome.row
        if row <= self._last_row:
            self._in_order = False
        self._last_row = row
        size = len(line) if line.isascii() else len(line.encode("utf-8"))  # isascii(): a flag, no scan
        if self._lines is not None:
            self._lines.add(row, self._pos, size)  # a row written twice: the later wins
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
        """Rewrite the file in input order: one line per input row (a file
        streamed in that order is kept as it is: the same bytes). Returns, for
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
        in_place = self._ends_in_place(list(after)) if self._in_order else None
        if in_place is not None:
            ends = in_place
            try:  # a .tmp left by a killed rewrite goes, as the rewrite would replace it
                os.unlink(tmp_path(self.path))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise storage_error(tmp_path(self.path), exc, "remove the old rewrite") from exc
        else:
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

    def _ends_in_place(self, wanted: list[int]) -> dict[int, int] | None:
        """When the live file already is what the rewrite would write (each
        row's one line, in row order, right after the header or the kept
        bytes, and nothing after them), ``finish``'s answer for ``wanted``
        without rewriting it; else None. The file must still be this run's,
        under this one name: a hard link made during the run is left the live
        file, as the rewrite leaves it, so it is rewritten."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return None
        if (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (st.st_dev, st.st_ino) != self._identity
                or st.st_size != self._pos):
            return None
        ends: dict[int, int] = {}
        pos = self._start
        for row, offset, size in self._index():
            while wanted and wanted[0] < row:
                ends[wanted.pop(0)] = pos
            if offset >= 0:
                if offset != pos:
                    return None
                pos += size
        for number in wanted:
            ends[number] = pos
        return ends if pos == self._pos else None

    def _index(self) -> Iterable[tuple[int, int, int]]:
        """(row, offset, size) of each row's line in the live file, by row;
        offset -1: no line."""
        if self._lines is not None:
            return self._lines.by_row(in_order=self._in_order)
        return ((row, o, s) for row, (o, s) in enumerate(zip(self._offsets, self._sizes, strict=True)))

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
            for row, offset, size in self._index():
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
    replace_file(tmp, results)


# Seconds between tries when Windows refuses a replacement: about 3 s in all.
REPLACE_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5)


def replace_file(tmp: Path, target: Path) -> None:
    """``os.replace(tmp, target)``. Windows refuses it (PermissionError) while
    another program holds ``target`` open: a spreadsheet showing it, for as
    long as it does; an antivirus or an indexer, for a moment. There (the
    portable branch, see common/portable.py) it is tried again after each of
    ``REPLACE_PAUSES``, then ``tmp`` is removed and AbortError (exit 3) says
    which file to close: the journal holds every outcome, and the rerun
    writes the file again."""
    if posix():
        os.replace(tmp, target)
        return
    for pause in (*REPLACE_PAUSES, None):
        try:
            os.replace(tmp, target)
            return
        except PermissionError as exc:
            if pause is None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise AbortError(
                    f"{target}: cannot write the finished results file: another program has it open "
                    f"({exc.strerror or exc})",
                    hint=f"close {target} in the program that shows it (a spreadsheet keeps the files "
                    "it shows), then rerun the same command: every outcome is in the journal, nothing "
                    "is sent again") from exc
            time.sleep(pause)


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
# it parses each line, and only then (reading/ relies on it for its inputs).
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


def _open_results(path: Path) -> IO[str]:
    """The results CSV at ``path`` opened to read as text; ResultsError when it
    cannot be, or is not a plain file (a device, a FIFO: issue 25)."""
    try:
        fd = open_to_read(path, "results file")
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file: {exc.strerror}") from exc
    return open(fd, encoding="utf-8-sig", newline="")


def _results_lines(path: Path) -> Iterator[tuple[Sequence[str], list[str]]]:
    """(header, cells) for each line of a results CSV, the header's names as
    they were before neutralising; ResultsError when it is not one."""
    with _open_results(path) as handle:
        lines = csv_lines(handle)
        try:
            header = next(lines, None)
            if not is_results_header(header):
                raise not_results_file(path)
            header = [unneutralise(name) for name in header]
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
    itself, anything but a plain file (a device, a FIFO: issue 25), or any
    existing file that is not a bulksend results CSV."""
    parent = results.parent
    if not parent.is_dir():
        raise ResultsError(f"{results}: the folder {parent} does not exist",
                           hint="create it, or pass another --results path")
    if results.is_dir():
        raise ResultsError(f"{results}: is a directory", hint="--results takes a file name")
    kind = output_problem(results)
    if kind is not None:
        raise not_plain_error(results, "results file", kind)
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
        with _open_results(results) as handle:
            header = next(csv_lines(handle), None)
    except (ResultsError, OSError, UnicodeDecodeError, csv.Error):
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
    # A file that exists is known by its device and inode; one that does not
    # yet (two outputs of a first run) by its resolved path.
    seen: dict[object, tuple[str, Path | str]] = {}
    for what, path in inputs:
        found = None if str(path) == "-" else _identity(path)
        if found is not None:
            seen.setdefault(found, (what, path))
    for what, path in outputs:
        ident: object = _identity(path) or os.path.realpath(path)
        if ident in seen:
            other, other_path = seen[ident]
            raise UsageError(f"{path}: {what} is the same file as {other} ({other_path}); "
                             "refusing to overwrite it",
                             hint=f"pass another path for {what.split(' (')[0]}")
        seen[ident] = (what, path)
