"""Issue 24, round two: the failures a fresh tester found in some sixty exports of
their own after the first round (never guess silently). Each kind is fixed as a
kind, and each instance is a test here, through the real CLI against the
sandbox where sending matters:

* F1: a column named for the due date whose cells do not all fit one format
  (rows that disagree, full-width digits, an ISO date among dd/mm ones, dotted
  month-first dates, cells that are no date, an xlsx of date cells and text)
  stays the dueDate: a question or invalid rows, never a quiet move to
  contact.data;
* F2: the mapping's order of day and month against a file whose rows read only
  the other way: refused (exit 2) naming the row and column; init never says
  "every date reads both ways" when one row, however far down, decides;
* F3, F7: which column holds the addresses;
* F4, F5: merged ranges across columns (.xlsx) and in .ods;
* F6: numbers as the digits the file holds;
* M1, M2, M4, M6: the sheet named, a merged title, --sheet's help, validate on
  an empty export.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from test_guesses import (
    answer,
    guessed,
    init,
    nothing_reached,
    received,
    refused,
    send,
    spec,
    validate,
    write_csv,
)
from workbooks import OdsCell

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox

YEAR = date.today().year + 1  # due dates in the coming year: never past
Y2 = YEAR % 100


def dues(sandbox: Sandbox) -> dict[str, str]:
    """Each contact's due day as the server received it."""
    return {body["contact"]["email"]: body["dueDate"][:10] for body in received(sandbox)}


PEOPLE = ("ann", "bob", "cid", "dan", "eve")


def dated(path: Path, column: str, cells: list[str], *, delimiter: str = ",") -> Path:
    """A CSV of Email and ``column``: ann@example.com has the first of ``cells``, bob the second..."""
    rows = [["Email", column]]
    rows += [[f"{who}@example.com", cell] for who, cell in zip(PEOPLE, cells, strict=False)]
    return write_csv(path, rows, delimiter=delimiter)


def serial(day: date) -> int:
    """A day as a spreadsheet's date cell holds it (days since 1899-12-30)."""
    return (day - date(1899, 12, 30)).days


def mapping_text(tmp_path: Path, mapping: str = "mapping.yaml") -> str:
    return (tmp_path / mapping).read_text(encoding="utf-8")


# --- F1: a due-date column stays the dueDate ---------------------------------------------


def test_rows_that_disagree_on_the_order_are_asked_not_moved(tmp_path: Path, sandbox: Sandbox) -> None:
    """25/03 reads only day first, 03/25 only month first: init keeps the column
    as the dueDate and asks (saying which rows disagree, not that every date
    reads both ways); answered, the row written the other way is invalid and
    says why, the others are sent as the answer reads them."""
    dated(tmp_path / "c.csv", "Due", [f"25/03/{YEAR}", f"03/25/{YEAR}", f"04/05/{YEAR}"])
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"]["format"] == "%d/%m/%Y or %m/%d/%Y"
    assert "data" not in spec(tmp_path)["contact"]
    text = mapping_text(tmp_path)
    assert (f"QUESTION: the rows disagree: row 2 (25/03/{YEAR}) reads only day first,"
            f" row 3 (03/25/{YEAR})") in text
    assert "every date here reads" not in text and "every date reads both ways" not in r.stdout
    refused(validate(tmp_path, "c.csv"), "dueDate.format", 'column "Due"', "a question to answer")
    refused(send(tmp_path, sandbox, "c.csv"), "dueDate.format")
    nothing_reached(sandbox)

    answer(tmp_path, "%d/%m/%Y or %m/%d/%Y", "%d/%m/%Y")
    r = validate(tmp_path, "c.csv")
    assert r.code == 1, r.stdout + r.stderr
    assert (f'row 3: invalid: column "Due": "03/25/{YEAR}" reads only month first (format %m/%d/%Y: day and'
            f" month swapped?) and is not a date in format %d/%m/%Y") in r.stdout
    assert guessed(r) == [f'column "Due": dates read day first (format %d/%m/%Y): row 2 ("25/03/{YEAR}")'
                          " reads no other way; 1 cell read only month first, e.g. row 3"
                          f' ("03/25/{YEAR}"): invalid']
    assert send(tmp_path, sandbox, "c.csv").code == 1
    assert dues(sandbox) == {"ann@example.com": f"{YEAR}-03-25", "cid@example.com": f"{YEAR}-05-04"}


