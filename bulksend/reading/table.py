"""A file as rows of text cells: the ``Table`` that every reader hands over,
its ``Row``s, its ``Header``, and the ``Mark`` from which a text file is read
again part way through.

The contract is "exactly what a person sees in a spreadsheet": every cell is
text (``007`` stays ``007``, ``NA`` stays ``NA``, no ``nan``, no ``12.0``), rows
carry the number a spreadsheet shows (header row 1, blank rows counted, a
quoted cell spanning several lines still one row), and anything that would make
the read partial or ambiguous is an ``InputError`` naming the file and the row,
never a silently shortened table. The readers keep it: delimited.py (CSV, TSV),
reading/workbook.py (spreadsheets) and reading/frames.py (contacts in memory);
``sources.open_table`` chooses the reader for a path or standard input.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

from bulksend.common.errors import InputError
from bulksend.reading.cells import normal_name
from bulksend.reading.charsets import codec_name


class Row(NamedTuple):
    """One data row of the input, as a person sees it in a spreadsheet.

    A NamedTuple rather than a frozen dataclass: as immutable, and made in
    0.2 µs instead of 0.45 (one per row read; issue 29)."""

    number: int  # spreadsheet row number: header is 1, first data row 2; blank rows count
    values: dict[str, str]  # header name -> cell text ("" when empty or missing)
    extra: tuple[str, ...] = ()  # non-empty cells beyond the header's width: row is invalid
    left_out: str = ""  # why the row is not to be sent although it has data (a hidden row)


# (row number, cells) of each record that is not wholly blank, header included
Records = Generator[tuple[int, list[str]], None, None]


@dataclass(frozen=True, slots=True)
class Mark:
    """A record boundary in a text file: its first ``offset`` bytes hold records
    1 to ``number`` (header and blank records included), and nothing more."""

    number: int
    offset: int


@dataclass(frozen=True, slots=True)
class Header:
    """The header row, for checking a mapping against it.

    ``names`` are the usable column names (``Table.columns``); a name that
    several columns share (after ``normal_name``) is in ``ambiguous`` instead,
    with those columns' labels; columns without a name are in ``unnamed``.
    Neither is read into rows. ``peek()`` returns the first non-blank records
    (row number, cells) of the file, where a misplaced header may be found.
    """

    row: int
    names: tuple[str, ...]
    ambiguous: dict[str, tuple[str, ...]]
    unnamed: tuple[str, ...]
    peek: Callable[[], list[tuple[int, list[str]]]]
    sheet: str | None = None  # spreadsheets: the sheet read, quoted, and why (named when a column is missing)

    def row_holding(self, names: Collection[str]) -> int | None:
        """The number of the first row of ``peek()`` (other than the header)
        whose cells hold every one of ``names`` (compared by ``normal_name``)."""
        wanted = {normal_name(n) for n in names}
        for number, cells in self.peek():
            if number != self.row and wanted <= {normal_name(c) for c in cells}:
                return number
        return None


PEEK_RECORDS = 20  # the first records searched for a misplaced header row
# Removed from every cell (issue 24): NUL, which no text holds (a one-cell
# glitch of an export, not a sign of a binary file), and the bidirectional
# controls (U+061C, U+200E/F, U+202A-E, U+2066-9), which change how a cell is
# shown, not what it says, and which a copy from an RTL page leaves in names
# and addresses ("Trojan Source", CVE-2021-42574).
CONTROLS = re.compile("[\x00\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CLEANED_SHOWN = 3


class Table:
    """A header and its data rows, from a CSV/TSV file, stdin or a spreadsheet sheet.

    ``rows()`` may be called any number of times (a check pass, then the send
    pass); each call reads the source again from the start.
    """

    name: str  # display name for messages: the path as given, or "<stdin>"
    columns: list[str]  # trimmed header names that rows carry (ignored columns left out)
    header_row: int  # the header's row number (1 unless blank rows precede it, or --header-row)
    header: Header  # the header row, with the columns that are not read
    encoding: str | None  # text: the codec used (detected or given); None for spreadsheets
    delimiter: str | None  # text: the delimiter used; None for spreadsheets
    sheet: str | None  # spreadsheets: the sheet read; None for text
    kind: str  # what was read, for people: "CSV", "XLSX", ...
    given: frozenset[str]  # which of "encoding", "delimiter" were given rather than detected
    hidden: frozenset[int]  # spreadsheets: row numbers hidden in the sheet
    filtered: bool  # the sheet has an AutoFilter
    include_hidden: bool  # hidden rows are read as any other
    blank_rows: int | None  # wholly blank rows between data rows; known after a whole rows() pass
    hidden_rows: list[int]  # the hidden data rows left out, found by the last whole rows() pass

    def __init__(
        self,
        name: str,
        records: Callable[..., Records],
        column_label: Callable[[int], str],
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
        sheet: str | None = None,
        path: str | None = None,
        marks: Callable[[Mark | None, list[int]], list[Mark]] | None = None,
        header_row: int | None = None,
        kind: str = "CSV",
        given: frozenset[str] = frozenset(),
        hidden: frozenset[int] = frozenset(),
        filtered: bool = False,
        include_hidden: bool = False,
    ) -> None:
        self.name = name
        self._records = records
        self._marks = marks
        self.path = path  # text: the file read (a spool for stdin); None for spreadsheets
        self.encoding = encoding
        self.delimiter = delimiter
        self.sheet = sheet
        self.kind = kind
        self.given = given
        self.hidden = hidden
        self.filtered = filtered
        self.include_hidden = include_hidden
        self.blank_rows = None
        self.hidden_rows = []
        self.choices: list[str] = []  # what the reader chose for the person, with its evidence (issue 24)
        self.title: str = ""  # spreadsheets: the range merged across the header row ("A1:E1"), if any
        self.cleaned: list[tuple[int, str]] = []  # (row, column) of cells the last whole pass cleaned
        self._cleaning: list[tuple[int, str]] = []
        self._closed = False
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._label = column_label
        self.header_row, cells = self._first_record(header_row)
        keys, ambiguous, unnamed = _header_names(cells, column_label)
        self._keys = keys  # per cell position: the name it is read under, or None
        self.columns = [key for key in keys if key is not None]
        self.header = Header(self.header_row, tuple(self.columns), ambiguous, tuple(unnamed), self._peek,
                             None if sheet is None else f'"{sheet}"')

    def _first_record(self, wanted: int | None) -> tuple[int, list[str]]:
        """The header: the first non-blank record, or record ``wanted``."""
        name = self.name
        found: tuple[int, list[str]] | None = None
        gen = self._records()
        try:
            for number, cells in gen:
                if wanted is None or number >= wanted:
                    found = number, cells
                    break
        finally:
            gen.close()
        if found is None and wanted is None:
            empty = "the file is empty" if self.sheet is None else f'sheet "{self.sheet}" is empty'
            raise InputError(
                f"{name}: {empty}", hint="the first non-blank row must be the header row (column names)",
            )
        if found is None or (wanted is not None and found[0] != wanted):
            what = "the file ends before it" if found is None else "it is blank"
            raise InputError(
                f"{name}: --header-row {wanted}: {what}",
                hint="--header-row names the row that holds the column names (1 = the first row)",
            )
        return found

    def _peek(self) -> list[tuple[int, list[str]]]:
        found: list[tuple[int, list[str]]] = []
        gen = self._records()
        try:
            for record in gen:
                found.append(record)
                if len(found) >= PEEK_RECORDS:
                    break
        except InputError:
            pass  # a later row that cannot be read: the check pass reports it
        finally:
            gen.close()
        return found

    def describe(self) -> str:
        """What was read, on one line: format, sheet, encoding, delimiter, header row."""
        parts = [f"{self.name}: {self.kind}"]
        if self.sheet is not None:
            parts.append(f'sheet "{self.sheet}"')
        if self.encoding is not None:
            how = "given" if "encoding" in self.given else "detected"
            parts.append(f"encoding {codec_name(self.encoding)} ({how})")
        if self.delimiter is not None:
            how = "given" if "delimiter" in self.given else "detected"
            parts.append(f"delimiter {delimiter_name(self.delimiter)} ({how})")
        parts.append(f"header on row {self.header_row}")
        return ", ".join(parts)

    def guesses(self) -> list[str]:
        """Each choice the reader made for the person, with its evidence, one
        line each (the sheet and why, the delimiter and why, ...); after a whole
        ``rows()`` pass, also what that pass changed (merged cells filled)."""
        return list(self.choices)

    def left_out(self) -> list[str]:
        """What the last whole ``rows()`` pass did not read as data, one item a
        kind: hidden rows, blank rows, ignored columns."""
        notes: list[str] = []
        if self.hidden_rows:
            count = len(self.hidden_rows)
            why = " (filtered out by the sheet's AutoFilter)" if self.filtered else ""
            notes.append(f"{count} hidden row{'s' if count > 1 else ''}{why}: "
                         f"{_rows_list(self.hidden_rows)}; not sent (--include-hidden sends them)")
        elif self.include_hidden and self.hidden:
            numbers = sorted(self.hidden)
            shown, verb = (_rows_list(numbers), "are") if len(numbers) > 1 else (f"row {numbers[0]}", "is")
            notes.append(f"no hidden row: {shown}, hidden in the sheet, {verb} read like any other"
                         " (--include-hidden)")
        if self.blank_rows:
            notes.append(f"{self.blank_rows} blank row{'s' if self.blank_rows > 1 else ''}")
        if self.cleaned:
            shown = ", ".join(f"row {row} {column}" for row, column in self.cleaned[:_CLEANED_SHOWN])
            count = len(self.cleaned)
            more = f" and {count - _CLEANED_SHOWN} more" if count > _CLEANED_SHOWN else ""
            notes.append(f"NUL and bidirectional control characters, removed from {count} cell"
                         f"{'s' if count > 1 else ''}: {shown}{more}")
        header = self.header
        ignored = [f"{label} (no name)" for label in header.unnamed]
        ignored += [f'"{n}" (columns {_and(list(labels))}: the same name)'
                    for n, labels in header.ambiguous.items()]
        if ignored:
            notes.append(f"column{'s' if len(ignored) > 1 else ''} not read: {', '.join(ignored)}")
        return notes

    @property
    def seekable(self) -> bool:
        """Whether rows() can start at a ``Mark`` (text in UTF-8 or a one-byte code page)."""
        return self._marks is not None

    def marks(self, start: Mark | None, numbers: list[int]) -> list[Mark]:
        """The boundary after each record in ``numbers`` (ascending, all after
        ``start``), reading from ``start``; fewer when the file ends first."""
        if self._marks is None:
            raise ValueError(f"{self.name}: cannot be read from the middle")
        return self._marks(start, numbers)

    def rows(self, start: Mark | None = None) -> Generator[Row, None, None]:
        """Stream the data rows in order; wholly blank rows are skipped (but
        counted). From ``start`` (a seekable table only): the rows after it.
        A row hidden in the sheet comes with ``left_out`` set, unless hidden
        rows are included."""
        if self._closed:
            raise ValueError(f"{self.name}: table is closed")
        if start is not None and self._marks is None:
            raise ValueError(f"{self.name}: cannot be read from the middle")
        keys = self._keys
        columns = self.columns
        width = len(keys)
        every = len(columns) == width  # no ignored column: the plain, fast zip
        hidden = frozenset() if self.include_hidden else self.hidden
        cleaned: list[tuple[int, str]] = []
        why = "hidden in the sheet" + (" (filtered out by its AutoFilter)" if self.filtered else "")
        why += "; not sent (--include-hidden sends hidden rows)"
        left: list[int] = []
        previous = self.header_row
        blank = 0
        gen = self._records() if start is None else self._records(start)
        try:
            for number, cells in gen:
                if number <= self.header_row:
                    continue
                blank += number - previous - 1
                previous = number
                joined = "".join(cells)
                if (not joined.isascii() or "\x00" in joined) and CONTROLS.search(joined):
                    cells = self._clean(number, cells, cleaned)
                if len(cells) < width:
                    cells = cells + [""] * (width - len(cells))
                extra = tuple(c for c in cells[width:] if c.strip()) if len(cells) > width else ()
                if every:
                    values = dict(zip(columns, cells, strict=False))
                else:
                    values = {key: cell for key, cell in zip(keys, cells, strict=False) if key is not None}
                if hidden and number in hidden:
                    left.append(number)
                    yield Row(number, values, extra, why)
                else:
                    yield Row(number, values, extra)
            if start is None:
                self.blank_rows, self.hidden_rows, self.cleaned = blank, left, cleaned
        finally:
            gen.close()

    def _clean(self, number: int, cells: list[str], cleaned: list[tuple[int, str]]) -> list[str]:
        """``cells`` without CONTROLS; each cell changed is noted (row, column name or label)."""
        found = []
        for i, cell in enumerate(cells):
            kept = CONTROLS.sub("", cell)
            if kept != cell:
                key = self._keys[i] if i < len(self._keys) else None
                cleaned.append((number, f'"{key}"' if key else f"column {self._label(i)}"))
            found.append(kept)
        return found

    def on_close(self, func: Callable[..., object], *args: object) -> None:
        """Have ``func(*args)`` run once when the table closes: a reader's
        file, workbook or spool that lives as long as the table."""
        # weakref.finalize: runs on close(), on garbage collection or at exit,
        # whichever comes first, and only once (the stdin spool never lingers).
        self._finalizers.append(weakref.finalize(self, func, *args))

    def close(self) -> None:
        self._closed = True
        for finalizer in reversed(self._finalizers):
            finalizer()

    def __enter__(self) -> Table:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Table {self.name!r} columns={self.columns!r}>"


def _header_names(
    cells: list[str], column_label: Callable[[int], str]
) -> tuple[list[str | None], dict[str, tuple[str, ...]], list[str]]:
    """Per column: its trimmed name, or None when it is not read (no name, or
    a name another column has too: the same after ``normal_name``); then those
    shared names with their columns' labels, and the labels of unnamed columns.
    Empty trailing names are dropped (the header's width ends at the last name)."""
    names = [cell.strip().lstrip("\ufeff").strip() for cell in cells]
    while names and not normal_name(names[-1]):
        names.pop()
    where: dict[str, list[int]] = {}
    unnamed: list[str] = []
    for i, n in enumerate(names):
        if normal_name(n):
            where.setdefault(normal_name(n), []).append(i)
        else:
            unnamed.append(column_label(i))
    ambiguous = {n: tuple(column_label(i) for i in spots) for n, spots in where.items() if len(spots) > 1}
    shared = {i for spots in where.values() if len(spots) > 1 for i in spots}
    keys: list[str | None] = [n if normal_name(n) and i not in shared else None for i, n in enumerate(names)]
    return keys, ambiguous, unnamed


def _rows_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:5])
    return f"rows {shown}" + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def delimiter_name(delimiter: str) -> str:
    """A delimiter as messages name it: "tab", "space", else the character quoted."""
    return {"\t": "tab", " ": "space"}.get(delimiter, f'"{delimiter}"')


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
