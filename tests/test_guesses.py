"""Issue 24: never guess silently. Every guess is shown with its evidence; where
the evidence does not decide, ``init`` writes the question into the mapping and
``validate``/``send`` refuse (exit 2) naming the file, column or sheet.

Each row of the issue's table is a test here, with a second instance of its
kind (another separator, another width form, another format), run through the
real CLI against the real sandbox where sending matters: the bodies the server
received, or that nothing reached it.
"""

from __future__ import annotations

import csv
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Result, run_cli
from workbooks import Cell, Sheet, write_ods, write_xlsx

from bulksend.mapping import parse_mapping
from bulksend.mapping.questions import QuestionsError
from bulksend.reading.sources import open_table
from bulksend.reading.table import Row
from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox

YEAR = date.today().year + 1  # due dates in the coming year: never past
GUESSES = Path(__file__).parent / "data" / "guesses"


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


def init(tmp_path: Path, contacts: str, *args: str, campaign: bool = True) -> Result:
    extra = ["--campaign", DEMO_CAMPAIGN_ID] if campaign else []
    return run_cli("init", contacts, *extra, "--force", *args, cwd=tmp_path, key=None)


def validate(tmp_path: Path, contacts: str, mapping: str = "mapping.yaml", *args: str) -> Result:
    return run_cli("validate", contacts, "-m", mapping, *args, cwd=tmp_path, key=None)


def send(tmp_path: Path, sandbox: Sandbox, contacts: str, mapping: str = "mapping.yaml",
         *args: str) -> Result:
    return run_cli("send", contacts, "-m", mapping, "--results", "results.csv", "--api-url", sandbox.url,
                   "--rate", "none", "--no-progress", *args, cwd=tmp_path)


