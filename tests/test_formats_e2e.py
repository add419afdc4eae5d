"""The same table in every format gives the same payloads, through the real CLI (issue 3).

The table is tests/data/reading/contacts.json (the one tests/test_reading.py
reads): accents, a cell with a comma and a line break, "007", "NA", "null",
"nan", a 20-digit number, TRUE/yes/0, a quoted quote, a cell with spaces around
it. The text variants are written here; the spreadsheets are the committed
fixtures of tests/data/reading (make_fixtures.py). Each one goes through
`bulksend send FILE -m mapping.yaml --dry-run --results out.csv` (no key, no
network) and the `payload` column of the results must be identical, row for row.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CONTRACT, read_results, run_cli
from forked import run

from bulksend.sandbox import DEMO_CAMPAIGN_ID

DATA = Path(__file__).parent / "data" / "reading"
TABLE = json.loads((DATA / "contacts.json").read_text(encoding="utf-8"))
HEADER: list[str] = TABLE["header"]
ROWS: list[list[str]] = TABLE["rows"]
COLUMNS = [name.strip() for name in HEADER]

# Every column the text and spreadsheet variants share (the spreadsheets add Due
# and Amount). Notes keeps its spaces (strip: false); Active goes through type bool.
MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
  firstName: First Name
  lastName: Last Name
  company: {{column: Company, required: false}}
  data:
    customerId: Customer ID
    account: Account
    region: {{column: Region, required: false}}
    active: {{column: Active, type: bool}}
    notes: {{column: Notes, required: false, strip: false}}
sendMessage: true
"""

TRUTH = {"TRUE": True, "true": True, "yes": True, "FALSE": False, "0": False}


def expected_payload(cells: list[str]) -> dict[str, Any]:
    """What the mapping must make of one row of contacts.json, worked out by hand."""
    row = dict(zip(COLUMNS, cells, strict=True))
    data: dict[str, Any] = {"customerId": row["Customer ID"], "account": row["Account"]}
    if row["Region"]:
        data["region"] = row["Region"]
    data["active"] = TRUTH[row["Active"]]
    if row["Notes"]:
        data["notes"] = row["Notes"]
    contact: dict[str, Any] = {
        "email": row["Email"].lower(),
        "firstName": row["First Name"],
        "lastName": row["Last Name"],
    }
    if row["Company"]:
        contact["company"] = row["Company"]
    contact["data"] = data
    return {"campaignId": DEMO_CAMPAIGN_ID, "contact": contact, "sendMessage": True}


def csv_bytes(encoding: str, delimiter: str, newline: str = "\r\n") -> bytes:
    """The table as an exporter writes it: a cell with the delimiter, a quote or a
    line break is quoted, quotes doubled."""

    def cell(text: str) -> str:
        if any(c in text for c in (delimiter, '"', "\r", "\n")):
            return '"' + text.replace('"', '""') + '"'
        return text

    text = "".join(delimiter.join(cell(c) for c in cells) + newline for cells in [HEADER, *ROWS])
    return text.encode(encoding)


TEXT = {
    "csv utf-8": ("contacts.csv", "utf-8", ","),
    "csv utf-8 BOM": ("contacts.csv", "utf-8-sig", ","),
    "csv utf-16": ("contacts.csv", "utf-16", ","),
    "csv cp1252": ("contacts.csv", "cp1252", ","),
    "csv ;": ("contacts.csv", "utf-8", ";"),
    "cp1252 ;": ("contacts.csv", "cp1252", ";"),
    "tsv": ("contacts.tsv", "utf-8", "\t"),
    "csv |": ("contacts.csv", "utf-8", "|"),
}
SPREADSHEETS = {"xlsx": "contacts.xlsx", "xls": "contacts.xls", "ods": "contacts.ods"}
STDIN = {
    "stdin csv utf-8": ("utf-8", ","),
    "stdin cp1252 ;": ("cp1252", ";"),
    "stdin utf-16 tab": ("utf-16", "\t"),
}
FORMATS = [*TEXT, *SPREADSHEETS, *STDIN]


def run_stdin(data: bytes, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """run_cli with bytes on standard input (run_cli's text mode would re-encode them)."""
    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    code, out, err = run(list(args), cwd=cwd, env=env, stdin=data)
    return subprocess.CompletedProcess(list(args), code, out, err)


def dry_run(fmt: str, wd: Path) -> list[dict[str, str]]:
    """`send --dry-run` on the table in format fmt; the results' lines."""
    (wd / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    options = ["-m", "mapping.yaml", "--dry-run", "--results", "out.csv"]
    if fmt in STDIN:
        encoding, delimiter = STDIN[fmt]
        p = run_stdin(csv_bytes(encoding, delimiter), "send", "-", *options, cwd=wd)
        code, out, err = p.returncode, p.stdout.decode(), p.stderr.decode()
    else:
        if fmt in TEXT:
            name, encoding, delimiter = TEXT[fmt]
            (wd / name).write_bytes(csv_bytes(encoding, delimiter))
            source = name
        else:
            source = str(DATA / SPREADSHEETS[fmt])
        r = run_cli("send", source, *options, cwd=wd, key=None)
        code, out, err = r.code, r.stdout, r.stderr
    assert code == 0, f"{fmt}: exit {code}\n{out}{err}"
    assert "Traceback" not in err
    header, lines = read_results(wd / "out.csv")
    assert header[: len(CONTRACT) + 1] == [*CONTRACT, "payload"], header
    return lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """The plain UTF-8 CSV's results: every other format must give the same."""
    return dry_run("csv utf-8", tmp_path_factory.mktemp("reference"))


def test_reference_payloads_are_the_table_as_written(reference: list[dict[str, str]]) -> None:
    assert [line["row"] for line in reference] == ["2", "3", "4", "5", "6"]
    assert [line["status"] for line in reference] == ["ready"] * 5
    assert [json.loads(line["payload"]) for line in reference] == [expected_payload(r) for r in ROWS]
    assert [line["key"] for line in reference] == [f"{DEMO_CAMPAIGN_ID}|{r[0]}" for r in ROWS]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_identical_payloads(fmt: str, tmp_path: Path,
                                               reference: list[dict[str, str]]) -> None:
    lines = dry_run(fmt, tmp_path)

    assert [line["payload"] for line in lines] == [line["payload"] for line in reference]
    assert [(line["row"], line["key"], line["status"], line["error"]) for line in lines] == [
        (line["row"], line["key"], line["status"], line["error"]) for line in reference
    ]