def wide(text: str) -> str:
    """``text`` with its digits and slashes full-width, as a Japanese keyboard types them."""
    return text.translate(str.maketrans("0123456789/", "０１２３４５６７８９／"))  # noqa: RUF001


@pytest.mark.parametrize(("cells", "fmt", "sent"), [
    # the tester's: full-width digits, ASCII slashes, day first
    ([wide(f"25/06/{YEAR}").replace("／", "/"), wide(f"03/07/{YEAR}").replace("／", "/")],  # noqa: RUF001
     "%d/%m/%Y", ["06-25", "07-03"]),
    # full-width slashes too, and one ASCII cell among them
    ([wide(f"25/06/{YEAR}"), f"03/07/{YEAR}"], "%d/%m/%Y", ["06-25", "07-03"]),
    # year first, as a Japanese export writes it
    ([wide(f"{YEAR}/06/03"), wide(f"{YEAR}/07/15")], "%Y/%m/%d", ["06-03", "07-15"]),
])
def test_full_width_digits_are_digits_in_dates(cells: list[str], fmt: str, sent: list[str], tmp_path: Path,
                                               sandbox: Sandbox) -> None:
    """Full-width digits (a Japanese keyboard) read as digits (NFKC): the column
    is the dueDate and each deadline is the day written."""
    write_csv(tmp_path / "jp.csv", [["Email", "Due date"], ["ann@example.com", cells[0]],
                                    ["bob@example.com", cells[1]]])
    r = init(tmp_path, "jp.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"] == {"column": "Due date", "format": fmt, "required": True}
    r = send(tmp_path, sandbox, "jp.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert dues(sandbox) == {"ann@example.com": f"{YEAR}-{sent[0]}", "bob@example.com": f"{YEAR}-{sent[1]}"}


def test_an_iso_date_among_day_first_ones_stays_the_due_date(tmp_path: Path, sandbox: Sandbox) -> None:
    dated(tmp_path / "c.csv", "Due date", [f"25/06/{YEAR}", f"{YEAR}-07-03", f"26/06/{YEAR}"])
    assert init(tmp_path, "c.csv").code == 0
    assert spec(tmp_path)["dueDate"] == {"column": "Due date", "format": "%d/%m/%Y", "required": True}
    r = send(tmp_path, sandbox, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert dues(sandbox) == {"ann@example.com": f"{YEAR}-06-25", "bob@example.com": f"{YEAR}-07-03",
                             "cid@example.com": f"{YEAR}-06-26"}


def test_dotted_dates_a_row_reads_only_month_first(tmp_path: Path, sandbox: Sandbox) -> None:
    """6.20.27 can only be month first: the dots' day-first convention yields
    to the row, which init names; 6.3.27 is then June 3."""
    write_csv(tmp_path / "c.csv", [["Email", "Frist"], ["ann@example.com", f"6.3.{Y2}"],
                                   ["bob@example.com", f"6.20.{Y2}"], ["cid@example.com", f"7.4.{Y2}"]],
              delimiter=";")
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"]["format"] == "%m.%d.%y"
    assert f"month first, as row 3 6.20.{Y2} shows" in r.stdout
    assert send(tmp_path, sandbox, "c.csv").code == 0
    assert dues(sandbox) == {"ann@example.com": f"{YEAR}-06-03", "bob@example.com": f"{YEAR}-06-20",
                             "cid@example.com": f"{YEAR}-07-04"}


def test_dotted_dates_that_read_both_ways_say_day_first_in_init(tmp_path: Path) -> None:
    """M7: the day-first convention of dotted dates is said where init applies it."""
    write_csv(tmp_path / "de.csv", [["E-Mail", "Frist"], ["ann@example.com", f"3.6.{Y2}"],
                                    ["bob@example.com", f"4.7.{Y2}"]], delimiter=";")
    r = init(tmp_path, "de.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"]["format"] == "%d.%m.%y"
    assert "day first, as dates written with dots are; no row reads otherwise" in r.stdout
    assert f"# Day first: dates written with dots are (3.6.{Y2} is 3 June)" in mapping_text(tmp_path)


def test_cells_that_are_no_date_are_invalid_rows_not_a_move(tmp_path: Path, sandbox: Sandbox) -> None:
    """Two of three cells are no date ("soon", "later"): the column stays the
    dueDate, init counts them, validate names those rows invalid."""
    write_csv(tmp_path / "c.csv", [["Email", "Due date"], ["ann@example.com", f"25/06/{YEAR}"],
                                   ["bob@example.com", "soon"], ["cid@example.com", "later"]])
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"]["column"] == "Due date"
    assert "2 cell(s) fit no date format (row 3: 'soon'): invalid rows" in r.stdout
    r = validate(tmp_path, "c.csv")
    assert r.code == 1, r.stdout + r.stderr
    assert 'row 3: invalid: column "Due date": "soon" is not a date in format %d/%m/%Y' in r.stdout
    assert send(tmp_path, sandbox, "c.csv").code == 1
    assert dues(sandbox) == {"ann@example.com": f"{YEAR}-06-25"}


def test_a_due_column_of_no_dates_is_data_and_said(tmp_path: Path) -> None:
    write_csv(tmp_path / "c.csv", [["Email", "Deadline"], ["ann@example.com", "ASAP"],
                                   ["bob@example.com", "next week"]])
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert "dueDate" not in spec(tmp_path)
    assert """(none): "Deadline" is named like a due date but holds no date (e.g. 'ASAP')""" in r.stdout
    assert "# No due date: column \"Deadline\" is named like one" in mapping_text(tmp_path)


def test_xlsx_date_cells_beside_text_dates_stay_the_due_date(tmp_path: Path, sandbox: Sandbox) -> None:
    """A US export through a day-first Excel: days up to 12 became date cells,
    the others stayed text (05/20). The column is the dueDate, month first by
    the text's rows, and the date cells are shown as such, to be checked."""
    from workbooks import Sheet, write_xlsx

    write_xlsx(tmp_path / "c.xlsx", {"Sheet1": Sheet([
        ["Email", "Due Date"], ["ann@example.com", serial(date(YEAR, 3, 6))],
        ["bob@example.com", f"05/20/{YEAR}"], ["cid@example.com", serial(date(YEAR, 4, 7))],
        ["dan@example.com", f"08/25/{YEAR}"]],
        formats={"B2": "dd/mm/yyyy", "B4": "dd/mm/yyyy"})})
    r = init(tmp_path, "c.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"] == {"column": "Due Date", "format": "%m/%d/%Y", "required": True}
    assert "the sheet's own dates beside text dates" in mapping_text(tmp_path)
    r = validate(tmp_path, "c.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == [f'column "Due Date": dates read month first (format %m/%d/%Y): row 3'
                          f' ("05/20/{YEAR}") reads no other way; 2 cells written YYYY-MM-DD (the'
                          f' sheet\'s own dates, e.g. row 2 "{YEAR}-03-06") read as such: check them if the'
                          " file passed through a program set to the other order"]


# --- F2: the mapping's order against the file's rows ------------------------------------------

F2_MAPPING = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact:\n  email: Email\n"
              'dueDate: {column: Due, format: "%d/%m/%Y", required: true}\n')


def test_a_row_that_reads_only_the_other_way_stops_the_run(tmp_path: Path, sandbox: Sandbox) -> None:
    """Week 2 comes from a US colleague: one row (05/20) reads only month first
    and none only day first. Sending the others day first would swap them:
    validate, send and a dry run stop (exit 2) naming the row and the column."""
    (tmp_path / "mapping.yaml").write_text(F2_MAPPING, encoding="utf-8")
    dated(tmp_path / "week2.csv", "Due", [f"06/03/{YEAR}", f"05/20/{YEAR}", f"07/08/{YEAR}"])
    words = ('week2.csv: column "Due": row 3', f'"05/20/{YEAR}") reads only month first (format %m/%d/%Y)',
             "no row reads only day first", "nothing was sent")
    refused(validate(tmp_path, "week2.csv"), *words)
    refused(send(tmp_path, sandbox, "week2.csv"), *words)
    refused(send(tmp_path, sandbox, "week2.csv", "mapping.yaml", "--dry-run", "--results", "dry.csv"), *words)
    nothing_reached(sandbox)
    assert not (tmp_path / "results.csv").exists()
    answer(tmp_path, '"%d/%m/%Y"', '"%m/%d/%Y"')
    assert send(tmp_path, sandbox, "week2.csv").code == 0
    assert dues(sandbox)["ann@example.com"] == f"{YEAR}-06-03"


def test_the_deciding_row_far_down_is_seen_by_send_and_init(tmp_path: Path, sandbox: Sandbox) -> None:
    """Case 4: 2,100 dates that read both ways, the last alone month first.
    init decides month first by that row (no "every date reads both ways");
    a mapping saying day first is refused by send, whose check pass maps only
    the first rows: the order is watched over every row."""
    rows = [["Email", "Due"]] + [[f"p{i}@example.com", f"{i % 12 + 1:02d}/{(i * 5) % 12 + 1:02d}/{YEAR}"]
                                 for i in range(2100)]
    rows.append(["last@example.com", f"05/20/{YEAR}"])
    write_csv(tmp_path / "big.csv", rows)
    r = init(tmp_path, "big.csv", "-o", "init.yaml")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path, "init.yaml")["dueDate"]["format"] == "%m/%d/%Y"
    assert f"month first, as row 2102 05/20/{YEAR} shows" in r.stdout
    assert "both ways" not in r.stdout + mapping_text(tmp_path, "init.yaml")
    (tmp_path / "mapping.yaml").write_text(F2_MAPPING, encoding="utf-8")
    refused(send(tmp_path, sandbox, "big.csv"), 'column "Due": row 2102', "reads only month first")
    nothing_reached(sandbox)


