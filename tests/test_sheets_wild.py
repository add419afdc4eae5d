"""Exports from the wild (issue 13), and the email sent as the sheet writes it
(issue 10, case 4).

Each case runs the real CLI against the real sandbox (loopback, port 0) on a
fixture of tests/data/sheets_wild (make_fixtures.py writes them, and says which
export each one copies) and asserts what the server received, or that nothing
reached it.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, read_results, run_cli

from bulksend.mapping import parse_mapping
from bulksend.reading.cells import INVISIBLE, normal_name
from bulksend.reading.charsets import guess_legacy
from bulksend.reading.sources import open_table
from bulksend.reading.table import Row
from bulksend.sandbox import DEMO_CAMPAIGN_ID, SEEDED_CONTACT_IDS, Sandbox

DATA = Path(__file__).parent / "data" / "sheets_wild"
CAMPAIGN = f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\n"
MAPPING = CAMPAIGN + "contact:\n  email: Email\n  firstName: First Name\nsendMessage: true\n"


def send(tmp_path: Path, sandbox: Sandbox, fixture: str, mapping: str = MAPPING, *args: str,
         results: str = "results.csv") -> Result:
    """`bulksend send FIXTURE -m mapping.yaml` in tmp_path against the sandbox."""
    shutil.copy(DATA / fixture, tmp_path / fixture)
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    return run_cli("send", fixture, "-m", "mapping.yaml", "--results", results, "--api-url", sandbox.url,
                   "--rate", "none", "--no-progress", *args, cwd=tmp_path)


def validate(tmp_path: Path, fixture: str, mapping: str = MAPPING, *args: str) -> Result:
    shutil.copy(DATA / fixture, tmp_path / fixture)
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    return run_cli("validate", fixture, "-m", "mapping.yaml", *args, cwd=tmp_path, key=None)


def received(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The request bodies the sandbox created requests from, in order."""
    return [created["received"] for created in sandbox.created]


def statuses(tmp_path: Path) -> dict[str, str]:
    return {row["row"]: row["status"] for row in read_results(tmp_path / "results.csv")[1]}


def assert_nothing_reached(sandbox: Sandbox, r: Result) -> None:
    stats = sandbox.stats
    told = f"exit {r.code}\n{r.stdout}{r.stderr}"
    assert sum(stats["post_request"].values()) + stats["gets"] == 0, told
    assert sandbox.created == [], told


def one_error(r: Result) -> str:
    """The one error line of a refused run (exit 2), without its prefix."""
    assert r.code == 2, f"exit {r.code}\n{r.stdout}{r.stderr}"
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("bulksend: error: ")]
    assert len(errors) == 1, r.stderr
    # Several mapping problems come one per line under it (issue 15).
    problems = [line.strip() for line in r.stderr.splitlines() if line.startswith("  line ")]
    return " ".join([errors[0].removeprefix("bulksend: error: "), *problems])


# --- case 1: short one-byte exports ---------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "encoding"),
    [("helene-cp1252.csv", "Windows-1252"), ("helene-latin1.csv", "Windows-1252"),
     ("helene-macroman.csv", "Mac Roman")],
)
def test_a_one_row_western_export_is_read_right_and_says_how(tmp_path: Path, sandbox: Sandbox,
                                                             fixture: str, encoding: str) -> None:
    r = send(tmp_path, sandbox, fixture)
    assert r.code == 0, r.stdout + r.stderr
    assert [body["contact"]["firstName"] for body in received(sandbox)] == ["Hélène"]
    assert f'encoding {encoding} (detected), delimiter "," (detected)' in r.stderr, r.stderr

    r = validate(tmp_path, fixture)
    byte = "8E" if encoding == "Mac Roman" else "E9"
    assert r.stdout.splitlines()[:3] == [
        f'read {fixture}: CSV, encoding {encoding} (detected), delimiter "," (detected), header on row 1',
        # Issue 24: the code page guessed is shown with its evidence.
        f'  guessed: encoding {encoding}: not UTF-8 (line 2 has byte 0x{byte}); read as {encoding}, which'
        ' shows "Hélène"',
        f"{fixture}: 1 rows: 1 valid, 0 invalid, 0 duplicate",
    ], r.stdout


