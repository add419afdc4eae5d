"""Regenerate the binary spreadsheet fixtures of tests/test_reading.py.

    /work/venv/bin/python tests/data/reading/make_fixtures.py

Writes contacts.xlsx (openpyxl), contacts.xls (xlwt) and contacts.ods (odfpy; its
settings.xml names the active tab, "Contacts", as LibreOffice's would).
These writers are needed only here: the fixtures are committed, so the tests
run without them.

Each workbook has two sheets:

* "Contacts": the table of contacts.json (header on row 1), every cell written
  as text except "TRUE"/"FALSE", which are real booleans, plus two typed
  columns: "Due" (real dates; row 2 is 2026-03-31) and "Amount" (real numbers;
  row 2 is 42).
* "Layout": what real exports do to row numbers and types. Rows 1-2 blank,
  header on row 3, a blank row 5, an extra cell beyond the header on row 6:

      row 3: Email   | Name | When                | At       | Amount
      row 4: a@x.org | A    | 2026-01-02 03:04:05 | 13:45:00 | 3.14
      row 5: (blank)
      row 6: b@x.org | B    | 2026-01-02 (date)   |          | 1234567890123 | surplus
      row 7: c@x.org | C    | 2026-12-31 00:00:00 | 00:00:30 | -0.5
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

DUE = [dt.date(2026, 3, 31), dt.date(2026, 4, 1), dt.date(2027, 1, 15), None, dt.date(2026, 12, 31)]
AMOUNT: list[float | int] = [42, 3.14, 0, -7, 1234567]

LAYOUT: list[list[Any]] = [
    [],
    [],
    ["Email", "Name", "When", "At", "Amount"],
    ["a@x.org", "A", dt.datetime(2026, 1, 2, 3, 4, 5), dt.time(13, 45), 3.14],
    [],
    ["b@x.org", "B", dt.date(2026, 1, 2), None, 1234567890123, "surplus"],
    ["c@x.org", "C", dt.datetime(2026, 12, 31), dt.time(0, 0, 30), -0.5],
]


def contacts_sheet() -> list[list[Any]]:
    table = json.loads((HERE / "contacts.json").read_text(encoding="utf-8"))
    rows: list[list[Any]] = [[*table["header"], "Due", "Amount"]]
    for cells, due, amount in zip(table["rows"], DUE, AMOUNT, strict=True):
        typed: list[Any] = [{"TRUE": True, "FALSE": False}.get(c, c) for c in cells]
        rows.append([*typed, due, amount])
    return rows


def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for r, cells in enumerate(rows, start=1):
            for c, value in enumerate(cells, start=1):
                if value is None or value == "":
                    continue
                cell = sheet.cell(row=r, column=c, value=value)
                if isinstance(value, str):
                    cell.data_type = "s"  # never let openpyxl guess a number
                elif isinstance(value, dt.datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                elif isinstance(value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                elif isinstance(value, dt.time):
                    cell.number_format = "hh:mm:ss"
    book.save(path)


def write_xls(path: Path, sheets: dict[str, list[list[Any]]]) -> None:
    import xlwt

    formats = {
        dt.datetime: xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm:ss"),
        dt.date: xlwt.easyxf(num_format_str="yyyy-mm-dd"),
        dt.time: xlwt.easyxf(num_format_str="hh:mm:ss"),
    }
    book = xlwt.Workbook(encoding="utf-8")
    for name, rows in sheets.items():
        sheet = book.add_sheet(name)
        for r, cells in enumerate(rows):
            for c, value in enumerate(cells):
                if value is None or value == "":
                    continue
                style = formats.get(type(value))
                if style is None:
                    sheet.write(r, c, value)
                else:
                    sheet.write(r, c, value, style)
    book.save(str(path))


def write_ods(path: Path, sheets: dict[str, list[list[Any]]]) -> None:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    active_table(doc, next(iter(sheets)))
    for name, rows in sheets.items():
        table = Table(name=name)
        for cells in rows:
            row = TableRow()
            for value in cells:
                row.addElement(ods_cell(value, TableCell, P))
            table.addElement(row)
        doc.spreadsheet.addElement(table)
    doc.save(str(path))


def active_table(doc: Any, name: str) -> None:
    """settings.xml's view settings naming the tab that opens, as LibreOffice
    writes them (odfpy writes none): bulksend reads the active tab (issue 24)."""
    from odf.config import ConfigItem, ConfigItemMapEntry, ConfigItemMapIndexed, ConfigItemSet

    views = ConfigItemSet(name="ooo:view-settings")
    indexed = ConfigItemMapIndexed(name="Views")
    entry = ConfigItemMapEntry()
    for key, value in (("ViewId", "view1"), ("ActiveTable", name)):
        item = ConfigItem(name=key, type="string")
        item.addText(value)
        entry.addElement(item)
    indexed.addElement(entry)
    views.addElement(indexed)
    doc.settings.addElement(views)


def ods_cell(value: Any, TableCell: Any, P: Any) -> Any:
    if value is None or value == "":
        return TableCell()
    if isinstance(value, bool):
        cell = TableCell(valuetype="boolean", booleanvalue=str(value).lower())
        text = "TRUE" if value else "FALSE"
    elif isinstance(value, int | float):
        cell = TableCell(valuetype="float", value=repr(value))
        text = repr(value)
    elif isinstance(value, dt.datetime):
        cell = TableCell(valuetype="date", datevalue=value.isoformat())
        text = value.isoformat(sep=" ")
    elif isinstance(value, dt.date):
        cell = TableCell(valuetype="date", datevalue=value.isoformat())
        text = value.isoformat()
    elif isinstance(value, dt.time):
        duration = f"PT{value.hour:02d}H{value.minute:02d}M{value.second:02d}S"
        cell = TableCell(valuetype="time", timevalue=duration)
        text = value.isoformat()
    else:
        cell = TableCell(valuetype="string")
        # A text cell's lines are separate paragraphs in ODF.
        for line in str(value).split("\n"):
            cell.addElement(P(text=line))
        return cell
    cell.addElement(P(text=text))
    return cell


def main() -> None:
    sheets = {"Contacts": contacts_sheet(), "Layout": LAYOUT}
    write_xlsx(HERE / "contacts.xlsx", sheets)
    write_xls(HERE / "contacts.xls", sheets)
    write_ods(HERE / "contacts.ods", sheets)
    print("wrote contacts.xlsx, contacts.xls, contacts.ods in", HERE)


if __name__ == "__main__":
    main()