def test_a_dotted_format_is_refused_by_a_month_first_row(tmp_path: Path, sandbox: Sandbox) -> None:
    mapping = F2_MAPPING.replace("%d/%m/%Y", "%d.%m.%Y")
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    write_csv(tmp_path / "c.csv", [["Email", "Due"], ["ann@example.com", f"06.03.{YEAR}"],
                                   ["bob@example.com", f"06.20.{YEAR}"]])
    refused(send(tmp_path, sandbox, "c.csv"), 'column "Due": row 3',
            "reads only month first (format %m.%d.%Y)")
    nothing_reached(sandbox)


def test_a_row_that_decides_the_mappings_order_makes_a_contrary_row_invalid(tmp_path: Path,
                                                                            sandbox: Sandbox) -> None:
    """Rows on both sides: the mapping's order stands (row 2 proves it), the
    contrary row is invalid and says why; nothing is sent swapped."""
    (tmp_path / "mapping.yaml").write_text(F2_MAPPING, encoding="utf-8")
    dated(tmp_path / "c.csv", "Due", [f"20/05/{YEAR}", f"05/20/{YEAR}", f"06/03/{YEAR}"])
    r = send(tmp_path, sandbox, "c.csv")
    assert r.code == 1, r.stdout + r.stderr
    assert dues(sandbox) == {"ann@example.com": f"{YEAR}-05-20", "cid@example.com": f"{YEAR}-03-06"}


