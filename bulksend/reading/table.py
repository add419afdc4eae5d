"""Reading: a spreadsheet or CSV export, row by row, every cell as text.

The contract is "exactly what a person sees in a spreadsheet": every cell is
text (``007`` stays ``007``, ``NA`` stays ``NA``, no ``nan``, no ``12.0``), rows
carry the number a spreadsheet shows (header row 1, blank rows counted, a
quoted cell spanning several lines still one row), and anything that would make
the read partial or ambiguous is an ``InputError`` naming the file and the row,
never a silently shortened table.

Delimited text (CSV, TSV, ...) is read with the standard ``csv`` module, not
pandas, because:

* it streams: one record at a time through a ``TextIOWrapper``, constant memory
  whatever the file's size (million-row exports), and a second pass (check,
  then send) simply reopens the file;
* it returns the exact text of every cell, with no type or missing-value
  inference to switch off (pandas turns ``NA``/``null``/``""`` into NaN and
  ``007`` into 7 unless told otherwise, column by column);
* it knows where each record starts, so row numbers are per record (a quoted
  cell with embedded newlines is one row) and rows with more cells than the
  header are seen and reported instead of shifted or dropped;
* ``bulksend validate`` and ``--help`` must not pay for importing pandas.

Spreadsheets (``.xlsx``, ``.xlsm``, ``.xlsb``, ``.xls``, ``.ods``) are read with
python-calamine directly rather than ``pandas.read_excel(engine="calamine")``.
pandas would add nothing but layers to undo: its calamine engine calls the same
library, then by default turns the *text* cells ``NA``, ``null``, ``nan`` and
``""`` into NaN, widens dates into datetimes, and copies the sheet into a
DataFrame. Calamine's ``iter_rows()`` hands over one row of native values at a
time (str, int, float, bool, date, datetime, time, timedelta), including the
sheet's leading blank rows, so real row numbers survive, and it reads the
workbook's content whatever its extension (an ``.xls`` that is really ``.xlsx``
opens, as in Excel). pandas is therefore not imported at all. A spreadsheet's
sheet is held in memory by calamine (the formats are zipped XML or binary
records, and a sheet tops out at 1,048,576 rows); only text is truly streamed.

Cells become text as a person sees them: empty -> "", booleans -> TRUE/FALSE,
whole numbers without ".0", other numbers rounded to Excel's 15 significant
digits and written in their shortest form, dates YYYY-MM-DD, date-times
YYYY-MM-DD HH:MM:SS (midnight ones as a date), times HH:MM:SS.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import itertools
import math
import os
import re
import shutil
import sys
import tempfile
import unicodedata
import weakref
import zipfile
import zlib
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

from bulksend.common.errors import InputError
from bulksend.reading.sheetxml import SheetXml, read_sheet_xml

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Row:
    """One data row of the input, as a person sees it in a spreadsheet."""

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


# Characters a person cannot see: Unicode's format characters (category Cf:
# zero-width space and joiners, word joiner, BOM, soft hyphen, direction marks,
# ...) and the few invisible ones of other categories (combining grapheme
# joiner, variation selectors, Hangul fillers, Mongolian free variation
# selectors). tests/test_sheets_wild.py checks the class holds every Cf character.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160"
    "\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f\U000e0100-\U000e01ef]"
)


def normal_name(name: str) -> str:
    """A column name as a person reads it: invisible characters removed,
    Unicode NFC (macOS writes "é" as "e" + U+0301), runs of spaces (no-break
    ones included) as one space, trimmed. Header and mapping names match on it."""
    return " ".join(unicodedata.normalize("NFC", INVISIBLE.sub("", name)).split())


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

    def row_holding(self, names: Collection[str]) -> int | None:
        """The number of the first row of ``peek()`` (other than the header)
        whose cells hold every one of ``names`` (compared by ``normal_name``)."""
        wanted = {normal_name(n) for n in names}
        for number, cells in self.peek():
            if number != self.row and wanted <= {normal_name(c) for c in cells}:
                return number
        return None


PEEK_RECORDS = 20  # the first records searched for a misplaced header row
_FORCED_TEXT = re.compile(r'="((?:[^"]|"")*)"')  # Excel's ="00123": keep the zeros

SPREADSHEET_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"})
TAB_EXTENSIONS = frozenset({".tsv", ".tab"})
DELIMITERS = (",", ";", "\t", "|")  # detection order; the first wins a tie
DELIMITER_NAMES = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
}

SAMPLE_BYTES = 64 * 1024  # encoding and delimiter are decided on this much
SNIFF_RECORDS = 50  # records compared when detecting the delimiter

_ENCODING_HINT = "common ones: utf-8, cp1252 (Windows Western), latin-1, utf-16, utf-16-le"
# Codecs that are text encodings to Python but cannot decode a file (idna and
# punycode refuse any error handler but "strict"; "undefined" refuses all input).
_NOT_FOR_FILES = frozenset({"idna", "punycode", "undefined"})
# The byte-order marks the plain utf-16/utf-32 decoders must start with.
_CODEC_BOMS = {
    "utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
    "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE),
}

_ZIP_MAGIC = b"PK\x03\x04"  # .xlsx / .xlsm / .xlsb / .ods
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (and password-protected .xlsx)

# Undecodable bytes become lone surrogates U+DC00+byte (surrogateescape, extended
# to bytes below 0x80 so it also works for UTF-16). No codec produces these from
# valid input, so finding one in a record names the exact row with a bad byte,
# where a strict decoder would fail a whole 8 KiB chunk ahead of the csv reader.
_ESCAPE_HANDLER = "bulksend.escape"
_ESCAPED = re.compile("[\udc00-\udcff]+")


def _escape_bytes(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error(_ESCAPE_HANDLER, _escape_bytes)

_SEP_LINE = re.compile(r"sep=([^\r\n])(?:\r\n|\n|\r)", re.IGNORECASE)

# Fed to the csv reader after the file's last line. If a quote was left open,
# the reader swallows it into the last cell instead of returning it alone: that
# is how an unclosed quote (which would silently eat the rest of the file) is
# told apart from a complete read. Control characters no delimiter can be.
_END = "\x00\x01\x00"
_END_LINE = _END + "\n"


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
        self._closed = False
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self.header_row, cells = self._first_record(header_row)
        keys, ambiguous, unnamed = _header_names(cells, column_label)
        self._keys = keys  # per cell position: the name it is read under, or None
        self.columns = [key for key in keys if key is not None]
        self.header = Header(self.header_row, tuple(self.columns), ambiguous, tuple(unnamed), self._peek)

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
            parts.append(f"encoding {_display(self.encoding)} ({how})")
        if self.delimiter is not None:
            how = "given" if "delimiter" in self.given else "detected"
            parts.append(f"delimiter {_delimiter_name(self.delimiter)} ({how})")
        parts.append(f"header on row {self.header_row}")
        return ", ".join(parts)

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
            notes.append(f"hidden rows included (--include-hidden): {_rows_list(sorted(self.hidden))}")
        if self.blank_rows:
            notes.append(f"{self.blank_rows} blank row{'s' if self.blank_rows > 1 else ''}")
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
                self.blank_rows, self.hidden_rows = blank, left
        finally:
            gen.close()

    def _on_close(self, func: Callable[..., object], *args: object) -> None:
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


def open_table(
    source: str,
    *,
    sheet: str | int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    stdin: BinaryIO | None = None,
    header_row: int | None = None,
    include_hidden: bool = False,
) -> Table:
    """Open a contacts table; raises ``InputError`` for anything that cannot be read whole.

    ``source`` is a path, or ``"-"`` for CSV on ``stdin`` (default
    ``sys.stdin.buffer``), which is spooled to a temporary file so that rows()
    can run twice; the file is deleted on close. ``sheet`` (spreadsheets only)
    is a name or a 1-based number. ``encoding`` and ``delimiter`` (text only)
    override detection; spreadsheets ignore them, having neither.
    ``header_row`` (1-based, as a spreadsheet numbers rows) is the row holding
    the column names; by default the first non-blank one; rows above it are not
    read. ``include_hidden``: rows hidden in an .xlsx sheet are read as any
    other, instead of coming with ``Row.left_out`` set.
    """
    if header_row is not None and header_row < 1:
        raise InputError(f"{source}: --header-row {header_row}: rows are numbered from 1")
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _open_stdin(stream, sheet, encoding, delimiter, header_row)
    extension = os.path.splitext(source)[1].lower()
    if extension in SPREADSHEET_EXTENSIONS:
        return _open_spreadsheet(source, source, sheet, header_row, include_hidden)
    if sheet is not None:
        raise InputError(
            f'{source}: is a text file and has no sheets (sheet "{sheet}" was asked for)',
            hint="--sheet applies to .xlsx, .xls and .ods files only",
        )
    given = frozenset(n for n, v in (("encoding", encoding), ("delimiter", delimiter)) if v is not None)
    if delimiter is None and extension in TAB_EXTENSIONS:
        delimiter = "\t"
    return _open_text(source, source, encoding, delimiter, header_row, given)


# --- delimited text ---------------------------------------------------------


def _open_stdin(
    stream: BinaryIO, sheet: str | int | None, encoding: str | None, delimiter: str | None,
    header_row: int | None,
) -> Table:
    name = "<stdin>"
    if sheet is not None:
        raise InputError(
            f"{name}: standard input is read as CSV, it has no sheets",
            hint="give the spreadsheet's path instead of -",
        )
    fd, spool = tempfile.mkstemp(prefix="bulksend-stdin-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1024 * 1024)
        given = frozenset(n for n, v in (("encoding", encoding), ("delimiter", delimiter)) if v is not None)
        table = _open_text(name, spool, encoding, delimiter, header_row, given)
    except BaseException:
        _remove(spool)
        raise
    table._on_close(_remove, spool)
    return table


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _open_text(name: str, path: str, encoding: str | None, delimiter: str | None,
               header_row: int | None = None, given: frozenset[str] = frozenset()) -> Table:
    with _open_binary(name, path) as raw:
        sample = raw.read(SAMPLE_BYTES)
        complete = len(sample) < SAMPLE_BYTES or not raw.read(1)
    if not sample:
        raise InputError(
            f"{name}: the file is empty",
            hint="the first row must be the header row (column names)",
        )
    codec = _choose_encoding(name, sample, complete, encoding)
    try:
        text = codecs.getincrementaldecoder(codec)(_ESCAPE_HANDLER).decode(sample, final=complete)
    except UnicodeError as error:  # bad bytes are escaped: this is the codec refusing the file
        raise InputError(
            f"{name}: cannot be read as {_display(codec)} text: {error}", hint=_CODEC_ERROR_HINT
        ) from None
    if not complete:  # drop the last, probably cut, line
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: cut + 1] if cut > 0 else text
    # Excel's "sep=;" first line names the delimiter and is not shown as a row.
    directive = _SEP_LINE.match(text.lstrip("\ufeff"))
    if delimiter is not None:
        delimiter = _parse_delimiter(name, delimiter)
    elif directive is not None:
        delimiter = _parse_delimiter(name, directive.group(1))
    else:
        delimiter = _sniff_delimiter(text, truncated=not complete, skip=(header_row or 1) - 1)
    skip_first = directive is not None

    def records(start: Mark | None = None) -> Records:
        return _text_records(name, path, codec, delimiter, skip_first=skip_first, start=start)

    def marks(start: Mark | None, numbers: list[int]) -> list[Mark]:
        return _text_marks(name, path, codec, delimiter, skip_first=skip_first, start=start,
                           numbers=numbers)

    return Table(name, records, _text_column_label, encoding=codec, delimiter=delimiter, path=path,
                 marks=marks if _stateless(codec) else None, header_row=header_row,
                 kind="TSV" if delimiter == "\t" else "CSV", given=given)


def _stateless(codec: str) -> bool:
    """A codec whose decoding can start at any line: UTF-8, or one byte per
    character with CR and LF as themselves (Windows-1252, Latin-1, ...)."""
    if codec in ("utf-8", "utf-8-sig"):
        return True
    try:
        decoded = bytes(range(256)).decode(codec, _ESCAPE_HANDLER)
    except (UnicodeError, LookupError):
        return False
    return len(decoded) == 256 and decoded[10] == "\n" and decoded[13] == "\r"


def _csv_reader(lines: Iterator[str], delimiter: str) -> Iterator[list[str]]:
    return csv.reader(
        itertools.chain(lines, (_END_LINE,)),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=False,  # `"a"b` reads as `ab`, as Excel does
    )


def _text_from(raw: BinaryIO, codec: str, start: Mark | None) -> io.TextIOWrapper:
    if start is not None:
        raw.seek(start.offset)
        codec = "utf-8" if codec == "utf-8-sig" else codec  # the mark is past the BOM
    return io.TextIOWrapper(raw, encoding=codec, errors=_ESCAPE_HANDLER, newline="")


def _text_marks(name: str, path: str, codec: str, delimiter: str, *, skip_first: bool,
                start: Mark | None, numbers: list[int]) -> list[Mark]:
    """Where each of the records ``numbers`` ends, in bytes: when the csv reader
    returns a record, the lines it has taken are exactly those up to its end.
    Only a record ended by LF gets a mark: text appended after a last line
    without one would continue that record, and a CR alone could become CRLF."""
    found: list[Mark] = []
    wanted = iter(numbers)
    target = next(wanted, None)
    if target is None:
        return found
    offset = 0 if start is None else start.offset
    number = 0 if start is None else start.number
    if start is not None:
        skip_first = False
    one_byte = codec not in ("utf-8", "utf-8-sig")
    with _open_binary(name, path) as raw:
        if start is None and codec == "utf-8-sig" and raw.read(3) == codecs.BOM_UTF8:
            offset = 3  # the decoder drops the mark: no line holds it
        raw.seek(0)
        text = _text_from(raw, codec, start)  # held here: the reader drops it at its end
        taken = 0
        ended = False  # the last line taken ends with LF

        def counted() -> Iterator[str]:
            nonlocal taken, ended
            for line in text:
                taken += len(line) if one_byte or line.isascii() else len(line.encode("utf-8"))
                ended = line.endswith("\n")
                yield line

        for cells in _csv_reader(counted(), delimiter):
            if skip_first:
                skip_first = False
                continue
            if cells and (cells[-1].endswith(_END_LINE) or (cells[-1] == _END and len(cells) == 1)):
                break  # the end (or an unclosed quote, which the reading pass reports)
            number += 1
            while target is not None and number >= target:
                if number == target and ended:
                    found.append(Mark(number, offset + taken))
                target = next(wanted, None)
            if target is None:
                break
    return found


def _open_binary(name: str, path: str) -> BinaryIO:
    if os.path.isdir(path):
        raise InputError(
            f"{name}: is a directory, not a file",
            hint="give the path of the CSV or spreadsheet file itself",
        )
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(
            f"{name}: no such file",
            hint="check the path (relative paths start from the current directory)",
        ) from None
    except PermissionError:
        raise InputError(
            f"{name}: permission denied",
            hint="check the file's permissions; if it is open in Excel, close it and retry",
        ) from None
    except OSError as error:
        raise InputError(f"{name}: cannot open: {error.strerror or error}") from None


def _choose_encoding(name: str, sample: bytes, complete: bool, given: str | None) -> str:
    """The codec: as given, else by BOM, else UTF-8 if the sample is, else a guess."""
    bom = _bom_codec(sample)
    if given is not None:
        try:
            info = codecs.lookup(given)
        except LookupError:
            raise InputError(f"{name}: unknown encoding {given!r}", hint=_ENCODING_HINT) from None
        codec = info.name
        # hex, base64, zlib, rot13... are bytes-to-bytes or str-to-str codecs, and
        # idna/punycode (domain names) and "undefined" cannot decode a text file.
        if not getattr(info, "_is_text_encoding", True) or codec in _NOT_FOR_FILES:
            raise InputError(
                f"{name}: unknown encoding {given!r}: it is not an encoding of text files",
                hint=_ENCODING_HINT,
            )
        # Plain utf-16/utf-32 take the byte order from a byte-order mark and
        # cannot start without one; the -le/-be variants need none.
        boms = _CODEC_BOMS.get(codec)
        if boms is not None and not sample.startswith(boms):
            family = codec.upper()
            raise InputError(
                f"{name}: does not start with a {family} byte-order mark, which --encoding {given} needs",
                hint=f"try --encoding {codec}-le or {codec}-be",
            )
        if codec == "utf-8" and bom == "utf-8-sig":
            codec = "utf-8-sig"
        if not codec.startswith(("utf-16", "utf-32")):
            _refuse_binary(name, sample)
        return codec
    if bom is not None:
        return bom
    _refuse_binary(name, sample)
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as error:
        # The sample may end in the middle of a multi-byte character.
        if not complete and error.reason == "unexpected end of data":
            return "utf-8"
    return _guess_legacy(name, sample, complete)


def _guess_legacy(name: str, sample: bytes, complete: bool) -> str:
    """The code page of a sample that is not UTF-8 (bulksend/reading/charsets.py);
    refuses, asking for --encoding, when no candidate reads it cleanly."""
    from bulksend.reading.charsets import guess_legacy

    guess = guess_legacy(sample, complete=complete)
    if not guess.sure:
        raise InputError(
            f"{name}: cannot tell the file's encoding: it is not UTF-8, and read as"
            f' {_display(guess.codec)} (the closest guess) it would show "{guess.example}"',
            hint="pass --encoding: cp1252 (Excel on Windows), mac-roman (Excel on an older Mac),"
            " utf-8; or save the file again as CSV UTF-8",
        )
    return guess.codec


def _bom_codec(sample: bytes) -> str | None:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    # UTF-32 LE's BOM begins with UTF-16 LE's: test it first.
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _refuse_binary(name: str, sample: bytes) -> None:
    if b"\x00" not in sample:
        return
    if sample.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        hint = "it looks like a spreadsheet: give it its .xlsx, .xls or .ods extension"
    elif sample[1:200:2].count(b"\x00") > 50 or sample[0:200:2].count(b"\x00") > 50:
        hint = "if it is UTF-16 text without a byte-order mark, try --encoding utf-16-le"
    else:
        hint = "export the contacts as CSV or as an .xlsx spreadsheet"
    raise InputError(f"{name}: looks like a binary file, not CSV", hint=hint)


def _parse_delimiter(name: str, given: str) -> str:
    delimiter = DELIMITER_NAMES.get(given.lower(), given)
    if len(delimiter) != 1 or delimiter in '"\r\n\x00\x01':
        raise InputError(
            f"{name}: cannot use {given!r} as the delimiter",
            hint='give one character, e.g. ";" or "|", or "tab"',
        )
    return delimiter


def _sniff_delimiter(text: str, *, truncated: bool, skip: int = 0) -> str:
    """The candidate whose header splits into >1 columns and data rows agree with it most.

    The first ``skip`` records are not looked at (``--header-row``), nor are
    leading records of one cell: title lines above the header ("Contacts
    report", "Exported 2026-01-31") are one cell whatever the delimiter.
    """
    best, best_score = ",", (-1.0, 0)
    for candidate in DELIMITERS:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=candidate, strict=False)
        try:
            records = itertools.islice(reader, skip, skip + SNIFF_RECORDS * 2)
            widths = [len(cells) for cells in records if not _is_blank(cells)]
        except csv.Error:  # e.g. an "unclosed quote" for this reading
            continue
        while len(widths) > 1 and widths[0] < 2:
            widths.pop(0)
        widths = widths[:SNIFF_RECORDS]
        if truncated and len(widths) > 1:
            widths.pop()  # a quoted cell may have been cut with the sample
        if not widths or widths[0] < 2:
            continue
        header, data = widths[0], widths[1:]
        agreeing = sum(w == header for w in data) / len(data) if data else 1.0
        score = (agreeing, header)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _text_records(name: str, path: str, codec: str, delimiter: str, *, skip_first: bool = False,
                  start: Mark | None = None) -> Records:
    """(row number, cells) of every record that is not wholly blank, header
    included; from ``start``, the records after it."""
    with _open_binary(name, path) as raw:
        text = _text_from(raw, codec, start)  # held here: the reader drops it at its end
        reader = _csv_reader(text, delimiter)
        number = 0
        if start is not None:
            number, skip_first = start.number, False
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise _csv_error(name, number + 1, error) from None
            except UnicodeError as error:  # the codec refusing, not a bad byte (those are escaped)
                raise InputError(
                    f"{name}: row {number + 1}: cannot be read as {_display(codec)} text: {error}",
                    hint=_CODEC_ERROR_HINT,
                ) from None
            except OSError as error:
                raise InputError(
                    f"{name}: row {number + 1}: read failed: {error.strerror or error}"
                ) from None
            if skip_first:  # the "sep=" line
                skip_first = False
                continue
            number += 1
            if not cells:
                continue
            last = cells[-1]
            if last.endswith(_END_LINE):
                raise InputError(
                    f'{name}: row {number}: a quote (") opened on this row is never closed, '
                    "so the rest of the file would be read as one cell",
                    hint='close the quote, or double it ("") where it is part of the text',
                )
            if last == _END and len(cells) == 1:
                return
            joined = "".join(cells)
            if _ESCAPED.search(joined):
                raise _decode_error(name, number, codec, cells)
            if '="' in joined:
                cells = [_forced_text(cell) for cell in cells]
            if joined.strip():  # wholly blank rows are skipped, but counted
                yield number, cells


def _forced_text(cell: str) -> str:
    """Excel's text-forcing idiom ``="00123"`` (a formula whose value is the
    text, so that Excel keeps the zeros) as the text a spreadsheet shows: ``00123``."""
    match = _FORCED_TEXT.fullmatch(cell.strip())
    return match.group(1).replace('""', '"') if match else cell


def _csv_error(name: str, number: int, error: csv.Error) -> InputError:
    detail = str(error)
    if "field larger than field limit" in detail:
        return InputError(
            f"{name}: row {number}: a cell is longer than {csv.field_size_limit()} characters, "
            'most likely because a quote (") on this row is never closed',
            hint='close the quote, or double it ("") where it is part of the text',
        )
    return InputError(f"{name}: row {number}: cannot parse the row: {detail}")


def _decode_error(name: str, number: int, codec: str, cells: list[str]) -> InputError:
    match = _ESCAPED.search("".join(cells))
    assert match is not None
    shown = " ".join(f"0x{ord(c) - 0xDC00:02X}" for c in match.group()[:4])
    noun = "bytes" if len(match.group()) > 1 else "byte"
    display = _display(codec)
    if codec.startswith("utf-8"):
        hint = "the file is not all UTF-8; if Excel on Windows saved it, try --encoding cp1252"
    elif codec.startswith(("utf-16", "utf-32")):
        hint = "the file may be damaged; export it again"
    else:
        hint = "give the encoding the file was saved in, e.g. --encoding utf-8 or latin-1"
    return InputError(
        f"{name}: row {number}: {noun} {shown} cannot be read as {display} text",
        hint=hint,
    )


_CODEC_ERROR_HINT = "give the encoding the file was saved in, e.g. --encoding utf-8 or cp1252"


def _display(codec: str) -> str:
    """A codec's name as people know it: UTF-8, Windows-1252, Mac Roman, ..."""
    if re.fullmatch(r"cp125[0-8]", codec):
        return f"Windows-{codec[2:]}"
    names = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "mac-roman": "Mac Roman",
             "utf-16": "UTF-16", "utf-32": "UTF-32", "iso8859-1": "Latin-1"}
    return names.get(codec, codec)


