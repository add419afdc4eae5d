"""What python-calamine does not say about an .xlsx sheet: which rows are
hidden, and which cells carry a number format that changes the text shown.

calamine hands over cell values only (tafia/calamine#237: no hidden rows; no
number formats either), so for Office Open XML workbooks (.xlsx, .xlsm) this
module reads the two parts that hold them, ECMA-376 Part 1:

* the sheet's XML (§18.3.1.73 ``<row r="5" hidden="1">``; an AutoFilter,
  §18.3.1.2, hides the rows it filters out exactly so);
* ``xl/styles.xml``: a cell's ``s`` attribute indexes ``<cellXfs>``, whose
  ``numFmtId`` is a built-in format (§18.8.30) or one of ``<numFmts>``.

The sheet XML is scanned as bytes with regular expressions, a chunk at a time,
never parsed into a tree: it can be hundreds of megabytes at a million rows.
Rows and cells are located by their ``r`` reference, which every mainstream
writer (Excel, LibreOffice, Google Sheets, openpyxl, xlsxwriter) writes; a
hidden row without one is counted in order. Other formats (.xls, .xlsb, .ods)
are not read here: their hidden rows are read like any other, and their numbers
in General form.

Number formats are rendered only where the text shown is not a matter of
locale or of calamine's own date detection: zero padding (``00000``: 2494 shows
``02494``), a fixed or optional count of decimals (``0.00``, ``0.0#``), and
integers (``0``). A thousands separator (``#,##0``) is left out, its character
depending on the reader's locale, and so is the text a format writes around the
number (a currency or a unit: ``0.00 €``, ``$#,##0.00``, ``0.00 "kg"``: 2.5 is
``2.50``); anything else (dates, percent, scientific, fractions, literals
between digits such as ``000-000``, conditions) is left to the General
rendering of cells.py: the number the file holds (docs/operations.md, "Numbers").

A whole number is never rounded: beyond 2**53 a double cannot hold every
integer, so ``long_numbers`` reads such a cell's digits as the file stores them
(``<v>9007199254740993</v>``), where calamine gives the nearest double.
"""

from __future__ import annotations

import decimal
import html
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from bulksend.reading.cells import EXACT_INTEGERS

__all__ = ["NumberFormat", "SheetXml", "plain_format", "read_active_sheet", "read_sheet_xml"]