# --- F3, F7: which column holds the addresses ---------------------------------------------


def test_a_mostly_empty_email_column_beside_a_full_one_is_asked(tmp_path: Path, sandbox: Sandbox) -> None:
    """ "E-mail" is named for it but only one row of eight fills it; "Mail pro"
    holds an address on every row: which one is a question, never the empty one."""
    rows = [["Nom", "E-mail", "Mail pro"]]
    rows += [[f"P{i}", "alt3@perso.example" if i == 3 else "", f"p{i}@work.example"] for i in range(8)]
    write_csv(tmp_path / "c.csv", rows)
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["email"] == "E-mail or Mail pro"
    text = mapping_text(tmp_path)
    assert """#   "E-mail": 1 of 8 rows fill it, e.g. 'alt3@perso.example'""" in text
    assert """#   "Mail pro": 8 of 8 rows fill it""" in text
    refused(validate(tmp_path, "c.csv"), "contact.email", '"E-mail" or "Mail pro"')
    refused(send(tmp_path, sandbox, "c.csv"), "contact.email")
    nothing_reached(sandbox)
    answer(tmp_path, "email: E-mail or Mail pro", "email: Mail pro")
    assert send(tmp_path, sandbox, "c.csv").code == 0
    sent = sorted(b["contact"]["email"] for b in received(sandbox))
    assert sent == [f"p{i}@work.example" for i in range(8)]