def _text_column_label(index: int) -> str:
    return str(index + 1)


def _is_blank(cells: list[str]) -> bool:
    return not "".join(cells).strip()


# --- header -----------------------------------------------------------------


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


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", " ": "space"}.get(delimiter, f'"{delimiter}"')


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# --- spreadsheets -----------------------------------------------------------


def _open_spreadsheet(name: str, path: str, sheet: str | int | None, header_row: int | None = None,
                      include_hidden: bool = False) -> Table:
    extension = os.path.splitext(path)[1].lower()
    handle = _open_binary(name, path)
    try:
        head = handle.read(512)
        handle.seek(0)
        if not head:
            raise InputError(
                f"{name}: the file is empty",
                hint="save the spreadsheet again, or export it as CSV",
            )
        if not head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
            raise _not_a_spreadsheet(name, extension, head)
        from python_calamine import CalamineError, CalamineWorkbook, PasswordError

        try:
            book = CalamineWorkbook.from_filelike(handle)
        except PasswordError:
            raise InputError(
                f"{name}: is password-protected",
                hint="save an unprotected copy, or export the sheet as CSV",
            ) from None
        except (CalamineError, ValueError, OSError) as error:
            raise _corrupt(name, extension, error) from None
    except BaseException:
        handle.close()
        raise
    try:
        chosen = _choose_sheet(name, book, sheet)
        try:
            data = book.get_sheet_by_name(chosen)
        except CalamineError as error:
            raise _corrupt(name, extension, error) from None
        start = data.start
        offset = start[1] if start is not None else 0  # iter_rows() skips empty leading columns
        xml = _sheet_xml(path, chosen) if head.startswith(_ZIP_MAGIC) else None

        def records() -> Records:
            return _sheet_records(name, extension, data, xml, offset)

        def column_label(index: int) -> str:
            return _column_letter(offset + index)

        table = Table(name, records, column_label, sheet=chosen, header_row=header_row,
                      kind=extension.lstrip(".").upper(), include_hidden=include_hidden,
                      hidden=xml.hidden if xml else frozenset(), filtered=bool(xml and xml.filtered))
    except BaseException:
        book.close()
        handle.close()
        raise
    table._on_close(handle.close)
    table._on_close(_close_book, book)
    return table