def spec(tmp_path: Path, mapping: str = "mapping.yaml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((tmp_path / mapping).read_text(encoding="utf-8"))
    return loaded


def answer(tmp_path: Path, question: str, chosen: str, mapping: str = "mapping.yaml") -> None:
    """Answer a question init left, as a person does: keep one choice."""
    path = tmp_path / mapping
    text = path.read_text(encoding="utf-8")
    assert question in text, text
    path.write_text(text.replace(question, chosen), encoding="utf-8")


def received(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [created["received"] for created in sandbox.created]


def refused(r: Result, *words: str) -> str:
    """The one error line of a run refused with exit 2; each of ``words`` in it."""
    told = f"exit {r.code}\n{r.stdout}{r.stderr}"
    assert r.code == 2, told
    assert "Traceback" not in r.stderr, told
    errors = [line for line in r.stderr.splitlines() if line.startswith("bulksend: error: ")]
    assert len(errors) == 1, told
    text = " ".join(line.strip() for line in r.stderr.splitlines())
    for word in words:
        assert word in text, told
    return errors[0]


def nothing_reached(sandbox: Sandbox) -> None:
    assert sandbox.created == [] and sandbox.stats["gets"] == 0


def guessed(r: Result) -> list[str]:
    mark = "  guessed: "
    return [line.removeprefix(mark) for line in r.stdout.splitlines() if line.startswith(mark)]


# --- the order of day and month ---------------------------------------------------------


# (separator, strftime of the dates written, the two formats in question)
ORDERS = [
    ("/", "%m/%d/%Y", ("%d/%m/%Y", "%m/%d/%Y")),  # the US export
    ("-", "%m-%d-%Y", ("%d-%m-%Y", "%m-%d-%Y")),  # another separator
    ("/", "%m/%d/%y", ("%d/%m/%y", "%m/%d/%y")),  # two-digit years
]


def us_rows(written: str, *, deciding: bool) -> list[list[str]]:
    """Contacts due on days 1-12 of months 1-12 (each reads both ways), and with
    ``deciding`` one more due on the 13th of June (only month first reads it)."""
    rows = [["Email", "Name", "Due"]]
    for n in range(1, 13):
        rows.append([f"p{n}@example.com", f"P{n}", date(YEAR, n, (n % 12) + 1).strftime(written)])
    if deciding:
        rows.append(["june@example.com", "June", date(YEAR, 6, 13).strftime(written)])
    return rows


@pytest.mark.parametrize(("separator", "written", "formats"), ORDERS)
def test_dates_that_read_both_ways_are_asked_and_sent_as_answered(
        separator: str, written: str, formats: tuple[str, str], tmp_path: Path, sandbox: Sandbox) -> None:
    """Every due date reads as day/month and as month/day: init writes the
    question, validate and send refuse (exit 2, naming the line and the column),
    nothing is sent; answered, every deadline is the date the file means."""
    write_csv(tmp_path / "us.csv", us_rows(written, deciding=False))
    r = init(tmp_path, "us.csv")
    assert r.code == 0, r.stdout + r.stderr
    question = f"{formats[0]} or {formats[1]}"
    assert spec(tmp_path)["dueDate"]["format"] == question
    assert "QUESTION: every date here reads day first and month first alike" in (
        tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    assert f"dueDate.format: {formats[0]} (day first) or {formats[1]} (month first)?" in r.stdout

    refused(validate(tmp_path, "us.csv"), "mapping.yaml: line", "dueDate.format", 'column "Due"',
            "a question to answer")
    refused(send(tmp_path, sandbox, "us.csv"), "dueDate.format", 'column "Due"')
    nothing_reached(sandbox)
    assert not (tmp_path / "results.csv").exists()

    answer(tmp_path, question, formats[1])
    r = validate(tmp_path, "us.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == [f'column "Due": no date tells day from month (12 read both ways); read month first'
                          f" (format {formats[1]}) because the mapping says so"]
    r = send(tmp_path, sandbox, "us.csv")
    assert r.code == 0, r.stdout + r.stderr
    due = {body["contact"]["email"]: body["dueDate"][:10] for body in received(sandbox)}
    assert due == {f"p{n}@example.com": date(YEAR, n, (n % 12) + 1).isoformat() for n in range(1, 13)}


@pytest.mark.parametrize(("separator", "written", "formats"), ORDERS)
def test_a_day_above_12_decides_month_first_and_is_shown(
        separator: str, written: str, formats: tuple[str, str], tmp_path: Path, sandbox: Sandbox) -> None:
    """One date, 06/13, reads only month first: init chooses month first and
    says which row decides; validate and the top of send show it again."""
    write_csv(tmp_path / "us.csv", us_rows(written, deciding=True))
    r = init(tmp_path, "us.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["dueDate"] == {"column": "Due", "format": formats[1], "required": True}
    june = date(YEAR, 6, 13).strftime(written)
    assert f"month first, as row 14 {june} shows" in r.stdout
    r = validate(tmp_path, "us.csv")
    assert r.code == 0, r.stdout + r.stderr
    line = f'column "Due": dates read month first (format {formats[1]}): row 14 ("{june}") reads no other way'
    assert guessed(r) == [line]
    r = send(tmp_path, sandbox, "us.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert f"guess {line}" in r.stderr  # the top of send
    due = {body["contact"]["email"]: body["dueDate"][:10] for body in received(sandbox)}
    assert due["p6@example.com"] == date(YEAR, 6, 7).isoformat()  # June 7, not July 6
    assert due["june@example.com"] == date(YEAR, 6, 13).isoformat()


def test_a_day_first_file_is_decided_by_its_own_rows(tmp_path: Path) -> None:
    """The other way round: 13/06 decides day first (no question)."""
    rows = [["Courriel", "Prénom", "Échéance"], ["ann@example.com", "Ann", f"13/06/{YEAR}"],
            ["bob@example.com", "Bob", f"02/03/{YEAR}"]]
    write_csv(tmp_path / "fr.csv", rows, delimiter=";")
    assert init(tmp_path, "fr.csv").code == 0
    assert spec(tmp_path)["dueDate"]["format"] == "%d/%m/%Y"
    r = validate(tmp_path, "fr.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == [f'column "Échéance": dates read day first (format %d/%m/%Y): row 2 ("13/06/{YEAR}")'
                          " reads no other way"]


def test_another_columns_dates_that_read_both_ways_are_sent_as_written(tmp_path: Path,
                                                                       sandbox: Sandbox) -> None:
    """A contact.data column of such dates is not a due date: rather than ask,
    init sends its cells as the text they are (nothing guessed)."""
    rows = [["Email", "Born"], ["ann@example.com", "03/04/1990"], ["bob@example.com", "05/06/1991"]]
    write_csv(tmp_path / "c.csv", rows)
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["data"] == {"born": {"column": "Born", "required": False}}
    assert "sent as written (day and month cannot be told apart)" in r.stdout
    r = send(tmp_path, sandbox, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    born = sorted(body["contact"]["data"]["born"] for body in received(sandbox))
    assert born == ["03/04/1990", "05/06/1991"]


@pytest.mark.parametrize(("fmt", "cell"), [("%Y-%m-%d", f"{YEAR}-03-06"), ("%Y/%m/%d", f"{YEAR}/03/06"),
                                           ("%d.%m.%Y", f"06.03.{YEAR}")])
def test_year_first_and_dotted_dates_are_no_question(fmt: str, cell: str) -> None:
    """Only "/" and "-" day/month dates are written both ways: ISO, year-first and
    dotted dates have one reading, and nothing is said about their order."""
    text = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n"
            f'dueDate: {{column: Due, format: "{fmt}"}}\n')
    mapping = parse_mapping(text, "m.yaml", ["Email", "Due"])
    mapped = mapping.apply(Row(2, {"Email": "ann@example.com", "Due": cell}))
    assert mapped.payload is not None and mapped.payload["dueDate"].startswith(f"{YEAR}-03-06")
    assert mapping.guesses() == []


# --- emails: one person, one request ------------------------------------------------------

# (written, as it is sent): the same address typed with other characters
SAME_ADDRESS = [
    ("haruka.ito@ｇｍａｉｌ.com", "haruka.ito@gmail.com"),  # noqa: RUF001 - full-width letters (the issue's)
    ("ｈａｒｕｋａ.ito@gmail.com", "haruka.ito@gmail.com"),  # noqa: RUF001 - full-width local part
    ("haruka.ito@gmail\u3002com", "haruka.ito@gmail.com"),  # the ideographic full stop
    ("haruka.ito@gmail\uff61com", "haruka.ito@gmail.com"),  # the half-width one
    ("haruka.ito@ＧＭＡＩＬ.ＣＯＭ", "haruka.ito@gmail.com"),  # noqa: RUF001 - full-width capitals: case too
]


@pytest.mark.parametrize(("written", "sent"), SAME_ADDRESS)
def test_an_address_typed_in_other_forms_is_one_person(written: str, sent: str, tmp_path: Path,
                                                       sandbox: Sandbox) -> None:
    """Sent in its normal form, compared in it: the second row is a duplicate
    of the first, and validate says which address was normalised."""
    write_csv(tmp_path / "jp.csv", [["Email", "Name"], [written, "Haruka"],
                                    ["haruka.ito@gmail.com", "Haruka"], ["Max.Muster@Example.com", "Max"]])
    assert init(tmp_path, "jp.csv").code == 0
    r = validate(tmp_path, "jp.csv")
    assert r.code == 1, r.stdout + r.stderr
    assert "3 rows: 2 valid, 0 invalid, 1 duplicate" in r.stdout
    assert "row 3: duplicate: same key as row 2" in r.stdout
    assert guessed(r) == [f'column "Email": 1 address written with other characters (full-width letters,'
                          f' another full stop, ...) sent in the normal form: row 2: "{written}" as "{sent}"']
    r = send(tmp_path, sandbox, "jp.csv")
    assert r.code == 1, r.stdout + r.stderr
    # One request for Haruka, at the address in its normal form; an address
    # already valid as written is sent as written (issue 10, case 4).
    assert [body["contact"]["email"] for body in received(sandbox)] == [sent, "Max.Muster@Example.com"]


TRICKY = ["a..b@example.com", "ann@exa_mple.com", ".ann@example.com", "ann.@example.com", "ann@example-.com",
          "ann@-example.com", "ann@example..com", "ann@example.co1", "ann@localhost", "ann@example.test",
          "ann@ab--cd.com", "ann@123.456", "ann@example.com.", "a@b@example.com", "ann@exa mple.com"]


@pytest.mark.parametrize("address", TRICKY)
def test_email_syntax_is_email_validators(address: str) -> None:
    """Addresses bulksend's own check used to accept, refused as email-validator refuses them."""
    mapping = parse_mapping(f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n",
                            "m.yaml", ["Email"])
    mapped = mapping.apply(Row(2, {"Email": address}))
    assert mapped.payload is None
    assert mapped.error is not None
    assert mapped.error.startswith(f'column "Email": "{address}" is not an email address')


def test_tricky_addresses_are_invalid_rows_and_never_sent(tmp_path: Path, sandbox: Sandbox) -> None:
    write_csv(tmp_path / "t.csv", [["Email"], *([a] for a in TRICKY[:5]), ["ok@example.com"]])
    text = f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n"
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    r = send(tmp_path, sandbox, "t.csv", "m.yaml")
    assert r.code == 1, r.stdout + r.stderr
    assert [body["contact"]["email"] for body in received(sandbox)] == ["ok@example.com"]


GOOGLE_HEADER = ["Name", "Given Name", "Family Name", "E-mail 1 - Type", "E-mail 1 - Value",
                 "E-mail 2 - Type", "E-mail 2 - Value"]


@pytest.mark.parametrize("several", [" ::: ", ":::"])
def test_google_contacts_multi_value_sends_the_work_address(several: str, tmp_path: Path,
                                                           sandbox: Sandbox) -> None:
    """Google Contacts' CSV: E-mail 1 (work) may hold several addresses ("a ::: b");
    E-mail 2 is the personal one. The first work address is the one a person means."""
    rows = [GOOGLE_HEADER]
    for n, name in enumerate(["Ann", "Bob", "Cy", "Dee"]):
        work = f"{name.lower()}@work.example.com"
        others = [f"{name.lower()}.other@work.example.com"] + ([f"x{n}@w.example.com"] if n else [])
        cell = several.join([work, *others])
        rows.append([f"{name} Lee", name, "Lee", "* Work", cell, "Home", f"{name.lower()}@home.example.com"])
    rows.append(["Eve Ray", "Eve", "Ray", "* Work", "eve@work.example.com", "", ""])
    write_csv(tmp_path / "google.csv", rows)
    r = init(tmp_path, "google.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["email"] == "E-mail 1 - Value"
    assert '"E-mail 2 - Value" also holds addresses (4 rows), not used' in r.stdout
    r = validate(tmp_path, "google.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r)[0].startswith('column "E-mail 1 - Value": 4 cells holding several addresses'
                                    ' (" ::: ", as Google Contacts writes them): the first is sent: row 2:'
                                    f' "ann@work.example.com{several}')
    r = send(tmp_path, sandbox, "google.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert sorted(body["contact"]["email"] for body in received(sandbox)) == [
        f"{n}@work.example.com" for n in ("ann", "bob", "cy", "dee", "eve")]


def test_two_columns_of_addresses_are_asked(tmp_path: Path, sandbox: Sandbox) -> None:
    """Email and Courriel both full of addresses: which one is a question."""
    rows = [["Email", "Courriel", "Nom"]]
    rows += [[f"a{n}@example.com", f"c{n}@example.com", f"N{n}"] for n in range(3)]
    write_csv(tmp_path / "two.csv", rows)
    r = init(tmp_path, "two.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["email"] == "Email or Courriel"
    assert 'contact.email: which column, "Email" or "Courriel"?' in r.stdout
    refused(validate(tmp_path, "two.csv"), "mapping.yaml: line", "contact.email",
            'which column is it, "Email" or "Courriel"?')
    refused(send(tmp_path, sandbox, "two.csv"), "contact.email", '"Email" or "Courriel"')
    nothing_reached(sandbox)
    answer(tmp_path, "email: Email or Courriel", "email: Courriel")
    r = send(tmp_path, sandbox, "two.csv")
    assert r.code == 0, r.stdout + r.stderr
    sent = sorted(body["contact"]["email"] for body in received(sandbox))
    assert sent == [f"c{n}@example.com" for n in range(3)]


def test_two_unnamed_columns_of_addresses_are_asked(tmp_path: Path) -> None:
    """No header names the email and two columns' cells are addresses: asked too."""
    rows = [["Kontakt", "Vertreter"]] + [[f"k{n}@example.com", f"v{n}@example.com"] for n in range(3)]
    write_csv(tmp_path / "k.csv", rows, delimiter=";")
    assert init(tmp_path, "k.csv").code == 0
    assert spec(tmp_path)["contact"]["email"] == "Kontakt or Vertreter"
    refused(validate(tmp_path, "k.csv"), "contact.email", '"Kontakt" or "Vertreter"')


@pytest.mark.parametrize(("named", "cells"), [("Email", ""), ("E-mail", "n/a"), ("Work email", "see CRM")])
def test_the_column_that_holds_addresses_wins_over_a_name(named: str, cells: str, tmp_path: Path,
                                                          sandbox: Sandbox) -> None:
    """A column named Email (or E-mail, Work email) that holds no address does not
    win over Courriel (or Mail) full of them; and a header with a line break
    gives a mapping that validates (the issue's last row)."""
    rows = [[named, "Courriel", "Date\nof birth", "Company\r\nname"]]
    rows += [[cells, f"c{n}@example.com", f"2{n}/04/1990", f"Co {n}"] for n in range(3)]
    write_csv(tmp_path / "x.csv", rows)
    r = init(tmp_path, "x.csv")
    assert r.code == 0, r.stdout + r.stderr
    loaded = spec(tmp_path)
    assert loaded["contact"]["email"] == "Courriel"
    assert loaded["contact"]["company"] == {"column": "Company name", "required": False}
    assert loaded["contact"]["data"]["dateOfBirth"] == {"column": "Date of birth", "type": "date",
                                                        "format": "%d/%m/%Y", "required": False}
    what = "is empty" if not cells else f"holds no addresses (e.g. '{cells}')"
    assert f'"{named}" {what}' in r.stdout
    r = send(tmp_path, sandbox, "x.csv")
    assert r.code == 0, r.stdout + r.stderr
    bodies = received(sandbox)
    assert sorted(body["contact"]["email"] for body in bodies) == [f"c{n}@example.com" for n in range(3)]
    assert sorted(body["contact"]["company"] for body in bodies) == ["Co 0", "Co 1", "Co 2"]


# --- init: the campaign, required columns, a wide file ------------------------------------


def test_the_placeholder_campaign_is_refused_until_replaced(tmp_path: Path, sandbox: Sandbox) -> None:
    """The mapping init wrote, its campaign id not filled in: validate, send and
    send --sandbox refuse it (exit 2), naming the file, the line and the key."""
    write_csv(tmp_path / "c.csv", [["Email", "First Name"], ["ann@example.com", "Ann"]])
    assert init(tmp_path, "c.csv", campaign=False).code == 0
    assert spec(tmp_path)["campaignId"] == {"value": "YOUR_CAMPAIGN_ID"}
    words = ("mapping.yaml: line", "campaignId: YOUR_CAMPAIGN_ID is the stand-in bulksend init wrote")
    refused(validate(tmp_path, "c.csv"), *words)
    refused(send(tmp_path, sandbox, "c.csv"), *words)
    refused(run_cli("send", "c.csv", "-m", "mapping.yaml", "--sandbox", "--no-progress", cwd=tmp_path,
                    key=None), *words)
    nothing_reached(sandbox)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "mapping.yaml"]
    answer(tmp_path, "YOUR_CAMPAIGN_ID", DEMO_CAMPAIGN_ID)
    assert send(tmp_path, sandbox, "c.csv").code == 0


def test_the_placeholder_is_refused_in_a_mapping_given_as_a_dict() -> None:
    """The same refusal through the Python API (a mapping dict), one problem among others."""
    from bulksend import api
    from bulksend.common.errors import MappingError

    with pytest.raises(MappingError) as caught:
        api.validate([{"Email": "ann@example.com"}], {"campaignId": {"value": "YOUR_CAMPAIGN_ID"},
                                                      "contact": {"email": "Email"}})
    assert caught.value.problems == [
        "campaignId: YOUR_CAMPAIGN_ID is the stand-in bulksend init wrote: put your campaign's id in its"
        " place (17 letters and digits, in the app's address bar when the campaign is open)"]
    assert isinstance(caught.value, QuestionsError)


@pytest.mark.parametrize("column", ["Due", "Documents"])
def test_a_column_most_rows_fill_is_required(column: str, tmp_path: Path, sandbox: Sandbox) -> None:
    """A due-date (or items) column most rows fill: the rows without one are
    flagged by validate and not sent, rather than sent with no deadline (or with
    the whole campaign)."""
    rows = [["Email", "Due", "Documents"]]
    for n in range(5):
        empty = n == 3
        rows.append([f"p{n}@example.com", "" if empty and column == "Due" else f"1{n}/06/{YEAR}",
                     "" if empty and column == "Documents" else "ID card"])
    write_csv(tmp_path / "c.csv", rows)
    r = init(tmp_path, "c.csv")
    assert r.code == 0, r.stdout + r.stderr
    loaded = spec(tmp_path)
    assert loaded["dueDate"]["required"] is True and loaded["items"]["required"] is True
    r = validate(tmp_path, "c.csv")
    assert r.code == 1, r.stdout + r.stderr
    assert f'c.csv: row 5: invalid: column "{column}" is empty (required)' in r.stdout
    r = send(tmp_path, sandbox, "c.csv")
    assert r.code == 1, r.stdout + r.stderr
    assert "p3@example.com" not in [body["contact"]["email"] for body in received(sandbox)]


def test_a_column_few_rows_fill_stays_optional(tmp_path: Path) -> None:
    rows = [["Email", "Due"]] + [[f"p{n}@example.com", f"14/06/{YEAR}" if n < 2 else ""] for n in range(5)]
    write_csv(tmp_path / "c.csv", rows)
    assert init(tmp_path, "c.csv").code == 0
    assert spec(tmp_path)["dueDate"]["required"] is False


def test_init_on_500_columns_and_2000_rows_is_quick(tmp_path: Path) -> None:
    """Issue 24: 11 s before (18 date formats tried with strptime on every sampled cell)."""
    header = ["Email", *(f"Field {i}" for i in range(1, 500))]
    with open(tmp_path / "wide.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in range(2000):
            cells = [f"p{r}@example.com"]
            for i in range(1, 500):
                kind = i % 5
                cells.append(f"{(r + i) % 28 + 1:02d}/{i % 12 + 1:02d}/{YEAR}" if kind == 0 else
                             str(r * i) if kind == 1 else f"text {r} {i}" if kind == 2 else
                             "" if r % 3 else "x")
            writer.writerow(cells)
    started = time.perf_counter()
    r = init(tmp_path, "wide.csv")
    elapsed = time.perf_counter() - started
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["data"]["field5"] == {"column": "Field 5", "type": "date",
                                                            "format": "%d/%m/%Y", "required": False}
    assert elapsed < 3.0, f"init took {elapsed:.1f}s"


# --- spreadsheets: the sheet a person means, merged cells, the digits held -----------------

SHEET_MAPPING = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\n"
                 "contact: {email: Email, company: {column: Company, required: false}}\n")
LAST_WEEK = [["Email", "Company"], ["old1@example.com", "Old"], ["old2@example.com", "Old"]]
THIS_WEEK = [["Email", "Company"], ["new1@example.com", "New"], ["new2@example.com", "New"]]


def two_tabs(path: Path, how: str) -> str:
    """Last week's tab first, this week's second, saved with this week's open
    (``how`` the file records it), or with nothing recorded ("none")."""
    if how == "activeTab":
        write_xlsx(path.with_suffix(".xlsx"), {"Last week": Sheet(LAST_WEEK), "This week": Sheet(THIS_WEEK)},
                   active=1)
    elif how in ("tabSelected", "none"):
        write_xlsx(path.with_suffix(".xlsx"), {"Last week": Sheet(LAST_WEEK),
                                                "This week": Sheet(THIS_WEEK, selected=how != "none")})
    else:
        write_ods(path.with_suffix(".ods"), {"Last week": LAST_WEEK, "This week": THIS_WEEK},
                  active=None if how == "ods none" else "This week")
        return path.with_suffix(".ods").name
    return path.with_suffix(".xlsx").name


@pytest.mark.parametrize("how", ["activeTab", "tabSelected", "ods ActiveTable"])
def test_the_tab_open_when_saved_is_read(how: str, tmp_path: Path, sandbox: Sandbox) -> None:
    """The workbook was saved with this week's tab open: that is the one read,
    and validate and send say why; last week's contacts get nothing."""
    name = two_tabs(tmp_path / "batch", how)
    (tmp_path / "mapping.yaml").write_text(SHEET_MAPPING, encoding="utf-8")
    r = validate(tmp_path, name)
    assert r.code == 0, r.stdout + r.stderr
    assert 'sheet "This week"' in r.stdout.splitlines()[0]
    assert guessed(r)[0].startswith('sheet "This week": the tab active when the file was saved')
    r = send(tmp_path, sandbox, name)
    assert r.code == 0, r.stdout + r.stderr
    assert sorted(body["contact"]["email"] for body in received(sandbox)) == ["new1@example.com",
                                                                             "new2@example.com"]


def test_the_xls_selected_tab_is_read(tmp_path: Path, sandbox: Sandbox) -> None:
    shutil.copy(GUESSES / "customers.xls", tmp_path / "customers.xls")
    (tmp_path / "mapping.yaml").write_text(SHEET_MAPPING, encoding="utf-8")
    r = validate(tmp_path, "customers.xls")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r)[0] == 'sheet "Customers": the tab active when the file was saved (its selected tab)'


@pytest.mark.parametrize("how", ["none", "ods none"])
def test_several_tabs_with_data_and_none_recorded_are_asked(how: str, tmp_path: Path,
                                                            sandbox: Sandbox) -> None:
    """Nothing says which tab was open and both hold data: init, validate and
    send refuse (exit 2) naming the sheets; --sheet answers."""
    name = two_tabs(tmp_path / "batch", how)
    (tmp_path / "mapping.yaml").write_text(SHEET_MAPPING, encoding="utf-8")
    words = (f"{name}: 2 sheets hold data", '"Last week", "This week"', "--sheet")
    refused(validate(tmp_path, name), *words)
    refused(send(tmp_path, sandbox, name), *words)
    refused(init(tmp_path, name, "-o", "new.yaml"), *words)
    nothing_reached(sandbox)
    assert not (tmp_path / "new.yaml").exists()
    r = send(tmp_path, sandbox, name, "mapping.yaml", "--sheet", "This week")
    assert r.code == 0, r.stdout + r.stderr
    assert sorted(body["contact"]["email"] for body in received(sandbox)) == ["new1@example.com",
                                                                             "new2@example.com"]


def test_the_only_tab_with_data_is_read_and_said(tmp_path: Path) -> None:
    sheets = {"Notes": Sheet([]), "Contacts": Sheet(THIS_WEEK), "Empty": Sheet([[None]])}
    write_xlsx(tmp_path / "b.xlsx", sheets)
    (tmp_path / "mapping.yaml").write_text(SHEET_MAPPING, encoding="utf-8")
    r = validate(tmp_path, "b.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    assert guessed(r) == ['sheet "Contacts": the only sheet with data ("Notes", "Empty" empty)']


MERGED_MAPPING = SHEET_MAPPING + "dueDate: {column: Due}\n"


@pytest.mark.parametrize(("merges", "companies"), [
    (["B2:B4", "C2:C4"], ["ACME", "ACME", "ACME", "Solo"]),  # the issue's: both over the same three rows
    (["B2:B3", "C2:C5"], ["ACME", "ACME", None, "Solo"]),  # other spans: the due date over every row
])
def test_merged_cells_give_their_value_to_every_row(merges: list[str], companies: list[str | None],
                                                    tmp_path: Path, sandbox: Sandbox) -> None:
    """A company and a due date merged over rows: each row they cover has them;
    validate says so ("4 valid", where two of three rows went out without them)."""
    due = f"{YEAR}-01-05"
    rows: list[list[Cell]] = [["Email", "Company", "Due"], ["a@example.com", "ACME", due],
                              ["b@example.com"], ["c@example.com"], ["d@example.com", "Solo", due]]
    if merges[1] == "C2:C5":
        rows[4][2] = None  # covered by C2:C5
    write_xlsx(tmp_path / "m.xlsx", {"Contacts": Sheet(rows, merges=merges)})
    (tmp_path / "mapping.yaml").write_text(MERGED_MAPPING, encoding="utf-8")
    r = validate(tmp_path, "m.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    assert "m.xlsx: 4 rows: 4 valid, 0 invalid, 0 duplicate" in r.stdout
    assert guessed(r) == [f"merged cells {merges[0]}, {merges[1]}: the value is read into every cell the"
                          " range covers"]
    r = send(tmp_path, sandbox, "m.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    bodies = {body["contact"]["email"]: body for body in received(sandbox)}
    assert len(bodies) == 4
    assert all(body["dueDate"].startswith(due) for body in bodies.values())
    assert [bodies[f"{x}@example.com"]["contact"].get("company") for x in "abcd"] == companies


def test_merged_cells_of_an_xls_fill_too(tmp_path: Path) -> None:
    shutil.copy(GUESSES / "customers.xls", tmp_path / "customers.xls")
    with open_table(str(tmp_path / "customers.xls")) as table:
        assert [row.values["Company"] for row in table.rows()] == ["ACME"] * 3
        assert table.guesses()[1] == "merged cell F2:F4: the value is read into every cell the range covers"


NUMBERS_MAPPING = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact:\n  email: Email\n  data:\n"
                   "    zip: Zip\n    account: Account\n")


def test_xls_numbers_are_the_digits_the_file_holds(tmp_path: Path, sandbox: Sandbox) -> None:
    """.xls reaches .xlsx's parity: a ZIP formatted 00000 is 02494, a 16-digit
    account number is its 16 digits (not 1234567890123456.0), 000000000 and
    0.00 as shown."""
    shutil.copy(GUESSES / "customers.xls", tmp_path / "customers.xls")
    with open_table(str(tmp_path / "customers.xls")) as table:
        rows = [row.values for row in table.rows()]
    assert [(r["Zip"], r["Account"], r["Ref"], r["Amount"]) for r in rows] == [
        ("02494", "1234567890123456", "000012345", "2.50"),
        ("00501", "9007199254740991", "000000007", "3.00"),
        ("90210", "4000000000000002", "123456789", "0.13")]
    (tmp_path / "mapping.yaml").write_text(NUMBERS_MAPPING, encoding="utf-8")
    r = send(tmp_path, sandbox, "customers.xls")
    assert r.code == 0, r.stdout + r.stderr
    data = {body["contact"]["email"]: body["contact"]["data"] for body in received(sandbox)}
    assert data["ann@example.com"] == {"zip": "02494", "account": "1234567890123456"}


@pytest.mark.parametrize("code", ["0", None, "0000000000000000"])
def test_xlsx_16_digit_numbers_are_the_digits_stored(code: str | None, tmp_path: Path,
                                                     sandbox: Sandbox) -> None:
    """An account number 1234567890123456 formatted 0 (or General, or 16 zeros)
    is sent as those digits, not as Excel's 15-digit display 1234567890123460."""
    formats = {"C2": code, "C3": code} if code else {}
    write_xlsx(tmp_path / "n.xlsx", {"Contacts": Sheet(
        [["Email", "Zip", "Account"], ["ann@example.com", "02494", 1234567890123456],
         ["bob@example.com", "501", 9007199254740991]], formats=formats)})
    (tmp_path / "mapping.yaml").write_text(NUMBERS_MAPPING, encoding="utf-8")
    r = send(tmp_path, sandbox, "n.xlsx")
    assert r.code == 0, r.stdout + r.stderr
    accounts = sorted(body["contact"]["data"]["account"] for body in received(sandbox))
    assert accounts == ["1234567890123456", "9007199254740991"]


# --- delimiters --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("Courriel;Montant\nann@example.com;12,50\n", ";"),  # the one-row export
    ("Courriel|Montant|Nom\nann@example.com|12,50|Lee, Ann\n", "|"),  # another delimiter, commas in two cells
    ("Courriel\tMontant\nann@example.com\t1,5\n", "tab"),  # tab, in a .csv
])
def test_a_one_row_export_is_read_with_its_delimiter(text: str, shown: str, tmp_path: Path,
                                                     sandbox: Sandbox) -> None:
    """One data row whose amount has a decimal comma: the header decides, and validate says why."""
    (tmp_path / "one.csv").write_text(text, encoding="utf-8")
    r = init(tmp_path, "one.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert spec(tmp_path)["contact"]["email"] == "Courriel"
    r = validate(tmp_path, "one.csv")
    assert r.code == 0, r.stdout + r.stderr
    quoted = shown if shown == "tab" else f'"{shown}"'
    assert f"delimiter {quoted} (detected)" in r.stdout.splitlines()[0]
    assert guessed(r)[0].startswith(f"delimiter {quoted}: it splits the header into ")
    r = send(tmp_path, sandbox, "one.csv")
    assert r.code == 0, r.stdout + r.stderr
    data = received(sandbox)[0]["contact"]["data"]
    assert data["montant"] in ("12,50", "1,5")


@pytest.mark.parametrize(("text", "shown"), [
    ("Email,Amount;Currency\nann@example.com,12;EUR\nbob@example.com,7;USD\n", '"," or ";"'),
    ("Email\tName|Company\nann@example.com\tAnn|ACME\n", 'tab or "|"'),
])
def test_a_delimiter_tie_is_asked(text: str, shown: str, tmp_path: Path, sandbox: Sandbox) -> None:
    """Two delimiters split every row alike: nothing is read until --delimiter says which."""
    (tmp_path / "tie.csv").write_text(text, encoding="utf-8")
    mapping = f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n"
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    words = (f"tie.csv: the delimiter could be {shown}", "--delimiter")
    refused(init(tmp_path, "tie.csv", "-o", "new.yaml"), *words)
    refused(validate(tmp_path, "tie.csv"), *words)
    refused(send(tmp_path, sandbox, "tie.csv"), *words)
    nothing_reached(sandbox)
    chosen = "," if shown.startswith('","') else "tab"
    r = init(tmp_path, "tie.csv", "-o", "new.yaml", "--delimiter", chosen)
    assert r.code == 0, r.stdout + r.stderr
    assert f"--delimiter {chosen}" in r.stdout  # the commands init gives keep the answer


# --- an export that arrives empty -----------------------------------------------------------


@pytest.mark.parametrize("empty", ["header only", "blank rows", "xlsx header only"])
def test_an_empty_export_where_the_journal_knows_rows_changes_nothing(empty: str, tmp_path: Path,
                                                                      sandbox: Sandbox) -> None:
    """The nightly export arrives with its header only (or blank rows): exit 2,
    one line, and results.csv and its journal are as they were."""
    mapping = f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n"
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    name = "nightly.xlsx" if empty.startswith("xlsx") else "nightly.csv"
    rows: list[list[Cell]] = [["Email"], ["ann@example.com"], ["bob@example.com"]]
    if name.endswith(".xlsx"):
        write_xlsx(tmp_path / name, {"Contacts": Sheet(rows)})
    else:
        write_csv(tmp_path / name, [[str(c) for c in row] for row in rows])
    assert send(tmp_path, sandbox, name).code == 0
    kept = ("results.csv", "results.csv.journal")  # sqlite's -shm/-wal come and go with any reader
    before = {name: (tmp_path / name).read_bytes() for name in kept}
    if name.endswith(".xlsx"):
        write_xlsx(tmp_path / name, {"Contacts": Sheet([["Email"]])})
    else:
        text = "Email\n" if empty == "header only" else "Email\n\n,\n \n"
        (tmp_path / name).write_text(text, encoding="utf-8")
    r = send(tmp_path, sandbox, name)
    error = refused(r, f"{name}: has no data rows (header only), but results.csv records 2 rows")
    assert error.endswith("nothing was sent and nothing changed")
    assert r.stdout == ""
    assert {name: (tmp_path / name).read_bytes() for name in kept} == before
    assert len(sandbox.created) == 2


def test_an_empty_export_on_a_first_run_is_no_error(tmp_path: Path, sandbox: Sandbox) -> None:
    """With no rows recorded, a file of no rows has nothing to contradict: exit 0, as before."""
    mapping = f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: {{email: Email}}\n"
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    (tmp_path / "nightly.csv").write_text("Email\n", encoding="utf-8")
    assert send(tmp_path, sandbox, "nightly.csv").code == 0


# --- NULs and bidirectional controls ---------------------------------------------------------

CELLS_MAPPING = (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\n"
                 "contact: {email: Email, firstName: Name}\n")


@pytest.mark.parametrize(("name", "data", "cleaned"), [
    # the issue's: one cell of a UTF-8 export holds a NUL
    ("nul.csv", b"Email,Name\nann@example.com,A\x00nn\nbob@example.com,Bob\n", 'row 2 "Name"'),
    # a Windows-1252 export, tab-delimited, NULs in two cells
    ("nul.tsv", "Email\tName\nann@example.com\tAnn\x00\nbob@example.com\x00\tBéb\n".encode("cp1252"),
     'row 2 "Name", row 3 "Email"'),
    # bidirectional controls pasted from a right-to-left page: RLO, an isolate, a mark
    ("bidi.csv", "Email,Name\n\u202eann@example.com,\u2067Ann\u2069\nbob@example.com\u200f,Bob\n".encode(),
     'row 2 "Email", row 2 "Name", row 3 "Email"'),
])
def test_nul_and_bidi_controls_are_removed_from_cells(name: str, data: bytes, cleaned: str, tmp_path: Path,
                                                      sandbox: Sandbox) -> None:
    """Never a whole-file "binary" error for one cell's NUL: the characters are
    removed from the cells, validate names them, the requests carry clean text."""
    (tmp_path / name).write_bytes(data)
    (tmp_path / "mapping.yaml").write_text(CELLS_MAPPING, encoding="utf-8")
    r = validate(tmp_path, name)
    assert r.code == 0, r.stdout + r.stderr
    count = cleaned.count("row ")
    assert (f"  left out: NUL and bidirectional control characters, removed from {count} cell"
            f"{'s' if count > 1 else ''}: {cleaned}") in r.stdout.splitlines()
    r = send(tmp_path, sandbox, name)
    assert r.code == 0, r.stdout + r.stderr
    contacts = sorted((body["contact"]["email"], body["contact"]["firstName"]) for body in received(sandbox))
    assert contacts[0] == ("ann@example.com", "Ann")
    assert contacts[1][0] == "bob@example.com"


def test_bidi_controls_in_a_spreadsheet_cell_are_removed(tmp_path: Path) -> None:
    rows: list[list[Cell]] = [["Email", "Name"], ["ann@example.com", "\u202bAnn\u202c"]]
    write_xlsx(tmp_path / "b.xlsx", {"Contacts": Sheet(rows)})
    with open_table(str(tmp_path / "b.xlsx")) as table:
        assert [row.values["Name"] for row in table.rows()] == ["Ann"]
        assert table.left_out() == [
            'NUL and bidirectional control characters, removed from 1 cell: row 2 "Name"']


def test_a_binary_file_is_still_refused(tmp_path: Path) -> None:
    """Many control bytes are a binary file, whatever its name: refused as before."""
    (tmp_path / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "mapping.yaml").write_text(CELLS_MAPPING, encoding="utf-8")
    refused(validate(tmp_path, "photo.csv"), "photo.csv: looks like a binary file, not CSV")


def test_ods_numbers_and_hidden_rows_reach_xlsx_parity(tmp_path: Path, sandbox: Sandbox) -> None:
    """.ods: the number styles (00000, 0, 000000000, 0.00) give the text a person
    sees, and a hidden row is left out, as in .xlsx and .xls."""
    shutil.copy(GUESSES / "customers.ods", tmp_path / "customers.ods")
    with open_table(str(tmp_path / "customers.ods")) as table:
        rows = [row for row in table.rows()]
    assert [(r.values["Zip"], r.values["Account"], r.values["Ref"], r.values["Amount"]) for r in rows] == [
        ("02494", "1234567890123456", "000012345", "2.50"),
        ("00501", "9007199254740991", "000000007", "3.00"),
        ("90210", "4000000000000002", "123456789", "0.13")]
    assert [r.number for r in rows if r.left_out] == [3]
    (tmp_path / "mapping.yaml").write_text(NUMBERS_MAPPING, encoding="utf-8")
    r = send(tmp_path, sandbox, "customers.ods")
    assert r.code == 1, r.stdout + r.stderr  # the hidden row is recorded invalid, not sent
    data = {body["contact"]["email"]: body["contact"]["data"] for body in received(sandbox)}
    assert data == {"ann@example.com": {"zip": "02494", "account": "1234567890123456"},
                    "cid@example.com": {"zip": "90210", "account": "4000000000000002"}}