def test_a_mostly_empty_email_column_beside_an_unnamed_full_one_is_asked(tmp_path: Path) -> None:
    rows = [["Email", "Kontakt", "Firma"]]
    rows += [[f"e{i}@example.com" if i < 2 else "", f"k{i}@example.com", "ACME"] for i in range(10)]
    write_csv(tmp_path / "c.csv", rows, delimiter=";")
    assert init(tmp_path, "c.csv").code == 0
    assert spec(tmp_path)["contact"]["email"] == "Email or Kontakt"


def test_a_work_email_picked_by_its_header_is_shown_by_validate(tmp_path: Path, sandbox: Sandbox) -> None:
    """Two full address columns, one named Work email: init may pick it by its
    header; validate and the top of send show that choice and the other column."""
    write_csv(tmp_path / "c.csv", [["Name", "Personal email", "Work email"],
                                   ["A", "a@home.example", "a@work.example"],
                                   ["B", "b@home.example", "b@work.example"]])
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["email"] == "Work email"
    line = ('email from "Work email", the column the mapping names; "Personal email" also holds addresses'
            " (2 of 2 rows)")
    r = validate(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == [line]
    r = send(tmp_path, sandbox, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert f"guess {line}" in r.stderr
    assert sorted(b["contact"]["email"] for b in received(sandbox)) == ["a@work.example", "b@work.example"]


def test_a_hand_written_mapping_beside_another_address_column_is_shown(tmp_path: Path) -> None:
    rows = [["Courriel", "Courriel perso", "Nom"]] + [[f"c{i}@example.com", f"p{i}@example.org", "N"]
                                                      for i in range(250)]
    write_csv(tmp_path / "c.csv", rows)
    mapping = f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: {{column: Courriel}}}}\n"
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    r = validate(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == ['email from "Courriel", the column the mapping names; "Courriel perso" also holds'
                          " addresses (200 of the first 200 rows)"]


# --- F4, F5: merged ranges -------------------------------------------------------------------

MERGE_MAPPING = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact:\n  email: Email\n"
                 "  firstName: {column: First name, required: false}\n"
                 "  lastName: {column: Last name, required: false}\n"
                 "  company: {column: Company, required: false}\n"
                 "  data: {branch: {column: Branch, required: false}}\n")
MERGE_HEADER: list[OdsCell] = ["Email", "First name", "Last name", "Company", "Branch"]


def contacts(sandbox: Sandbox) -> dict[str, dict[str, object]]:
    return {body["contact"]["email"]: body["contact"] for body in received(sandbox)}


def test_an_xlsx_merge_across_columns_fills_its_first_column_only(tmp_path: Path, sandbox: Sandbox) -> None:
    """ "Eve Marie Smith" typed over First and Last name, "Gamma Holdings" over
    Company and Branch: one value over several fields, not the same in each."""
    from workbooks import Cell, Sheet, write_xlsx

    rows: list[list[Cell]] = [["Email", "First name", "Last name", "Company", "Branch"],
                              ["ann@example.com", "Ann", "Lee", "Acme", "Paris"],
                              ["eve@example.com", "Eve Marie Smith", None, "Gamma Holdings"]]
    write_xlsx(tmp_path / "c.xlsx", {"Clients": Sheet(rows, merges=["B3:C3", "D3:E3"])})
    (tmp_path / "mapping.yaml").write_text(MERGE_MAPPING, encoding="utf-8")
    r = validate(tmp_path, "c.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == ["merged cells B3:C3, D3:E3 across columns: the value is read into the first column"
                          " only (B3:C3 into B3; D3:E3 into D3), the other columns are empty"]
    assert send(tmp_path, sandbox, "c.xlsx").code == 0
    eve = contacts(sandbox)["eve@example.com"]
    assert (eve["firstName"], eve.get("lastName"), eve["company"], eve.get("data")) == (
        "Eve Marie Smith", None, "Gamma Holdings", None)