def _sheet_records(name: str, extension: str, data: Any, xml: SheetXml | None, offset: int) -> Records:
    """(row number, cells) of the sheet's non-blank rows; a number shown
    through a plain number format (``00000``) as the sheet shows it."""
    from python_calamine import CalamineError

    formats = _safely(xml.formats()) if xml is not None else iter(())
    pending = next(formats, None)
    try:
        # Rows are numbered from the sheet's row 1: calamine yields the
        # leading blank rows too (checked for .xlsx, .xls and .ods).
        for number, values in enumerate(data.iter_rows(), start=1):
            cells = [_cell_text(v) for v in values]
            while pending is not None and pending[0] < number:
                pending = next(formats, None)
            if pending is not None and pending[0] == number:
                for column, fmt in pending[1].items():
                    i = column - offset
                    value = values[i] if 0 <= i < len(values) else None
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        cells[i] = fmt.render(value) or cells[i]
            if not _is_blank(cells):
                yield number, cells
    except CalamineError as error:
        raise _corrupt(name, extension, error) from None


def _sheet_xml(path: str, sheet: str) -> SheetXml | None:
    """Hidden rows and number formats (bulksend/reading/sheetxml.py); None when they
    cannot be read, the sheet then reading as calamine gives it."""
    try:
        return read_sheet_xml(path, sheet)
    except (zipfile.BadZipFile, zlib.error, KeyError, OSError, ValueError, EOFError):
        return None


