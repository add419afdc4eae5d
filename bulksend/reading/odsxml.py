"""What python-calamine does not say about an .ods sheet: its hidden rows, the
plain number formats of its cells and its merged ranges, so that .ods reaches
.xlsx's parity (issue 24).

ODF 1.2 Part 1 keeps both in the document's XML: a row's
``table:visibility="collapse"`` (hidden) or ``"filter"`` (filtered out,
§19.749), and a cell's style (its own ``table:style-name``, else its column's
``table:default-cell-style-name``) whose ``style:data-style-name`` names a
``<number:number-style>`` (§16.27.2) with one ``<number:number>``
(``number:min-integer-digits``, ``number:decimal-places``,
``number:min-decimal-places``). As for .xlsx (sheetxml.py), only the formats
whose text does not depend on the reader's locale are rendered: zero padding and
decimals; the grouping separator is left out. A merged range is a cell's
``table:number-rows-spanned`` and ``table:number-columns-spanned`` (§19.680,
§19.677) over the ``<table:covered-table-cell>`` elements it hides: the same
range calamine reports for .xlsx (reading/merges.py).

content.xml is read with ``iterparse``, element by element, and only the sheet
asked for is walked; repeated rows and cells (``number-rows-repeated``,
``number-columns-repeated``) are counted, never expanded.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO
from xml.etree.ElementTree import Element, ParseError, iterparse

from bulksend.reading.merges import Merge
from bulksend.reading.sheetxml import NumberFormat

__all__ = ["OdsSheet", "read_ods_sheet"]

_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_NUMBER = "urn:oasis:names:tc:opendocument:xmlns:datastyle:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_MANY = 1 << 20  # a repeat count this large is the sheet's padding to its end: not walked
_LONG = re.compile(r"-?[0-9]{16,}")  # a whole number a double may not hold exactly


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


@dataclass(frozen=True)
class OdsSheet:
    """Hidden rows and number formats of one sheet of an .ods, in the shape of
    sheetxml.SheetXml (what workbook.py reads beside calamine's values)."""

    hidden: frozenset[int]  # 1-based numbers of the rows hidden (or filtered out) in the sheet
    cells: dict[int, dict[int, NumberFormat]]  # row number -> {0-based column: format}
    filtered: bool = False  # some rows are hidden by a filter (visibility="filter")
    merges: tuple[Merge, ...] = ()  # the merged ranges, 0-based as calamine gives them for .xlsx
    long: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> 16+ digits stored

    def long_numbers(self) -> dict[tuple[int, int], str]:
        """{(row number, 0-based column): digits} of the number cells whose
        ``office:value`` is a whole number of 16 digits or more, as written."""
        return self.long

    def formats(self) -> Iterator[tuple[int, dict[int, NumberFormat]]]:
        """(row number, {0-based column: format}) for each row, in order, that
        has a number cell with a plain number format."""
        yield from sorted(self.cells.items())


def read_ods_sheet(path: str, sheet: str) -> OdsSheet | None:
    """Hidden rows and plain number formats of ``sheet`` in the .ods at ``path``;
    None when the file is not an .ods or its XML cannot be read (its values then
    read as calamine gives them)."""
    try:
        with zipfile.ZipFile(path) as book:
            names = book.namelist()
            if "content.xml" not in names:
                return None
            walk = _Walk(sheet)
            if "styles.xml" in names:
                with book.open("styles.xml") as part:
                    walk.read(part)
            with book.open("content.xml") as part:
                walk.read(part)
            return OdsSheet(frozenset(walk.hidden), walk.cells, walk.filtered, tuple(walk.merges), walk.long)
    except (zipfile.BadZipFile, zlib.error, KeyError, OSError, ValueError, EOFError, ParseError):
        return None


class _Walk:
    """One pass over styles.xml then content.xml: number styles, the cell styles
    that use them, then the rows of the sheet asked for."""

    def __init__(self, sheet: str) -> None:
        self.sheet = sheet
        self.formats: dict[str, NumberFormat] = {}  # number style -> format
        self.styles: dict[str, str] = {}  # cell style -> number style
        self.columns: list[tuple[int, int, str | None]] = []  # (first, last, default cell style)
        self.hidden: set[int] = set()
        self.cells: dict[int, dict[int, NumberFormat]] = {}
        self.filtered = False
        self.merges: list[Merge] = []
        self.long: dict[tuple[int, int], str] = {}
        self.row = 0

    def read(self, part: IO[bytes]) -> None:
        current: str | None = None  # the number style being read
        inside = False  # in the sheet asked for
        for event, element in iterparse(part, events=("start", "end")):
            tag = element.tag
            if event == "start":
                if tag == _q(_NUMBER, "number-style"):
                    current = element.get(_q(_STYLE, "name"))
                elif tag == _q(_TABLE, "table"):
                    inside = element.get(_q(_TABLE, "name")) == self.sheet
                continue
            if tag == _q(_NUMBER, "number") and current is not None:
                self.formats[current] = _format(element)
            elif tag == _q(_NUMBER, "number-style"):
                current = None
            elif tag == _q(_STYLE, "style"):
                data, name = element.get(_q(_STYLE, "data-style-name")), element.get(_q(_STYLE, "name"))
                if data and name:
                    self.styles[name] = data
            elif inside and tag == _q(_TABLE, "table-column"):
                count = min(int(element.get(_q(_TABLE, "number-columns-repeated"), "1")), _MANY)
                first = self.columns[-1][1] + 1 if self.columns else 0
                default = element.get(_q(_TABLE, "default-cell-style-name"))
                self.columns.append((first, first + count - 1, default))
            elif inside and tag == _q(_TABLE, "table-row"):
                self._row(element)
                element.clear()
            elif inside and tag == _q(_TABLE, "table"):
                return

    def _row(self, element: Element) -> None:
        count = int(element.get(_q(_TABLE, "number-rows-repeated"), "1"))
        visibility = element.get(_q(_TABLE, "visibility"), "visible")
        if count < _MANY:  # not the padding to the sheet's end
            found = self._formats(element)
            for number in range(self.row + 1, self.row + count + 1):
                if visibility != "visible":
                    self.hidden.add(number)
                if found:
                    self.cells[number] = found
            self.filtered = self.filtered or visibility == "filter"
        self.row += count

    def _formats(self, row: Element) -> dict[int, NumberFormat]:
        """The row's number cells with a plain format; its merged ranges are noted."""
        found: dict[int, NumberFormat] = {}
        column = 0
        for cell in row:
            if cell.tag not in (_q(_TABLE, "table-cell"), _q(_TABLE, "covered-table-cell")):
                continue
            count = min(int(cell.get(_q(_TABLE, "number-columns-repeated"), "1")), _MANY)
            down = int(cell.get(_q(_TABLE, "number-rows-spanned"), "1") or 1)
            across = int(cell.get(_q(_TABLE, "number-columns-spanned"), "1") or 1)
            if down > 1 or across > 1:
                self.merges.append(((self.row, column), (self.row + down - 1, column + across - 1)))
            if cell.get(_q(_OFFICE, "value-type")) in ("float", "currency"):
                stored = cell.get(_q(_OFFICE, "value"), "")
                if len(stored) >= 16 and _LONG.fullmatch(stored):
                    self.long[self.row + 1, column] = stored
                style = cell.get(_q(_TABLE, "style-name")) or next(
                    (s for first, last, s in self.columns if first <= column <= last), None)
                fmt = self.formats.get(self.styles.get(style or "", ""))
                if fmt is not None:
                    found.update((column + offset, fmt) for offset in range(count))
            column += count
        return found


def _format(number: Element) -> NumberFormat:
    """A ``<number:number>`` as a plain format: zero padded to min-integer-digits,
    min-decimal-places (default: decimal-places) to decimal-places decimals."""
    places = int(number.get(_q(_NUMBER, "decimal-places"), "0") or 0)
    least = int(number.get(_q(_NUMBER, "min-decimal-places"), str(places)) or 0)
    digits = int(number.get(_q(_NUMBER, "min-integer-digits"), "1") or 1)
    return NumberFormat(digits, min(least, places), places)