# Names of every Western European language, each alone in a file (the hardest
# case: one accented letter, nothing around it to go by).
NAMES = [
    "Hélène", "Zoë", "José", "Peña", "François", "Besançon", "Jürgen", "Köln", "Müller", "Düsseldorf",
    "Groß", "Björn", "Lefèvre", "Crème", "Núñez", "Søren", "Inês", "João", "Gonçalves", "Zürich", "Genève",
    "Thérèse", "Noël", "Anaïs", "Chloé", "Mañana", "Jérôme", "Benoît", "Cécile", "Straße", "Fußball", "Ærø",
    "Åsa",
]


@pytest.mark.parametrize(
    ("encoding", "newline"), [("cp1252", "\r\n"), ("latin-1", "\n"), ("mac_roman", "\r")]
)
def test_short_western_files_decode_as_written(encoding: str, newline: str) -> None:
    """The kind behind case 1: any one name, in a two-line file."""
    wrong = []
    for name in NAMES:
        data = f"Email,Name{newline}a@example.com,{name}{newline}".encode(encoding)
        guess = guess_legacy(data, complete=True)
        if not guess.sure or data.decode(guess.codec) != data.decode(encoding):
            wrong.append((name, guess.codec, data.decode(guess.codec, "replace")))
    assert wrong == []


def test_an_encoding_that_no_candidate_reads_cleanly_is_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    """UTF-8 rows and a Windows-1252 row in one file: every reading shows
    garbage somewhere, so the run asks for --encoding instead of guessing."""
    r = send(tmp_path, sandbox, "mixed-encodings.csv")
    message = one_error(r)
    expected = "mixed-encodings.csv: cannot tell the file's encoding: it is not UTF-8"
    assert message.startswith(expected), message
    assert "hint: pass --encoding" in r.stderr
    assert_nothing_reached(sandbox, r)


# --- case 2: invisible characters in emails -------------------------------------------


def test_an_invisible_character_never_reaches_the_api_and_the_duplicate_is_caught(
        tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, "zero-width.csv")
    assert r.code == 1, r.stdout + r.stderr  # one duplicate
    assert [body["contact"]["email"] for body in received(sandbox)] == ["cy.ng@example.com"]
    assert statuses(tmp_path) == {"2": "sent", "3": "duplicate"}


def test_the_invisible_class_holds_every_format_character() -> None:
    missing = [f"U+{c:04X}" for c in range(sys.maxunicode + 1)
               if unicodedata.category(chr(c)) == "Cf" and not INVISIBLE.match(chr(c))]
    assert missing == []


# --- case 3: look-alike headers ---------------------------------------------------------


def test_a_decomposed_header_matches_the_mapping(tmp_path: Path, sandbox: Sandbox) -> None:
    mapping = CAMPAIGN + "contact:\n  email: Email\n  firstName: Prénom\n"  # NFC in the mapping
    assert "Pre\u0301nom" in (DATA / "nfd-header.csv").read_text(encoding="utf-8")
    r = send(tmp_path, sandbox, "nfd-header.csv", mapping)
    assert r.code == 0, r.stdout + r.stderr
    assert [body["contact"]["firstName"] for body in received(sandbox)] == ["Zoé"]


def test_spaces_and_invisible_characters_in_names_do_not_matter() -> None:
    assert normal_name(" First\u00a0\u00a0Name\u200b ") == "First Name" == normal_name("First Name")


def test_a_look_alike_that_still_differs_is_shown(tmp_path: Path, sandbox: Sandbox) -> None:
    mapping = CAMPAIGN + "contact:\n  email: Email\n  firstName: Prenom\n"  # the file's "e" is Cyrillic
    message = one_error(send(tmp_path, sandbox, "lookalike-header.csv", mapping))
    assert message == ('mapping.yaml: line 4, contact.firstName: column "Prenom" is not in the file'
                       ' (closest: "Prеnom": the mapping has "e" where the file has "е" (U+0435))')  # noqa: RUF001
    assert_nothing_reached(sandbox, Result(2, "", message))