def _safely(found: Iterator[_T]) -> Iterator[_T]:
    try:
        yield from found
    except (zipfile.BadZipFile, zlib.error, KeyError, OSError, ValueError, EOFError):
        return


def _close_book(book: Any) -> None:
    with contextlib.suppress(Exception):  # already closed
        book.close()


def _choose_sheet(name: str, book: Any, wanted: str | int | None) -> str:
    from python_calamine import SheetTypeEnum, SheetVisibleEnum

    sheets = [m for m in book.sheets_metadata if m.typ == SheetTypeEnum.WorkSheet]
    names: list[str] = [m.name for m in sheets]
    if not names:
        raise InputError(f"{name}: has no worksheets", hint="export the contacts sheet as CSV")
    if wanted is None:
        # What opens on screen: the first sheet that is not hidden.
        visible = [m.name for m in sheets if m.visible == SheetVisibleEnum.Visible]
        return visible[0] if visible else names[0]
    if isinstance(wanted, str) and wanted in names:
        return wanted
    if isinstance(wanted, str) and wanted.strip().isdigit():
        wanted = int(wanted.strip())
    if isinstance(wanted, int) and not isinstance(wanted, bool) and 1 <= wanted <= len(names):
        return names[wanted - 1]
    listed = ", ".join(f'"{n}"' for n in names)
    asked = f"no sheet {wanted}" if isinstance(wanted, int) else f'no sheet "{wanted}"'
    raise InputError(
        f"{name}: {asked}; its sheets are {listed}",
        hint="--sheet takes a sheet's name or its number (1 = first)",
    )