_CHUNK = 1 << 20
_HEAD = 1 << 14  # a sheet's first bytes, where its sheetViews are
_ATTRS = re.compile(rb'([\w:.-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row\b([^>]*)>")
_REF = re.compile(rb"([A-Z]{1,3})([0-9]+)")
_HIDDEN = re.compile(rb"""\bhidden\s*=\s*["'](?:1|true)["']""")
_AUTOFILTER = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?autoFilter\b")

# ECMA-376 Part 1, §18.8.30: the built-in formats that are plain numbers.
_BUILTIN = {1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00"}
_SIMPLE = re.compile(r"([#0,]*)(?:\.([0#]+))?")
# Text a format writes before or after the number (ECMA-376 Part 1, §18.8.31):
# quoted, escaped, a locale's currency block [$€-407], a space the width of a
# character (_x), a fill (*x), and the characters written as they are.
_AROUND = r'(?:"[^"]*"|\\.|\[\$[^\]]*\]|_.|\*.|[ $€£¥\u00a0+\-()])*'
_LITERALS = re.compile(rf"({_AROUND})([#0,.]+)({_AROUND})")
_COLOUR = re.compile(r"\[(?:black|blue|cyan|green|magenta|red|white|yellow|color\d+)\]", re.IGNORECASE)
_LONG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?v>(-?[0-9]{16,})</")
_CELL = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?c\s([^>]*)>")


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """A plain number format: at least ``digits`` integer digits (zero padded),
    ``least`` to ``most`` decimals (``0.0#``: 1 to 2)."""

    digits: int
    least: int
    most: int

    def render(self, value: float, digits: str | None = None) -> str | None:
        """The text a spreadsheet shows for ``value``: rounded half away from
        zero at ``most`` decimals, from the 15 significant digits Excel keeps
        (a whole number below 2**53: all its digits; ``digits``: a whole
        number's digits as the file stores them, used as they are); None for a
        value too large to show so (or not finite)."""
        try:
            # The digits the file holds for a whole number a double holds exactly
            # (a 16-digit number formatted 0, issue 24); else Excel's 15.
            exact = isinstance(value, int) or (value.is_integer() and abs(value) < EXACT_INTEGERS)
            number = (decimal.Decimal(digits) if digits is not None
                      else decimal.Decimal(int(value)) if exact else decimal.Decimal(f"{value:.15g}"))
            rounded = number.quantize(decimal.Decimal(1).scaleb(-self.most), decimal.ROUND_HALF_UP)
        except decimal.InvalidOperation:
            return None
        sign = "-" if rounded < 0 else ""
        whole, _, fraction = f"{abs(rounded):f}".partition(".")
        fraction = fraction.rstrip("0").ljust(self.least, "0")
        whole = whole.lstrip("0").rjust(self.digits, "0")
        return sign + whole + ("." + fraction if fraction else "")


@dataclass(frozen=True)
class SheetXml:
    """Hidden rows and number formats of one sheet of an .xlsx/.xlsm file."""

    path: str
    member: str  # the sheet's part in the zip, e.g. "xl/worksheets/sheet1.xml"
    hidden: frozenset[int]  # 1-based numbers of the rows hidden in the sheet
    filtered: bool  # the sheet has an AutoFilter (rows hidden by it are filtered out)
    styles: dict[int, NumberFormat] = field(default_factory=dict)  # cellXfs index -> format

    def formats(self) -> Iterator[tuple[int, dict[int, NumberFormat]]]:
        """(row number, {0-based column: format}) for each row, in order, that has
        a cell whose style is a plain number format; nothing when no style is."""
        if not self.styles:
            return
        tag = re.compile(
            rb"<(?:[A-Za-z_][\w.-]*:)?c\s(?=[^>]*?\bs\s*=\s*[\"'](?:"
            + b"|".join(str(index).encode() for index in sorted(self.styles))
            + rb")[\"'])([^>]*)>"
        )
        row = 0
        cells: dict[int, NumberFormat] = {}
        with zipfile.ZipFile(self.path) as book, book.open(self.member) as part:
            for chunk in _chunks(part):
                for match in tag.finditer(chunk):
                    attrs = _attributes(match.group(1))
                    ref = _REF.fullmatch(attrs.get("r", "").encode())
                    style = self.styles.get(int(attrs.get("s", "-1") or -1))
                    if ref is None or style is None:
                        continue  # no cell reference: left to the General rendering
                    number = int(ref.group(2))
                    if number != row:
                        if cells:
                            yield row, cells
                        row, cells = number, {}
                    cells[_column_index(ref.group(1).decode())] = style
        if cells:
            yield row, cells


    def long_numbers(self) -> dict[tuple[int, int], str]:
        """{(row number, 0-based column): digits} of the number cells that store a
        whole number of 16 digits or more (which a double may not hold exactly),
        as the file writes them. Read on demand: a sheet has such cells rarely."""
        found: dict[tuple[int, int], str] = {}
        last = b""  # the attributes of the last cell tag of the chunks before
        with zipfile.ZipFile(self.path) as book, book.open(self.member) as part:
            for chunk in _chunks(part):
                at = 0
                for match in _LONG.finditer(chunk):
                    cells = _CELL.findall(chunk, at, match.start())
                    last = cells[-1] if cells else last
                    at = match.end()
                    attrs = _attributes(last)
                    ref = _REF.fullmatch(attrs.get("r", "").encode())
                    if ref is not None and attrs.get("t", "n") == "n":
                        where = int(ref.group(2)), _column_index(ref.group(1).decode())
                        found[where] = match.group(1).decode()
                cells = _CELL.findall(chunk, at)
                last = cells[-1] if cells else last
        return found


def read_sheet_xml(path: str, sheet: str) -> SheetXml | None:
    """The hidden rows and number formats of ``sheet`` (its name) in the
    workbook at ``path``; None when the file is not Office Open XML (.xls, .ods,
    .xlsb) or its parts cannot be found. Raises ``zipfile.BadZipFile``,
    ``KeyError`` or ``OSError`` only for a file calamine has already read,
    so the caller treats them as "nothing known"."""
    try:
        book = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None
    with book:
        member = _sheet_member(book, sheet)
        if member is None:
            return None
        with book.open(member) as part:
            found = _hidden_rows(part)
        if found is None:
            with book.open(member) as part:
                found = _hidden_rows(part, count_all=True)
        assert found is not None
        hidden, filtered = found
        styles = _number_styles(book)
    return SheetXml(path, member, hidden, filtered, styles)


def read_active_sheet(path: str) -> tuple[str | None, str]:
    """The sheet a workbook opens on, as the file records it, and where it says
    so: .xlsx ``<workbookView activeTab="N">`` (ECMA-376 Part 1, §18.2.30: the
    Nth ``<sheet>``), else the one sheet whose ``<sheetView tabSelected="1">``
    (§18.3.1.87); .ods settings.xml's ``ActiveTable`` (ODF 1.2 Part 1, §3.10).
    (None, "") when the file records none (or is not a zip)."""
    try:
        book = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None, ""
    try:
        with book:
            names = book.namelist()
            if "settings.xml" in names:
                found = re.search(rb'config:name="ActiveTable"[^>]*>([^<]*)<', book.read("settings.xml"))
                name = _unescape(found.group(1).decode()) if found else ""
                return (name, "settings.xml ActiveTable") if name else (None, "")
            if "xl/workbook.xml" not in names:
                return None, ""
            return _xlsx_active(book)
    except (zipfile.BadZipFile, zlib.error, KeyError, OSError, ValueError, EOFError):
        return None, ""


def _xlsx_active(book: zipfile.ZipFile) -> tuple[str | None, str]:
    workbook = book.read("xl/workbook.xml")
    sheets = [_attributes(m.group(1)).get("name", "")
              for m in re.finditer(rb"<(?:\w+:)?sheet\b([^>]*)>", workbook)]
    view = re.search(rb"<(?:\w+:)?workbookView\b([^>]*)>", workbook)
    tab = _attributes(view.group(1)).get("activeTab", "") if view else ""
    if tab.isdigit() and int(tab) < len(sheets):
        return sheets[int(tab)], "activeTab"
    selected = []
    for name in sheets:
        member = _sheet_member(book, name)
        if member is None:
            continue
        with book.open(member) as part:
            head = part.read(_HEAD)  # sheetViews come before sheetData (§18.3.1.99)
        if re.search(rb"<(?:\w+:)?sheetView\b[^>]*\btabSelected\s*=\s*[\"'](?:1|true)[\"']", head):
            selected.append(name)
    return (selected[0], "tabSelected") if len(selected) == 1 else (None, "")


def _chunks(part: IO[bytes]) -> Iterator[bytes]:
    """The part's bytes in chunks that each end after a whole tag."""
    carry = b""
    while True:
        data = part.read(_CHUNK)
        if not data:
            if carry:
                yield carry
            return
        data = carry + data
        cut = data.rfind(b">") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]


def _hidden_rows(part: IO[bytes], *, count_all: bool = False) -> tuple[frozenset[int], bool] | None:
    """The hidden rows and whether there is an AutoFilter. Chunks without the
    word "hidden" are skipped; None when a hidden row has no ``r`` (then the
    caller counts every row: ``count_all``)."""
    hidden: set[int] = set()
    filtered = False
    row = 0
    for chunk in _chunks(part):
        filtered = filtered or _AUTOFILTER.search(chunk) is not None
        if not count_all and b"hidden" not in chunk:
            continue
        for match in _ROW_TAG.finditer(chunk):
            attrs = match.group(1)
            reference = _attributes(attrs).get("r", "")
            if reference.isdigit():
                row = int(reference)
            elif count_all:
                row += 1
            elif _HIDDEN.search(attrs):
                return None
            else:
                continue
            if _HIDDEN.search(attrs):
                hidden.add(row)
    return frozenset(hidden), filtered


def _number_styles(book: zipfile.ZipFile) -> dict[int, NumberFormat]:
    try:
        styles = book.read("xl/styles.xml")
    except KeyError:
        return {}
    codes = dict(_BUILTIN)
    for match in re.finditer(rb"<(?:\w+:)?numFmt\b([^>]*)>", styles):
        attrs = _attributes(match.group(1))
        if attrs.get("numFmtId", "").isdigit():
            codes[int(attrs["numFmtId"])] = attrs.get("formatCode", "")
    section = re.search(rb"<(?:\w+:)?cellXfs\b[^>]*>(.*?)</(?:\w+:)?cellXfs>", styles, re.DOTALL)
    if section is None:
        return {}
    found: dict[int, NumberFormat] = {}
    for index, match in enumerate(re.finditer(rb"<(?:\w+:)?xf\b([^>]*)>", section.group(1))):
        number_id = _attributes(match.group(1)).get("numFmtId", "0")
        code = codes.get(int(number_id)) if number_id.isdigit() else None
        fmt = plain_format(code) if code else None
        if fmt is not None:
            found[index] = fmt
    return found


def plain_format(code: str) -> NumberFormat | None:
    """A format code made of 0, #, a decimal point and thousands commas, with a
    0 before the point, and text before or after it (a currency, a unit: left
    out); one section, or the same one for negatives, colours aside. None for
    anything else."""
    sections = [_COLOUR.sub("", section) for section in code.split(";")]
    if len(sections) > 1 and sections[1] not in (sections[0], "-" + sections[0]):
        return None
    around = _LITERALS.fullmatch(sections[0])
    match = _SIMPLE.fullmatch(around.group(2)) if around else None
    if match is None or "0" not in match.group(1) or match.group(1).endswith(","):
        return None  # "#.##" shows "7." : not rendered; "0," divides by a thousand
    whole, fraction = match.group(1).replace(",", ""), match.group(2) or ""
    return NumberFormat(whole.count("0"), fraction.count("0"), len(fraction))


def _sheet_member(book: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member of the sheet named ``sheet``: workbook.xml gives its
    relationship id, workbook.xml.rels the part it points to."""
    try:
        workbook = book.read("xl/workbook.xml")
        rels = book.read("xl/_rels/workbook.xml.rels")
    except KeyError:
        return None
    rid = None
    for match in re.finditer(rb"<(?:\w+:)?sheet\b([^>]*)>", workbook):
        attrs = _attributes(match.group(1))
        if attrs.get("name") == sheet:
            rid = next((v for k, v in attrs.items() if k.endswith(":id")), None)
            break
    if rid is None:
        return None
    for match in re.finditer(rb"<(?:\w+:)?Relationship\b([^>]*)>", rels):
        attrs = _attributes(match.group(1))
        if attrs.get("Id") == rid:
            target = attrs.get("Target", "")
            member = target.lstrip("/") if target.startswith("/") else posixpath.join("xl", target)
            member = posixpath.normpath(member)
            return member if member in book.namelist() else None
    return None


def _attributes(raw: bytes) -> dict[str, str]:
    return {
        m.group(1).decode(): _unescape((m.group(2) if m.group(2) is not None else m.group(3)).decode())
        for m in _ATTRS.finditer(raw)
    }


def _unescape(text: str) -> str:
    return html.unescape(text) if "&" in text else text


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1
