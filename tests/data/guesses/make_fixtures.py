"""Regenerate the .xls and .ods fixtures of tests/test_guesses.py (issue 24).

    python tests/data/guesses/make_fixtures.py     # needs xlwt and odfpy

The .xlsx and .ods files those tests need are written part by part by
tests/workbooks.py; an .xls (BIFF8) is a binary format, so it is written here
once, with xlwt, and committed.

customers.xls: two sheets. "Archive" (first, with last month's contacts) and
"Customers", the tab selected when the file was saved (its WINDOW2 record):

    row 1: Email            | Zip   | Account          | Ref       | Amount | Company
    row 2: ann@example.com  | 2494  | 1234567890123456 | 12345     | 2.5    | ACME
    row 3: bob@example.com  | 501   | 9007199254740991 | 7         | 3      |
    row 4: cid@example.com  | 90210 | 4000000000000002 | 123456789 | 0.125  |

Zip is formatted 00000, Account 0 (16 digits: more than Excel shows), Ref
000000000 and Amount 0.00; Company "ACME" is merged over F2:F4.

customers.ods: the same three rows (no Company) in one sheet "Customers", its
number styles the same (number:min-integer-digits, number:decimal-places),
and row 3 (bob) hidden (table:visibility="collapse").
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

ROWS = [
    ("ann@example.com", 2494, 1234567890123456, 12345, 2.5),
    ("bob@example.com", 501, 9007199254740991, 7, 3),
    ("cid@example.com", 90210, 4000000000000002, 123456789, 0.125),
]


def write_customers(path: Path) -> None:
    import xlwt

    book = xlwt.Workbook()
    archive = book.add_sheet("Archive")
    archive.write(0, 0, "Email")
    archive.write(1, 0, "old@example.com")
    sheet = book.add_sheet("Customers")
    for column, name in enumerate(["Email", "Zip", "Account", "Ref", "Amount", "Company"]):
        sheet.write(0, column, name)
    styles = [None, xlwt.easyxf(num_format_str="00000"), xlwt.easyxf(num_format_str="0"),
              xlwt.easyxf(num_format_str="000000000"), xlwt.easyxf(num_format_str="0.00")]
    for r, values in enumerate(ROWS, start=1):
        for c, value in enumerate(values):
            style = styles[c]
            if style is None:
                sheet.write(r, c, value)
            else:
                sheet.write(r, c, float(value), style)
    sheet.write_merge(1, 3, 5, 5, "ACME")
    archive.set_selected(False)
    sheet.set_selected(True)
    book.active_sheet = 1
    book.save(str(path))


def write_customers_ods(path: Path) -> None:
    from odf.number import Number, NumberStyle
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.style import Style
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    for name, digits, places in (("N5", "5", "0"), ("N1", "1", "0"), ("N9", "9", "0"), ("N2", "1", "2")):
        style = NumberStyle(name=name)
        style.addElement(Number(decimalplaces=places, minintegerdigits=digits))
        doc.automaticstyles.addElement(style)
        doc.automaticstyles.addElement(Style(name=f"ce{name}", family="table-cell", datastylename=name))
    table = Table(name="Customers")
    header = TableRow()
    for title in ("Email", "Zip", "Account", "Ref", "Amount"):
        cell = TableCell(valuetype="string")
        cell.addElement(P(text=title))
        header.addElement(cell)
    table.addElement(header)
    for email, *numbers in ROWS:
        row = TableRow(visibility="collapse") if email.startswith("bob") else TableRow()
        cell = TableCell(valuetype="string")
        cell.addElement(P(text=email))
        row.addElement(cell)
        for value, style in zip(numbers, ("ceN5", "ceN1", "ceN9", "ceN2"), strict=True):
            cell = TableCell(valuetype="float", value=repr(value), stylename=style)
            cell.addElement(P(text=repr(value)))
            row.addElement(cell)
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    doc.save(str(path))


if __name__ == "__main__":
    write_customers(HERE / "customers.xls")
    write_customers_ods(HERE / "customers.ods")
    print("wrote customers.xls, customers.ods in", HERE)
