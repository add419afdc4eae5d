"""Spreadsheets (``.xlsx``, ``.xlsm``, ``.xlsb``, ``.xls``, ``.ods``) as records,
through python-calamine: the sheet asked for (by name or number; else the tab
active when the file was saved, or the only visible sheet with data), its rows
numbered as the sheet numbers them, every value as the text a person sees
(cells.py), and the hidden rows, number formats and merged ranges calamine does
not report (sheetxml.py for .xlsx, xls.py, odsxml.py). calamine is imported
when a workbook is opened, not with this module.

python-calamine is used directly rather than through
``pandas.read_excel(engine="calamine")``. pandas would add nothing but layers
to undo: its calamine engine calls the same library, then by default turns the
*text* cells ``NA``, ``null``, ``nan`` and ``""`` into NaN, widens dates into
datetimes, and copies the sheet into a DataFrame. Calamine's ``iter_rows()``
hands over one row of native values at a time (str, int, float, bool, date,
datetime, time, timedelta), including the sheet's leading blank rows, so real
row numbers survive, and it reads the workbook's content whatever its extension
(an ``.xls`` that is really ``.xlsx`` opens, as in Excel). pandas is therefore
not imported at all. A spreadsheet's sheet is held in memory by calamine (the
formats are zipped XML or binary records, and a sheet tops out at 1,048,576
rows); only text is truly streamed.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import os
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any, TypeVar

from bulksend.common.errors import InputError
from bulksend.reading.cells import EXACT_INTEGERS, cell_text, column_letter, is_blank
from bulksend.reading.files import OLE_MAGIC, ZIP_MAGIC, open_binary
from bulksend.reading.merges import Merge, MergeFiller, merged_notes, reference, sheet_merges
from bulksend.reading.odsxml import OdsSheet, read_ods_sheet
from bulksend.reading.sheetxml import SheetXml, read_active_sheet, read_sheet_xml
from bulksend.reading.table import Records, Table
from bulksend.reading.xls import XlsSheet, read_xls_sheet, xls_active_sheet

_T = TypeVar("_T")
_HUGE = 1e21  # a double from here on, with no digits stored beside it, is written as calamine gives it


def open_spreadsheet(name: str, path: str, sheet: str | int | None, header_row: int | None = None,
                      include_hidden: bool = False) -> Table:
    """Sheet ``sheet`` (a name, a 1-based number, or None: the active tab,
    else the only visible one with data) of the workbook at ``path`` (``name``
    in messages) as a ``Table``; the workbook stays open until the table
    closes. Raises ``InputError`` for a file that is not a spreadsheet, is
    password-protected or damaged, has no such sheet, or has several sheets
    with data and no active tab recorded.
    """
    extension = os.path.splitext(path)[1].lower()
    handle = open_binary(name, path)
    try:
        head = handle.read(512)
        handle.seek(0)
        if not head:
            raise InputError(
                f"{name}: the file is empty",
                hint="save the spreadsheet again, or export it as CSV",
            )
        if not head.startswith((ZIP_MAGIC, OLE_MAGIC)):
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
        chosen, why = _choose_sheet(name, book, sheet, path)
        try:
            data = book.get_sheet_by_name(chosen)
        except CalamineError as error:
            raise _corrupt(name, extension, error) from None
        start = data.start
        offset = start[1] if start is not None else 0  # iter_rows() skips empty leading columns
        xml: SheetXml | XlsSheet | OdsSheet | None = (
            (_sheet_xml(path, chosen) or read_ods_sheet(path, chosen)) if head.startswith(ZIP_MAGIC)
            else read_xls_sheet(path, chosen))
        merges = _merges(data) or (sheet_merges(xml.merges) if isinstance(xml, OdsSheet) else [])

        def records() -> Records:
            return _sheet_records(name, extension, data, xml, offset, merges)

        def column_label(index: int) -> str:
            return column_letter(offset + index)

        table = Table(name, records, column_label, sheet=chosen, header_row=header_row,
                      kind=extension.lstrip(".").upper(), include_hidden=include_hidden,
                      hidden=xml.hidden if xml else frozenset(), filtered=bool(xml and xml.filtered))
        table.choices += [note for note in (why, *merged_notes(merges)) if note]
        table.title = _title(merges, table.header_row)
        if why:  # the sheet was chosen for the person: a missing column's hint says how
            table.header = dataclasses.replace(table.header, sheet=f'"{chosen}", {why.split(": ", 1)[1]}')
    except BaseException:
        book.close()
        handle.close()
        raise
    table.on_close(handle.close)
    table.on_close(_close_book, book)
    return table


def _sheet_records(name: str, extension: str, data: Any, xml: SheetXml | XlsSheet | OdsSheet | None,
                   offset: int, merges: list[Merge]) -> Records:
    """(row number, cells) of the sheet's non-blank rows; a number shown
    through a plain number format (``00000``) as the sheet shows it, a whole
    number with all the digits the file holds (``_LongNumbers``); a cell that a
    merged range covers holds the range's value (merges.py)."""
    from python_calamine import CalamineError

    formats = _safely(xml.formats()) if xml is not None else iter(())
    pending = next(formats, None)
    filler = MergeFiller(merges, offset)
    long = _LongNumbers(xml, offset)
    try:
        # Rows are numbered from the sheet's row 1: calamine yields the
        # leading blank rows too (checked for .xlsx, .xls and .ods).
        for number, values in enumerate(data.iter_rows(), start=1):
            cells = [cell_text(v) for v in values]
            if filler:
                cells = filler.fill(number, cells)
            while pending is not None and pending[0] < number:
                pending = next(formats, None)
            formatted = pending[1] if pending is not None and pending[0] == number else {}
            for column, fmt in formatted.items():
                i = column - offset
                value = values[i] if 0 <= i < len(values) else None
                if isinstance(value, int | float) and not isinstance(value, bool):
                    cells[i] = fmt.render(value, long.digits(number, i, value)) or cells[i]
            joined = "".join(cells)
            if "e+" in joined or ".0" in joined:  # a whole number beyond 2**53, maybe (cells.py)
                long.write(number, values, cells, formatted)
            if not is_blank(cells):
                yield number, cells
    except CalamineError as error:
        raise _corrupt(name, extension, error) from None


