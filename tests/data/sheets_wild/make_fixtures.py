"""Regenerate the fixtures of tests/test_sheets_wild.py (issue 13: exports from the wild).

    python tests/data/sheets_wild/make_fixtures.py     # needs openpyxl for the .xlsx

The files are committed, so the tests run without openpyxl; it is needed only
here, to write what Excel writes: hidden rows under an AutoFilter
(``<row hidden="1">``) and number formats in styles.xml.

Text files (each rebuilt from a public bug report's kind of export):

* helene-cp1252.csv, helene-latin1.csv: one row, "é" = 0xE9 (Excel on Windows);
  helene-macroman.csv: the same from Excel for Mac ("CSV (Macintosh)": Mac Roman, CR);
* mixed-encodings.csv: UTF-8 rows and a Windows-1252 row in one file (no reading is clean);
* zero-width.csv: an email followed by U+200B, then the same email plainly;
* nfd-header.csv: header "Prénom" written decomposed, as macOS does (e + U+0301);
* lookalike-header.csv: header "Prenom" whose "e" is Cyrillic (U+0435);
* forced-text.csv: Excel's ="00123" idiom that keeps leading zeros;
* title-lines.csv: a CRM report: 3 title lines, the header on row 4;
* google-forms.csv: two identical unused question titles and a blank header cell;
* grace.csv: Grace.Hopper@Example.com, then grace.hopper@example.com (issue 10, case 4);
* iso-fraction.csv: a .NET round-trip date, 2026-12-31T10:00:00.0000000Z.

Spreadsheets:

* filtered.xlsx: an AutoFilter on Status = Active; rows 3 and 5 (Unsubscribed) hidden;
* number-formats.xlsx: ZIP 2494 as 00000, client 7 as 0000000, 2.5 as 0.00,
  0.1+0.2 as 0.00, 1234.5 as #,##0, 3 in General, a date as yyyy-mm-dd.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELENE = "Email,First Name,Last Name\nhelene.dubois@example.com,Hélène,Dubois\n"


def write_text() -> None:
    (HERE / "helene-cp1252.csv").write_bytes(HELENE.replace("\n", "\r\n").encode("cp1252"))
    (HERE / "helene-latin1.csv").write_bytes(HELENE.encode("latin-1"))
    (HERE / "helene-macroman.csv").write_bytes(HELENE.replace("\n", "\r").encode("mac_roman"))
    (HERE / "mixed-encodings.csv").write_bytes(
        "Email,First Name\r\na@example.com,Hélène\r\n".encode() + "b@example.com,René\r\n".encode("cp1252")
    )
    files = {
        "zero-width.csv": "Email,First Name\ncy.ng@example.com\u200b,Cy\ncy.ng@example.com,Cy again\n",
        "nfd-header.csv": "Email,Pre\u0301nom\nzoe@example.com,Zoé\n",
        "lookalike-header.csv": "Email,Pr\u0435nom\nzoe@example.com,Zoé\n",
        "forced-text.csv": (
            'Email,First Name,Client\nann@example.com,Ann,="00123"\nbob@example.com,Bob,"=""007"""\n'
        ),
        "title-lines.csv": (
            "Contacts report\nExported 2026-01-31 by CRM\n\n"
            "Email;First Name;Last Name\nann@example.com;Ann;Archer\nbob@example.com;Bob;Baker\n"
        ),
        "google-forms.csv": (
            "Timestamp,,Email,First Name,Any comments?,Any comments?\n"
            "2026/01/31 10:00:00,,ann@example.com,Ann,no,yes\n"
            "2026/01/31 10:05:00,7,bob@example.com,Bob,,\n"
        ),
        "grace.csv": (
            "Email,First Name\nGrace.Hopper@Example.com,Grace\nalan@example.com,Alan\n"
            "grace.hopper@example.com,Grace again\n"
        ),
        "iso-fraction.csv": "Email,First Name,Due\nann@example.com,Ann,2026-12-31T10:00:00.0000000Z\n",
    }
    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8", newline="")


def write_filtered(path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Contacts"
    rows = [
        ["Email", "First Name", "Status"],
        ["ann@example.com", "Ann", "Active"],
        ["bob@example.com", "Bob", "Unsubscribed"],  # row 3: hidden by the filter
        ["cid@example.com", "Cid", "Active"],
        ["dan@example.com", "Dan", "Unsubscribed"],  # row 5: hidden by the filter
    ]
    for row in rows:
        sheet.append(row)
    sheet.auto_filter.ref = "A1:C5"
    sheet.auto_filter.add_filter_column(2, ["Active"])
    for number in (3, 5):
        sheet.row_dimensions[number].hidden = True
    book.save(path)


def write_number_formats(path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Contacts"
    sheet.append(["Email", "First Name", "Zip", "Client", "Amount", "Sum", "Total", "Plain", "Since"])
    sheet.append(["ann@example.com", "Ann", 2494, 7, 2.5, 0.1 + 0.2, 1234.5, 3, dt.date(2026, 3, 31)])
    formats = ["@", "@", "00000", "0000000", "0.00", "0.00", "#,##0", "General", "yyyy-mm-dd"]
    for cell, fmt in zip(sheet[2], formats, strict=True):
        cell.number_format = fmt
    book.save(path)


if __name__ == "__main__":
    write_text()
    write_filtered(HERE / "filtered.xlsx")
    write_number_formats(HERE / "number-formats.xlsx")