def _not_a_spreadsheet(name: str, extension: str, head: bytes) -> InputError:
    stripped = head.lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n").lower()
    if stripped.startswith((b"<html", b"<!doctype", b"<table", b"<?xml")):
        return InputError(
            f"{name}: is not a spreadsheet ({extension}): it is an HTML or XML page",
            hint="open it in Excel and save it as .xlsx, or export the contacts as CSV",
        )
    if b"\x00" not in head or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return InputError(
            f"{name}: is not a spreadsheet ({extension}): it looks like a text file",
            hint="if it is CSV, rename it to .csv",
        )
    return InputError(
        f"{name}: is not a spreadsheet ({extension}): unknown content",
        hint="open it in Excel or LibreOffice and save it again, or export it as CSV",
    )


def _corrupt(name: str, extension: str, error: BaseException) -> InputError:
    detail = " ".join(str(error).split())[:160]
    return InputError(
        f"{name}: cannot be read as a spreadsheet ({extension}): {detail}",
        hint="open it in Excel or LibreOffice and save it again, or export it as CSV",
    )


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _cell_text(value: object) -> str:
    """The text a spreadsheet shows for a cell value from calamine."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, dt.datetime):
        moment = _round_to_second(value)
        if moment.time() == dt.time(0):
            return moment.date().isoformat()
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return _round_to_second(dt.datetime.combine(dt.date(2000, 1, 1), value)).strftime("%H:%M:%S")
    if isinstance(value, dt.timedelta):
        # A duration (e.g. [h]:mm:ss in Excel) may exceed 24 hours.
        seconds = round(value.total_seconds())
        sign = "-" if seconds < 0 else ""
        hours, rest = divmod(abs(seconds), 3600)
        return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return str(value)


def _number_text(value: float) -> str:
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    # Excel keeps and shows 15 significant digits: 0.1+0.2 is 0.3 on screen,
    # and a day fraction or a sum never shows binary noise.
    shown = float(f"{value:.15g}")
    if shown.is_integer() and abs(shown) < 1e15:
        return str(int(shown))
    return repr(shown)


def _round_to_second(moment: dt.datetime) -> dt.datetime:
    # Spreadsheets store times as fractions of a day; 09:30 may come back
    # as 09:29:59.999999.
    if moment.microsecond >= 500_000:
        moment += dt.timedelta(seconds=1)
    return moment.replace(microsecond=0)