def test_an_xlsx_block_merge_fills_down_its_first_column(tmp_path: Path) -> None:
    """B2:C4 (three rows, two columns): every row it spans has the value in B, none in C."""
    from workbooks import Cell, Sheet, write_xlsx

    rows: list[list[Cell]] = [["Email", "Company", "Branch", "Due"], ["a@example.com", "ACME"],
                              ["b@example.com"], ["c@example.com"], ["d@example.com", "Solo", "Nice"]]
    write_xlsx(tmp_path / "c.xlsx", {"Clients": Sheet(rows, merges=["B2:C4"])})
    from bulksend.reading.sources import open_table

    with open_table(str(tmp_path / "c.xlsx")) as table:
        read = [(row.values["Company"], row.values["Branch"]) for row in table.rows()]
        assert table.guesses() == ["merged cell B2:C4 across columns: the value is read into the first column"
                                   " only (B2:C4 into B2:B4), the other columns are empty"]
    assert read == [("ACME", ""), ("ACME", ""), ("ACME", ""), ("Solo", "Nice")]


def test_ods_merged_rows_fill_down_as_xlsx_ones(tmp_path: Path, sandbox: Sandbox) -> None:
    """F5: Acme merged over rows 2 and 3 (number-rows-spanned, a covered cell below)."""
    from workbooks import write_ods

    rows: list[list[OdsCell]] = [MERGE_HEADER[:4], ["ann@example.com", "Ann", "Lee", "Acme"],
                                    ["bob@example.com", "Bob", "Ray", None]]
    write_ods(tmp_path / "c.ods", {"Sheet1": rows}, spans={"D2": (2, 1)})
    (tmp_path / "mapping.yaml").write_text(MERGE_MAPPING.replace("  data: {branch: {column: Branch, required:"
                                                                 " false}}\n", ""), encoding="utf-8")
    r = validate(tmp_path, "c.ods")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == ["merged cell D2:D3: the value is read into every cell the range covers"]
    assert send(tmp_path, sandbox, "c.ods").code == 0
    assert contacts(sandbox)["bob@example.com"]["company"] == "Acme"


def test_ods_merges_across_columns_fill_the_first_column_only(tmp_path: Path, sandbox: Sandbox) -> None:
    from workbooks import write_ods

    rows: list[list[OdsCell]] = [MERGE_HEADER, ["ann@example.com", "Ann", "Lee", "Acme", "Paris"],
                                    ["eve@example.com", "Eve Marie Smith", None, "Gamma", None],
                                    ["bob@example.com", "Bob", "Ray", None, None]]
    write_ods(tmp_path / "c.ods", {"Sheet1": rows}, spans={"B3": (1, 2), "D3": (2, 2)})
    (tmp_path / "mapping.yaml").write_text(MERGE_MAPPING, encoding="utf-8")
    r = validate(tmp_path, "c.ods")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == ["merged cells B3:C3, D3:E4 across columns: the value is read into the first column"
                          " only (B3:C3 into B3; D3:E4 into D3:D4), the other columns are empty"]
    assert send(tmp_path, sandbox, "c.ods").code == 0
    sent = contacts(sandbox)
    assert (sent["eve@example.com"]["firstName"], sent["eve@example.com"].get("lastName")) == (
        "Eve Marie Smith", None)
    below = [(sent[who]["company"], sent[who].get("data")) for who in ("eve@example.com", "bob@example.com")]
    assert below == [("Gamma", None), ("Gamma", None)]


# --- M1, M2, M4: the sheet read, a merged title, --sheet's help ------------------------------


@pytest.mark.parametrize("kind", ["xlsx", "ods"])
def test_a_merged_title_over_the_header_row_is_named(kind: str, tmp_path: Path) -> None:
    """M1: row 1 is a title merged across the columns; the names are on row 2."""
    from workbooks import Cell, Sheet, write_ods, write_xlsx

    title = "Export du 03/06/2027"
    if kind == "xlsx":
        rows: list[list[Cell]] = [[title], ["Email", "Nom"], ["ann@example.com", "Ann"]]
        write_xlsx(tmp_path / "c.xlsx", {"Clients": Sheet(rows, merges=["A1:B1"])})
    else:
        cells: list[list[OdsCell]] = [[title, None], ["Email", "Nom"], ["ann@example.com", "Ann"]]
        write_ods(tmp_path / "c.ods", {"Clients": cells}, spans={"A1": (1, 2)})
    r = init(tmp_path, f"c.{kind}")
    error = refused(r, f'c.{kind}, sheet "Clients": no column holds email addresses',
                    f"row 1 is a title merged over A1:B1 ('{title}'), not column names",
                    "hint: the column names are on row 2: pass --header-row 2")
    assert error
    assert init(tmp_path, f"c.{kind}", "--header-row", "2").code == 0