# --- case 4: hidden rows -----------------------------------------------------------------


def test_hidden_rows_are_named_left_out_and_recorded(tmp_path: Path, sandbox: Sandbox) -> None:
    r = validate(tmp_path, "filtered.xlsx")
    assert r.code == 1
    assert r.stdout.splitlines()[:3] == [
        'read filtered.xlsx: XLSX, sheet "Contacts", header on row 1',
        "  left out: 2 hidden rows (filtered out by the sheet's AutoFilter): rows 3, 5;"
        " not sent (--include-hidden sends them)",
        "filtered.xlsx: 4 rows: 2 valid, 2 invalid, 0 duplicate",
    ], r.stdout

    r = send(tmp_path, sandbox, "filtered.xlsx")
    assert r.code == 1, r.stdout + r.stderr
    assert [body["contact"]["email"] for body in received(sandbox)] == ["ann@example.com", "cid@example.com"]
    lines = {row["row"]: row for row in read_results(tmp_path / "results.csv")[1]}  # every row has its line
    assert {n: row["status"] for n, row in lines.items()} == {"2": "sent", "3": "invalid", "4": "sent",
                                                             "5": "invalid"}
    assert lines["3"]["error"].startswith("hidden in the sheet (filtered out by its AutoFilter); not sent")

    r = send(tmp_path, sandbox, "filtered.xlsx", MAPPING, "--include-hidden")  # the same results: resumes
    assert r.code == 0, r.stdout + r.stderr
    assert sorted(body["contact"]["email"] for body in received(sandbox)) == [
        "ann@example.com", "bob@example.com", "cid@example.com", "dan@example.com"]


# --- case 5: number formats --------------------------------------------------------------


def test_numbers_are_sent_as_their_format_shows_them(tmp_path: Path, sandbox: Sandbox) -> None:
    columns = ["Zip", "Client", "Amount", "Sum", "Total", "Plain", "Since"]
    mapping = MAPPING + "data:\n" + "".join(f"  {c.lower()}: {c}\n" for c in columns)
    r = send(tmp_path, sandbox, "number-formats.xlsx", mapping)
    assert r.code == 0, r.stdout + r.stderr
    assert received(sandbox)[0]["data"] == {
        "zip": "02494",  # 00000
        "client": "0000007",  # 0000000
        "amount": "2.50",  # 0.00
        "sum": "0.30",  # 0.00 over 0.1 + 0.2: no float artefact
        "total": "1235",  # #,##0: rounded; the separator (locale's) left out
        "plain": "3",  # General
        "since": "2026-03-31",  # a date format: a date
    }


# --- case 6: ISO 8601 with any number of fraction digits ---------------------------------


def test_a_dotnet_round_trip_date_is_accepted(tmp_path: Path, sandbox: Sandbox) -> None:
    # past: allow, so the fixed date in the file never ages the test (issue 17).
    mapping = MAPPING + "dueDate: {column: Due, past: allow}\n"
    r = send(tmp_path, sandbox, "iso-fraction.csv", mapping)
    assert r.code == 0, r.stdout + r.stderr
    # A date-time with Z is sent as that instant (issue 17), seven fraction digits and all.
    assert [body["dueDate"] for body in received(sandbox)] == ["2026-12-31T10:00:00+00:00"]


@pytest.mark.parametrize("text", ["2026-12-31T10:00:00.1+02:00", "2026-12-31T10:00:00.123456789+02:00",
                                  "2026-12-31T10:00:00,5+02:00"])
def test_any_number_of_fraction_digits(text: str) -> None:
    mapping = parse_mapping("campaignId: {value: c}\ncontact: {email: Email}\n"
                            "data: {at: {column: At, type: datetime}}\n", "m.yaml", ["Email", "At"])
    mapped = mapping.apply(Row(2, {"Email": "a@b.co", "At": text}))
    assert mapped.error is None and mapped.payload is not None
    assert mapped.payload["data"]["at"].startswith("2026-12-31T10:00:00")


# --- case 7: Excel's text-forcing idiom --------------------------------------------------