class _LongNumbers:
    """Whole numbers a double cannot hold exactly (2**53 and beyond: a 16-digit
    account number) written with every digit the file holds (issue 24): as
    .xlsx and .ods store them (read on demand from the sheet's XML), else the
    exact value of the double .xls stores; never Excel's 15 digits."""

    def __init__(self, xml: SheetXml | XlsSheet | OdsSheet | None, offset: int) -> None:
        self._xml = xml
        self._offset = offset
        self._stored: dict[tuple[int, int], str] | None = None

    def digits(self, number: int, i: int, value: object) -> str | None:
        """The digits of the cell at row ``number``, record position ``i``,
        when its ``value`` is a whole number beyond 2**53; else None."""
        if not (isinstance(value, float) and value.is_integer() and abs(value) >= EXACT_INTEGERS):
            return None
        if self._stored is None:
            try:
                self._stored = self._xml.long_numbers() if self._xml is not None else {}
            except (zipfile.BadZipFile, zlib.error, KeyError, OSError, ValueError, EOFError):
                self._stored = {}
        stored = self._stored.get((number, i + self._offset))
        return stored if stored is not None else str(int(value)) if abs(value) < _HUGE else None

    def write(self, number: int, values: list[Any], cells: list[str], formatted: dict[int, Any]) -> None:
        """Write the row's unformatted whole numbers beyond 2**53 with all their digits."""
        for i, value in enumerate(values):
            if i + self._offset not in formatted:
                found = self.digits(number, i, value)
                if found is not None:
                    cells[i] = found


def _merges(data: Any) -> list[Merge]:
    """The sheet's merged ranges (calamine reads them for .xlsx, .xls and .ods); [] when unknown."""
    try:
        return sheet_merges(data.merged_cell_ranges)
    except Exception:  # not read by this calamine for this format: as stored
        return []


def _title(merges: list[Merge], header_row: int) -> str:
    """The range merged across columns on the header row ("A1:E1"): a title
    above the column names, not column names (issue 24, M1); "" when none."""
    for merge in merges:
        (r0, c0), (_r1, c1) = merge
        if r0 == header_row - 1 and c1 > c0:
            return reference(merge)
    return ""


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


def _choose_sheet(name: str, book: Any, wanted: str | int | None, path: str) -> tuple[str, str]:
    """The sheet to read, and why when it was not asked for (a guess shown, issue 24)."""
    from python_calamine import SheetTypeEnum, SheetVisibleEnum

    sheets = [m for m in book.sheets_metadata if m.typ == SheetTypeEnum.WorkSheet]
    names: list[str] = [m.name for m in sheets]
    if not names:
        raise InputError(f"{name}: has no worksheets", hint="export the contacts sheet as CSV")
    if wanted is None:
        visible = [m.name for m in sheets if m.visible == SheetVisibleEnum.Visible] or names
        return _default_sheet(name, book, visible, path)
    if isinstance(wanted, str) and wanted in names:
        return wanted, ""
    if isinstance(wanted, str) and wanted.strip().isdigit():
        wanted = int(wanted.strip())
    if isinstance(wanted, int) and not isinstance(wanted, bool) and 1 <= wanted <= len(names):
        return names[wanted - 1], ""
    listed = ", ".join(f'"{n}"' for n in names)
    asked = f"no sheet {wanted}" if isinstance(wanted, int) else f'no sheet "{wanted}"'
    raise InputError(
        f"{name}: {asked}; its sheets are {listed}",
        hint="--sheet takes a sheet's name or its number (1 = first)",
    )


def _default_sheet(name: str, book: Any, visible: list[str], path: str) -> tuple[str, str]:
    """The sheet a person was looking at: the one the workbook opens on (its
    active tab), else the only visible sheet with data. Several sheets with data
    and no active tab recorded: InputError asking for --sheet (issue 24)."""
    active, where = read_active_sheet(path)
    if active is None:
        active, where = xls_active_sheet(path)
    if active in visible:
        if len(visible) == 1:
            return active, ""
        return active, f'sheet "{active}": the tab active when the file was saved ({where})'
    if len(visible) == 1:
        return visible[0], ""
    holding = [n for n in visible if _holds_data(book, n)]
    if len(holding) > 1:
        listed = ", ".join(f'"{n}"' for n in holding)
        raise InputError(
            f"{name}: {len(holding)} sheets hold data ({listed}) and the file does not say which tab was"
            " open; which one is to be read?",
            hint="pass --sheet with the name of the one to read (or save the workbook with that tab open)",
        )
    if holding:
        empty = ", ".join(f'"{n}"' for n in visible if n not in holding)
        return holding[0], f'sheet "{holding[0]}": the only sheet with data ({empty} empty)'
    return visible[0], ""


def _holds_data(book: Any, sheet: str) -> bool:
    """Whether ``sheet`` has a non-blank cell (one it cannot read counts as data)."""
    try:
        rows = book.get_sheet_by_name(sheet).iter_rows()
        return any(not is_blank([cell_text(v) for v in row]) for row in rows)
    except Exception:  # a sheet calamine cannot read is read, and reported, if chosen
        return True


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