def test_the_sheet_read_is_named_when_no_column_fits(tmp_path: Path) -> None:
    """M2: the active tab ("Instructions") was read: init and validate say which sheet, and why."""
    from workbooks import Sheet, write_xlsx

    write_xlsx(tmp_path / "c.xlsx", {"Instructions": Sheet([["Read me first"], ["Fill in the other tab"]]),
                                     "Data": Sheet([["Courriel", "Nom"], ["ann@example.com", "Ann"]])},
               active=0)
    refused(init(tmp_path, "c.xlsx"), 'c.xlsx, sheet "Instructions" (the tab active when the file was saved',
            "(--sheet picks another tab)")
    (tmp_path / "mapping.yaml").write_text(
        f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Courriel}}\n", encoding="utf-8")
    refused(validate(tmp_path, "c.xlsx"), 'column "Courriel" is not in the file',
            'hint: the sheet read is "Instructions", the tab active when the file was saved', "--sheet")
    assert validate(tmp_path, "c.xlsx", "mapping.yaml", "--sheet", "Data").code == 0


@pytest.mark.parametrize("command", ["validate", "send", "status"])
def test_the_sheet_help_says_the_default_is_the_active_tab(command: str, tmp_path: Path) -> None:
    """M4: not "(default: the first)"."""
    from conftest import run_cli

    r = run_cli(command, "--help", cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "(default: the first)" not in text
    if "--sheet" in text:
        assert "default: the tab active when the file was saved" in text


# --- F6: numbers are the digits the file holds ---------------------------------------------

NUMBERS = ["Amount", "Rate", "Code", "Account", "Big"]
NUMBERS_MAPPING = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact:\n  email: Email\n  data:\n"
                   + "".join(f"    {c.lower()}: {c}\n" for c in NUMBERS))


def data_sent(sandbox: Sandbox) -> dict[str, object]:
    [body] = received(sandbox)
    found: dict[str, object] = body["contact"]["data"]
    return found


def test_xlsx_numbers_are_the_digits_held_and_formats_render_their_decimals(tmp_path: Path,
                                                                            sandbox: Sandbox) -> None:
    """The tester's: 2.5 as 0.00 € is 2.50 (the currency left out), 0.075 as 0.0% is
    the fraction held, 123456 as 000-000 the number, 9007199254740993 formatted 0 and
    12345678901234567890 in General every digit stored (beyond 2**53, no rounding)."""
    from workbooks import Cell, Sheet, write_xlsx

    row: list[Cell] = ["ann@example.com", 2.5, 0.075, 123456, 9007199254740993, 12345678901234567890]
    write_xlsx(tmp_path / "n.xlsx", {"Sheet1": Sheet([["Email", *NUMBERS], row],
                                                     formats={"B2": "0.00 €", "C2": "0.0%", "D2": "000-000",
                                                              "E2": "0"})})
    (tmp_path / "mapping.yaml").write_text(NUMBERS_MAPPING, encoding="utf-8")
    assert send(tmp_path, sandbox, "n.xlsx").code == 0
    assert data_sent(sandbox) == {"amount": "2.50", "rate": "0.075", "code": "123456",
                                  "account": "9007199254740993", "big": "12345678901234567890"}


@pytest.mark.parametrize(("code", "value", "shown"), [
    ('#,##0.00 "€"', 1234.5, "1234.50"), ("$#,##0.00", 1234.5, "1234.50"),
    ("[$€-407] #,##0.00", 7, "7.00"),
    ('#,##0.00 "€";[Red]-#,##0.00 "€"', -3.5, "-3.50"), ("0.00E+00", 12345, "12345"), ("0%", 0.5, "0.5"),
    ("#,##0,", 1234567, "1234567"),  # a trailing comma divides by a thousand: the number held
])
def test_formats_around_the_number_and_the_others(code: str, value: float, shown: str,
                                                   tmp_path: Path) -> None:
    from workbooks import Sheet, write_xlsx

    from bulksend.reading.sources import open_table

    write_xlsx(tmp_path / "n.xlsx", {"Sheet1": Sheet([["Email", "Amount"], ["ann@example.com", value]],
                                                     formats={"B2": code})})
    with open_table(str(tmp_path / "n.xlsx")) as table:
        assert [row.values["Amount"] for row in table.rows()] == [shown]


