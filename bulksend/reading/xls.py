"""Excel 97-2003 workbooks (.xls, BIFF8) through xlrd, where calamine says less.

calamine reads an .xls's values but not its number formats (a ZIP formatted
``00000`` comes back 2494), its hidden rows, nor which tab was active; xlrd,
kept for exactly this format, reads all three from the file's own records
(XF and FORMAT, ROW, WINDOW2). It is imported only when an .xls is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bulksend.reading.files import OLE_MAGIC
from bulksend.reading.sheetxml import NumberFormat, plain_format

__all__ = ["XlsSheet", "read_xls_sheet", "xls_active_sheet"]

_NUMBER = 2  # xlrd.XL_CELL_NUMBER


@dataclass(frozen=True)
class XlsSheet:
    """Hidden rows and number formats of one sheet of an .xls, in the shape of
    sheetxml.SheetXml (what workbook.py reads beside calamine's values)."""

    hidden: frozenset[int]  # 1-based numbers of the rows hidden in the sheet
    cells: dict[int, dict[int, NumberFormat]]  # row number -> {0-based column: format}
    filtered: bool = False  # BIFF's AutoFilter is not read: hidden rows are "hidden", not "filtered"

    def formats(self) -> Iterator[tuple[int, dict[int, NumberFormat]]]:
        """(row number, {0-based column: format}) for each row, in order, that
        has a number cell with a plain number format (sheetxml.plain_format)."""
        yield from sorted(self.cells.items())

    def long_numbers(self) -> dict[tuple[int, int], str]:
        """Nothing: BIFF stores a number as a double, whose exact digits are the file's."""
        return {}


def read_xls_sheet(path: str, sheet: str) -> XlsSheet | None:
    """Hidden rows (ROW records) and plain number formats (XF -> FORMAT) of
    ``sheet`` in the .xls at ``path``; None for a file xlrd cannot read (not
    BIFF8, encrypted, damaged): its values then read as calamine gives them."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(OLE_MAGIC)) != OLE_MAGIC:
                return None
        import xlrd

        book = xlrd.open_workbook(path, formatting_info=True, on_demand=True)
    except Exception:  # see the docstring: calamine's reading stands
        return None
    try:
        found = book.sheet_by_name(sheet)
        hidden = frozenset(r + 1 for r, info in found.rowinfo_map.items() if info.hidden)
        return XlsSheet(hidden, _number_formats(book, found))
    except Exception:  # as above
        return None
    finally:
        book.release_resources()


def _number_formats(book: Any, sheet: Any) -> dict[int, dict[int, NumberFormat]]:
    by_xf: dict[int, NumberFormat | None] = {}
    cells: dict[int, dict[int, NumberFormat]] = {}
    for r in range(sheet.nrows):
        for c in range(sheet.row_len(r)):
            if sheet.cell_type(r, c) != _NUMBER:
                continue
            xf = sheet.cell_xf_index(r, c)
            if xf not in by_xf:
                key = book.xf_list[xf].format_key
                code = book.format_map[key].format_str if key in book.format_map else ""
                by_xf[xf] = plain_format(code) if code else None
            fmt = by_xf[xf]
            if fmt is not None:
                cells.setdefault(r + 1, {})[c] = fmt
    return cells


def xls_active_sheet(path: str) -> tuple[str | None, str]:
    """The sheet an .xls opens on (its WINDOW2 record marks the tab selected),
    and where the file says so; (None, "") for any other file or none recorded."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(OLE_MAGIC)) != OLE_MAGIC:
                return None, ""
        import xlrd

        book = xlrd.open_workbook(path, on_demand=True)
    except Exception:  # unreadable by xlrd (encrypted, damaged): calamine's errors apply
        return None, ""
    try:
        selected = []
        for index in range(book.nsheets):
            sheet = book.sheet_by_index(index)
            if sheet.sheet_selected:
                selected.append(sheet.name)
        return (selected[0], "its selected tab") if len(selected) == 1 else (None, "")
    except Exception:  # as above
        return None, ""
    finally:
        book.release_resources()