def test_the_excel_text_forcing_idiom_is_the_text(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, "forced-text.csv", MAPPING + "data:\n  client: Client\n")
    assert r.code == 0, r.stdout + r.stderr
    assert [body["data"]["client"] for body in received(sandbox)] == ["00123", "007"]


# --- case 8: title lines above the header ------------------------------------------------


def test_title_lines_name_the_header_row_and_the_option(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, "title-lines.csv")
    message = one_error(r)
    assert 'column "Email" is not in the file' in message
    assert ("hint: row 4 of the file holds every column the mapping names (the header was read on row 1):"
            " pass --header-row 4") in r.stderr.splitlines()
    assert_nothing_reached(sandbox, r)

    r = send(tmp_path, sandbox, "title-lines.csv", MAPPING, "--header-row", "4")
    assert r.code == 0, r.stdout + r.stderr
    assert [body["contact"]["email"] for body in received(sandbox)] == ["ann@example.com", "bob@example.com"]
    assert statuses(tmp_path) == {"5": "sent", "6": "sent"}  # the sheet's own row numbers
    assert 'delimiter ";" (detected), header on row 4' in r.stderr


def test_a_header_row_that_is_blank_is_refused(tmp_path: Path) -> None:
    message = one_error(validate(tmp_path, "title-lines.csv", MAPPING, "--header-row", "3"))
    assert message == "title-lines.csv: --header-row 3: it is blank"


# --- case 9: duplicate or blank header names the mapping does not use --------------------


def test_unused_repeated_and_blank_header_names_are_ignored_and_said(tmp_path: Path,
                                                                    sandbox: Sandbox) -> None:
    r = validate(tmp_path, "google-forms.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert ('  left out: columns not read: 2 (no name), "Any comments?" (columns 5 and 6: the same name)'
            in r.stdout.splitlines()), r.stdout

    r = send(tmp_path, sandbox, "google-forms.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert [body["contact"]["email"] for body in received(sandbox)] == ["ann@example.com", "bob@example.com"]


def test_a_repeated_header_name_the_mapping_uses_is_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    mapping = MAPPING + "data:\n  comments: Any comments?\n"
    r = send(tmp_path, sandbox, "google-forms.csv", mapping)
    assert one_error(r) == ('mapping.yaml: line 7, data.comments: column "Any comments?" is ambiguous:'
                            " the file has it on columns 5, 6; rename all but one in the file's header row")
    assert_nothing_reached(sandbox, r)


# --- issue 10, case 4: the email as the sheet writes it ---------------------------------


def test_the_email_is_sent_as_written_and_its_key_ignores_case(tmp_path: Path, sandbox: Sandbox) -> None:
    """GET /contacts?email= is exact and case-sensitive (collect-api.md §6): sent
    lower-cased, Grace.Hopper@Example.com would become a second contact."""
    r = send(tmp_path, sandbox, "grace.csv")
    assert r.code == 1, r.stdout + r.stderr  # row 4 is a duplicate
    created = sandbox.created
    assert [c["received"]["contact"]["email"] for c in created] == ["Grace.Hopper@Example.com",
                                                                    "alan@example.com"]
    assert created[0]["contactId"] == SEEDED_CONTACT_IDS["Grace.Hopper@Example.com"]  # the existing contact
    lines = {row["row"]: row for row in read_results(tmp_path / "results.csv")[1]}
    assert lines["4"]["status"] == "duplicate"
    assert lines["2"]["key"] == f"{DEMO_CAMPAIGN_ID}|grace.hopper@example.com"  # keys as before


def test_hidden_rows_of_a_sheet_without_row_numbers_are_counted(tmp_path: Path) -> None:
    """A writer that leaves out <row r="…"> (allowed by ECMA-376): rows are counted."""
    import zipfile

    source = DATA / "filtered.xlsx"
    target = tmp_path / "filtered.xlsx"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                for n in range(1, 6):
                    data = data.replace(f'<row r="{n}"'.encode(), b"<row")
            new.writestr(item, data)
    with open_table(str(target)) as table:
        assert table.hidden == frozenset({3, 5})