def test_ods_numbers_beyond_2_53_are_the_digits_stored(tmp_path: Path, sandbox: Sandbox) -> None:
    from workbooks import write_ods

    write_ods(tmp_path / "n.ods", {"Sheet1": [["Email", "Account", "Big"],
                                              ["ann@example.com", 9007199254740993, 12345678901234567890]]})
    (tmp_path / "mapping.yaml").write_text(
        f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact:\n  email: Email\n  data:\n"
        "    account: Account\n    big: Big\n", encoding="utf-8")
    assert send(tmp_path, sandbox, "n.ods").code == 0
    assert data_sent(sandbox) == {"account": "9007199254740993", "big": "12345678901234567890"}


# --- M6: validate on an export that arrives empty ---------------------------------------------


@pytest.mark.parametrize("rehearsal", [False, True])
def test_validate_on_an_empty_export_says_what_send_would_do(rehearsal: bool, tmp_path: Path,
                                                             sandbox: Sandbox) -> None:
    """The journal of send's default results file (or the rehearsal's) knows rows:
    validate says send would stop, with send's exit status; none known: exit 0."""
    from conftest import run_cli

    (tmp_path / "mapping.yaml").write_text(
        f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n", encoding="utf-8")
    write_csv(tmp_path / "nightly.csv", [["Email"], ["ann@example.com"], ["bob@example.com"]])
    (tmp_path / "nightly.csv").write_text("Email\n", encoding="utf-8")
    assert validate(tmp_path, "nightly.csv").code == 0  # a first run: nothing to contradict
    write_csv(tmp_path / "nightly.csv", [["Email"], ["ann@example.com"], ["bob@example.com"]])
    if rehearsal:
        r = run_cli("send", "nightly.csv", "-m", "mapping.yaml", "--sandbox", "--no-progress", cwd=tmp_path,
                    key=None)
        results, then = "nightly-sandbox-results.csv", "send --sandbox would stop here (exit 2)"
    else:
        r = run_cli("send", "nightly.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, "--rate", "none",
                    "--no-progress", cwd=tmp_path)
        results, then = "nightly-results.csv", "send would stop here (exit 2)"
    assert r.code == 0, r.stdout + r.stderr
    (tmp_path / "nightly.csv").write_text("Email\n", encoding="utf-8")
    before = (tmp_path / results).read_bytes()
    refused(validate(tmp_path, "nightly.csv"),
            f"nightly.csv: has no data rows (header only), but {results} records 2 rows", then)
    assert (tmp_path / results).read_bytes() == before


# --- M3, M5: how the delimiter and hidden rows are said --------------------------------------


def test_the_delimiter_below_title_lines_is_said_plainly(tmp_path: Path) -> None:
    """M3: title lines of one cell are set aside to choose the delimiter; the evidence says so in order."""
    from bulksend.reading.sources import open_table

    (tmp_path / "c.csv").write_text("Contacts report\nExported 2027-01-31\n\nEmail;Nom\nann@example.com;Ann\n"
                                    "bob@example.com;Bob\n", encoding="utf-8")
    with open_table(str(tmp_path / "c.csv")) as table:
        assert table.guesses() == ['delimiter ";": it splits the header into 2 columns (2 title lines of one'
                                   " cell above it set aside), as 2 of 2 rows do"]


def test_hidden_rows_read_with_include_hidden_are_not_called_left_out(tmp_path: Path) -> None:
    """M5: with --include-hidden nothing is left out; the line says the hidden rows are read."""
    from workbooks import Sheet, write_xlsx

    write_xlsx(tmp_path / "h.xlsx", {"Sheet1": Sheet([["Email"], ["ann@example.com"], ["bob@example.com"]],
                                                     hidden={3})})
    (tmp_path / "mapping.yaml").write_text(
        f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n", encoding="utf-8")
    r = validate(tmp_path, "h.xlsx", "mapping.yaml", "--include-hidden")
    assert r.code == 0, r.stdout + r.stderr
    assert ("  left out: no hidden row: row 3, hidden in the sheet, is read like any other (--include-hidden)"
            in r.stdout.splitlines())
