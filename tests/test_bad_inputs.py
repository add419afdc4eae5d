"""Bad inputs through the real CLI (issue 3): every one is refused before anything
leaves the machine, with exit 2 and one line a person can act on.

Each case starts from a valid workdir (contacts.csv + mapping.yaml, which
test_the_base_workdir_is_valid_and_sendable sends) and breaks one thing. It then runs

* ``bulksend send`` against the real sandbox, with the key set: exit 2, stderr is
  ``bulksend: error: WHERE: …`` on ONE line (plus an optional ``hint:`` line), or
  click's own usage block for option values click refuses; no "Traceback"; the
  sandbox saw no request at all (no POST, and no GET: the preflight's GET /team
  and GET /campaigns/{id} come after the input is read and mapped);
* ``bulksend validate`` where the case applies to it: the same, with no key.

WHERE is the file the problem is in, and the message also names the row or
the mapping's key path when there is one.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MAPPING, Result, posix_permissions, run_cli

from bulksend.sandbox import Sandbox

READING = Path(__file__).parent / "data" / "reading"

COLUMNS = "Email,First Name,Last Name,Documents,Due"
BASE_ROWS = [
    "ann@example.com,Ann,Archer,,31/03/2026",
    "bob@example.com,Bob,Baker,,01/04/2026",
    "cid@example.com,Cid,Cooper,,15/01/2027",
]
BASE_CONTACTS = "\r\n".join([COLUMNS, *BASE_ROWS]) + "\r\n"
# past: allow: the fixed dates below are past by now, and a past due date is
# otherwise invalid (issue 17); these tests are about other faults.
DUE = 'dueDate: {column: Due, format: "%d/%m/%Y", timezone: Europe/Paris, past: allow}\n'
# What validate says of it, last (issue 17).
DUE_NOTE = ("mapping.yaml: dueDate: a due date with no time is sent as 23:59 that day in Europe/Paris"
            " (the mapping's timezone)")
BASE_MAPPING = MAPPING + DUE
# Lines of BASE_MAPPING, for the line numbers in messages:
#   1 campaignId  2 contact:  3 email  4 firstName  5 lastName  6 items
#   7 sendMessage  8 dueDate
assert BASE_MAPPING.splitlines()[3].strip().startswith("firstName: First Name")
assert BASE_MAPPING.splitlines()[7].startswith("dueDate:")


def write(path: Path, text: str | bytes) -> None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")


def mapping_with(old: str, new: str) -> Callable[[Path], None]:
    """Setup: BASE_MAPPING with one piece of text replaced."""
    assert old in BASE_MAPPING, old

    def setup(wd: Path) -> None:
        write(wd / "mapping.yaml", BASE_MAPPING.replace(old, new, 1))

    return setup


def mapping_text(text: str | bytes) -> Callable[[Path], None]:
    def setup(wd: Path) -> None:
        write(wd / "mapping.yaml", text)

    return setup


def contacts_text(text: str | bytes, name: str = "contacts.csv") -> Callable[[Path], None]:
    def setup(wd: Path) -> None:
        write(wd / name, text)

    return setup


def files(contents: dict[str, str]) -> Callable[[Path], None]:
    def setup(wd: Path) -> None:
        for name, text in contents.items():
            write(wd / name, text)

    return setup


def copy_fixture(source: Path, name: str, size: int | None = None) -> Callable[[Path], None]:
    def setup(wd: Path) -> None:
        data = source.read_bytes()
        write(wd / name, data if size is None else data[:size])

    return setup


def make_dir(name: str) -> Callable[[Path], None]:
    def setup(wd: Path) -> None:
        (wd / name).mkdir()

    return setup


def big_file_with_bad_byte(wd: Path) -> None:
    """3,000 UTF-8 rows (well past the 64 KiB detection sample) and one cp1252
    byte in row 2,801: the read fails there, after thousands of good rows."""
    lines = [COLUMNS.encode()]
    for i in range(3000):
        first = b"Jos\xe9" if i == 2799 else f"Person{i}".encode()
        lines.append(b"person%d@example.com,%s,Tester,,31/03/2026" % (i, first))
    write(wd / "contacts.csv", b"\r\n".join(lines) + b"\r\n")


def nothing(wd: Path) -> None:
    pass


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], None]
    # Substrings of the error line, after "bulksend: error: " (or click's "Error: ").
    expect: tuple[str, ...]
    # The error line starts with "bulksend: error: {where}: ", for one of the wheres given
    # (None: an option error, whose message names the option).
    where: str | tuple[str, ...] | None
    contacts: str = "contacts.csv"
    mapping: str = "mapping.yaml"
    args: tuple[str, ...] = ()  # options for send and validate
    send_args: tuple[str, ...] = ()  # options for send only
    hint: str | None = None  # substring of the "hint:" line, which must then be present
    stdin: str | None = None
    validate: bool = True  # the case applies to `bulksend validate` as well
    click: bool = False  # click refuses it: its usage block, then "Error: …"


CASES: dict[str, Case] = {
    # --- the mapping file ---------------------------------------------------
    "yaml syntax error": Case(
        mapping_with("contact:\n", "contact: [\n"),
        ("line 4: YAML syntax error",), "mapping.yaml"),
    "yaml bad indentation": Case(
        mapping_with("  firstName: First Name\n", "   firstName: First Name\n"),
        ("line 4: YAML syntax error",), "mapping.yaml"),
    "unknown top-level key": Case(
        mapping_with("sendMessage: true", "sendMesage: true"),
        ("line 7, sendMesage: unknown key", '(closest: "sendMessage")'), "mapping.yaml"),
    "missing column, closest named": Case(
        mapping_with("firstName: First Name", "firstName: First Nmae"),
        ('line 4, contact.firstName: column "First Nmae" is not in the file',
         '(closest: "First Name")'), "mapping.yaml"),
    "missing column in a spec": Case(
        mapping_with("{column: Due,", "{column: Dues,"),
        ('line 8, dueDate.column: column "Dues" is not in the file', '(closest: "Due")'),
        "mapping.yaml"),
    "missing column in a template": Case(
        mapping_with("firstName: First Name", 'firstName: {template: "{First} {Last Name}"}'),
        ('line 4, contact.firstName.template: column "First" is not in the file',), "mapping.yaml"),
    "mapping is a list": Case(
        mapping_text("- campaignId\n- contact\n"),
        ("line 1", "expected a mapping of request fields", "found a list"), "mapping.yaml"),
    "mapping is a scalar": Case(
        mapping_text("hello\n"),
        ("line 1", 'found "hello"'), "mapping.yaml"),
    "mapping is empty": Case(
        mapping_text(""), ("the file is empty",), "mapping.yaml"),
    "mapping is only comments": Case(
        mapping_text("# campaignId: x\n\n# contact: Email\n"), ("the file is empty",), "mapping.yaml"),
    "mapping without contact": Case(
        mapping_text("campaignId: {value: xvr69EYLKXvTkfYuk}\nsendMessage: true\n"),
        ("contact: is missing",), "mapping.yaml"),
    "unknown type": Case(
        mapping_with("lastName: {column: Last Name,", "lastName: {column: Last Name, type: strng,"),
        ('line 5, contact.lastName.type: unknown type "strng"', '(closest: "string")'), "mapping.yaml"),
    "type does not fit the field": Case(
        mapping_with("lastName: {column: Last Name,", "lastName: {column: Last Name, type: int,"),
        ("line 5, contact.lastName.type: type int does not fit this field",), "mapping.yaml"),
    "unknown spec option": Case(
        mapping_with("required: false}", "requird: false}"),
        ('line 5, contact.lastName.requird: unknown option', '(closest: "required")'), "mapping.yaml"),
    "unknown contact field": Case(
        mapping_with("  email: Email\n", "  email: Email\n  phone: First Name\n"),
        ("line 4, contact.phone: not a contact field",), "mapping.yaml"),
    "bad timezone": Case(
        mapping_with("timezone: Europe/Paris", "timezone: Europe/Pariss"),
        ('line 8, dueDate.timezone: unknown time zone "Europe/Pariss"', '(closest: "Europe/Paris")'),
        "mapping.yaml"),
    "format on a non-date": Case(
        mapping_with("firstName: First Name", 'firstName: {column: First Name, format: "%d/%m/%Y"}'),
        ("line 4, contact.firstName.format: applies to type date or datetime, not string",),
        "mapping.yaml"),
    "format that is not strptime": Case(
        mapping_with('format: "%d/%m/%Y"', 'format: "%d/%m/%Q"'),
        ("line 8, dueDate.format: is not a strptime format",), "mapping.yaml"),
    "constant email is not an email": Case(
        mapping_with("  email: Email\n", "  email: {value: not-an-email}\n"),
        ('line 3, contact.email: "not-an-email" is not an email address',), "mapping.yaml"),
    "key path that is not a field": Case(
        mapping_with("sendMessage: true\n", "sendMessage: true\nkey: [campaignId, contact.mail]\n"),
        ('line 8, key: "contact.mail" is not a field of this mapping', '(closest: "contact.email")'),
        "mapping.yaml"),
    "key repeated in the mapping": Case(
        mapping_with("sendMessage: true\n", "sendMessage: true\nsendMessage: false\n"),
        ("line 8, sendMessage: appears twice",), "mapping.yaml"),
    "every problem at once": Case(
        mapping_text(BASE_MAPPING.replace("firstName: First Name", "firstName: First Nmae")
                     .replace("sendMessage: true", "sendMesage: true")
                     .replace("Europe/Paris", "Europe/Pariss")),
        ("3 problems", "contact.firstName", "sendMesage", "dueDate.timezone"), "mapping.yaml"),
    "mapping not in UTF-8": Case(
        mapping_text(BASE_MAPPING.replace("{column: Last Name,", "{column: Last Name, default: Müller,")
                     .encode("cp1252")),
        ("line 5: not UTF-8 text (byte 0xfc)",), "mapping.yaml"),
    "mapping is a spreadsheet": Case(
        copy_fixture(READING / "contacts.xlsx", "mapping.xlsx"),
        ("line 1: not UTF-8 text",), "mapping.xlsx", mapping="mapping.xlsx"),
    "mapping is a directory": Case(
        make_dir("mappings"), ("is a directory",), "mappings", mapping="mappings"),
    "mapping file missing": Case(
        nothing, ("file not found",), "nope.yaml", mapping="nope.yaml"),
    "mapping path through a file": Case(
        nothing, ("cannot be read", "Not a directory"), "mapping.yaml/x.yaml", mapping="mapping.yaml/x.yaml"),
    # --- the contacts file --------------------------------------------------
    "contacts file missing": Case(
        nothing, ("no such file",), "nope.csv", contacts="nope.csv"),
    "contacts is a directory": Case(
        make_dir("export.csv"), ("is a directory, not a file",), "export.csv", contacts="export.csv"),
    "contacts .xlsx is a directory": Case(
        make_dir("export.xlsx"), ("is a directory, not a file",), "export.xlsx", contacts="export.xlsx"),
    "contacts path through a file": Case(
        nothing, ("cannot open", "Not a directory"), "contacts.csv/x.csv", contacts="contacts.csv/x.csv"),
    "contacts is a dangling symlink": Case(
        lambda wd: os.symlink(wd / "gone.csv", wd / "link.csv"), ("no such file",), "link.csv",
        contacts="link.csv"),
    "empty contacts file": Case(
        contacts_text(""), ("the file is empty",), "contacts.csv", hint="header row"),
    "contacts file of blank lines": Case(
        contacts_text("\r\n  \r\n,,,\r\n"), ("the file is empty",), "contacts.csv"),
    "empty stdin": Case(
        nothing, ("the file is empty",), "<stdin>", contacts="-", stdin=""),
    "binary contacts file": Case(
        contacts_text(bytes(range(256)) * 8), ("looks like a binary file, not CSV",), "contacts.csv"),
    "spreadsheet saved as .csv": Case(
        copy_fixture(READING / "contacts.xlsx", "contacts.csv"),
        ("looks like a binary file",), "contacts.csv", hint=".xlsx"),
    "text file saved as .xlsx": Case(
        contacts_text(BASE_CONTACTS, "contacts.xlsx"),
        ("is not a spreadsheet (.xlsx): it looks like a text file",), "contacts.xlsx",
        contacts="contacts.xlsx", hint="rename it to .csv"),
    "truncated .xlsx": Case(
        copy_fixture(READING / "contacts.xlsx", "contacts.xlsx", size=3000),
        ("cannot be read as a spreadsheet (.xlsx)",), "contacts.xlsx", contacts="contacts.xlsx"),
    "empty .xlsx": Case(
        contacts_text(b"", "contacts.xlsx"), ("the file is empty",), "contacts.xlsx",
        contacts="contacts.xlsx"),
    "wrong sheet name": Case(
        copy_fixture(READING / "contacts.xlsx", "contacts.xlsx"),
        ('no sheet "Clients"', 'its sheets are "Contacts", "Layout"'), "contacts.xlsx",
        contacts="contacts.xlsx", args=("--sheet", "Clients")),
    "sheet number out of range": Case(
        copy_fixture(READING / "contacts.ods", "contacts.ods"),
        ("no sheet 3", '"Contacts", "Layout"'), "contacts.ods", contacts="contacts.ods",
        args=("--sheet", "3")),
    # Issue 13, case 9: a repeated or blank header name is refused only when the
    # mapping uses it (a blank one it cannot: tests/test_sheets_wild.py reads it).
    "duplicate header names": Case(
        contacts_text(BASE_CONTACTS.replace(COLUMNS, COLUMNS + ",Email").replace(
            "2026\r\n", "2026,x\r\n").replace("2027\r\n", "2027,x\r\n")),
        ('line 3, contact.email: column "Email" is ambiguous: the file has it on columns 1, 6',),
        "mapping.yaml"),
    "unclosed quote": Case(
        contacts_text(BASE_CONTACTS.replace("bob@example.com,Bob,", 'bob@example.com,"Bob,')),
        ('row 3: a quote (") opened on this row is never closed',), "contacts.csv"),
    "bad byte mid-file": Case(
        big_file_with_bad_byte, ("row 2801: byte 0xE9 cannot be read as UTF-8 text",), "contacts.csv",
        hint="--encoding cp1252"),
    "constant sample that is not {itemId, url}": Case(
        mapping_with("sendMessage: true\n", "sendMessage: true\nsample: {value: 3}\n"),
        ("line 8, sample",), "mapping.yaml"),
    "constant contact without email": Case(
        mapping_with("contact:\n  email: Email\n  firstName: First Name\n"
                     "  lastName: {column: Last Name, required: false}\n",
                     "contact: {value: {firstName: Ann}}\n"),
        ("line 2, contact", "email"), "mapping.yaml"),
    "constant contact with a field the API does not take": Case(
        mapping_with("contact:\n  email: Email\n  firstName: First Name\n"
                     "  lastName: {column: Last Name, required: false}\n",
                     "contact: {value: {email: ann@example.com, phone: '+33 1 23 45 67 89'}}\n"),
        ("line 2, contact", "phone"), "mapping.yaml"),
    "cp1252 file read as --encoding utf-8": Case(
        contacts_text(BASE_CONTACTS.replace("Bob", "Zoë").encode("cp1252")),
        ("row 3: byte 0xEB cannot be read as UTF-8 text",), "contacts.csv",
        args=("--encoding", "utf-8")),
    # --- input options ------------------------------------------------------
    "--delimiter of 3 characters": Case(
        nothing, ("cannot use ';;;' as the delimiter",), "contacts.csv", args=("--delimiter", ";;;")),
    "--delimiter empty": Case(
        nothing, ("cannot use '' as the delimiter",), "contacts.csv", args=("--delimiter", "")),
    "--sheet on a CSV": Case(
        nothing, ("is a text file and has no sheets",), "contacts.csv", args=("--sheet", "Contacts")),
    "--sheet on stdin": Case(
        nothing, ("standard input is read as CSV, it has no sheets",), "<stdin>", contacts="-",
        stdin=BASE_CONTACTS, args=("--sheet", "1")),
    "--encoding nonsense": Case(
        nothing, ("unknown encoding 'nonsense'",), "contacts.csv", args=("--encoding", "nonsense")),
    "--encoding utf-16 on a UTF-8 file (no BOM)": Case(
        nothing, (), ("contacts.csv", "mapping.yaml"), args=("--encoding", "utf-16")),
    "--encoding that is not a text encoding": Case(
        nothing, ("hex",), "contacts.csv", args=("--encoding", "hex")),
    "--encoding idna": Case(
        nothing, ("idna",), "contacts.csv", args=("--encoding", "idna")),
    # --- send options (validate has none of these) --------------------------
    "--rate abc": Case(
        nothing, ("--rate 'abc': not a rate",), None, send_args=("--rate", "abc"), validate=False),
    "--rate negative": Case(
        nothing, ("--rate '-5/s': not a rate",), None, send_args=("--rate", "-5/s"), validate=False),
    "--concurrency 0": Case(
        nothing, ("Invalid value for '--concurrency' / '-c': 0 is not in the range 1<=x<=256",), None,
        send_args=("--concurrency", "0"), validate=False, click=True),
    "--concurrency abc": Case(
        nothing, ("Invalid value for '--concurrency' / '-c': 'abc' is not a valid integer",), None,
        send_args=("--concurrency", "abc"), validate=False, click=True),
    "--timeout -1": Case(
        nothing, ("Invalid value for '--timeout': -1.0 is not in the range 0.1<=x<=600",), None,
        send_args=("--timeout", "-1"), validate=False, click=True),
    "--max-attempts 0": Case(
        nothing, ("Invalid value for '--max-attempts': 0 is not in the range 1<=x<=100",), None,
        send_args=("--max-attempts", "0"), validate=False, click=True),
    "--limit -1": Case(
        nothing, ("Invalid value for '--limit': -1 is not in the range x>=0",), None,
        send_args=("--limit", "-1"), validate=False, click=True),
    "--log-format xml": Case(
        nothing, ("Invalid value for '--log-format': 'xml' is not one of 'text', 'json'",), None,
        send_args=("--log-format", "xml"), validate=False, click=True),
    "http:// API URL to a remote host": Case(
        nothing, ("--api-url 'http://api.example.com/v1': plain http would send the API key unencrypted",),
        None, send_args=("--api-url", "http://api.example.com/v1"), validate=False, hint="loopback"),
    "http:// API URL to a host named like localhost": Case(
        nothing, ("--api-url 'http://localhost.example.com/v1': plain http",), None,
        send_args=("--api-url", "http://localhost.example.com/v1"), validate=False),
    "API URL that is not http": Case(
        nothing, ("--api-url 'ftp://127.0.0.1/v1': not an http(s) URL",), None,
        send_args=("--api-url", "ftp://127.0.0.1/v1"), validate=False),
    "results path is a directory": Case(
        make_dir("out"), ("is a directory",), "out", send_args=("--results", "out"), validate=False,
        hint="--results"),
    "results in a folder that does not exist": Case(
        nothing, ("the folder nodir does not exist",), "nodir/out.csv",
        send_args=("--results", "nodir/out.csv"), validate=False),
    "results is a CSV that is not a results file": Case(
        contacts_text("Name,Amount\r\nkeep me,42\r\n", "ledger.csv"),
        ("not a bulksend results file",), "ledger.csv", send_args=("--results", "ledger.csv"),
        validate=False),
    "results is a spreadsheet": Case(
        copy_fixture(READING / "contacts.xlsx", "book.xlsx"), (), "book.xlsx",
        send_args=("--results", "book.xlsx"), validate=False),
    "results is a Windows-1252 CSV": Case(
        contacts_text("Name,City\r\nJosé,Besançon\r\n".encode("cp1252"), "ledger.csv"), (), "ledger.csv",
        send_args=("--results", "ledger.csv"), validate=False),
    "results is the contacts file": Case(
        nothing, (), "contacts.csv", send_args=("--results", "contacts.csv"), validate=False),
    "dry-run results is the contacts file": Case(
        nothing, (), "contacts.csv", send_args=("--dry-run", "--results", "contacts.csv"),
        validate=False),
    "dry run over a real run's results": Case(
        files({"real.csv": "", "real.csv.journal": ""}),
        ("holds the results of a real run",), "real.csv",
        send_args=("--dry-run", "--results", "real.csv"), validate=False),
    "API key file missing": Case(
        nothing, ("cannot read the API key file",), "nokey.txt",
        send_args=("--api-key-file", "nokey.txt"), validate=False),
    "API key file empty": Case(
        contacts_text("\n", "key.txt"), ("the API key file is empty",), "key.txt",
        send_args=("--api-key-file", "key.txt"), validate=False),
    "--api-key on the command line": Case(
        nothing, ("--api-key is refused",), None, send_args=("--api-key", "test-key-0123"),
        validate=False, click=True),
}


def setup_workdir(wd: Path, case: Case) -> None:
    write(wd / "contacts.csv", BASE_CONTACTS)
    write(wd / "mapping.yaml", BASE_MAPPING)
    case.setup(wd)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file under root and its bytes (None for a folder). Lock files are left
    out: a run keeps its results file's .lock on purpose (see results.RunLock)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        if path.name.endswith(".lock"):
            continue
        if path.is_symlink() and not path.exists():
            found[str(path.relative_to(root))] = b"<dangling>"
        else:
            found[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return found


def assert_nothing_reached(sandbox: Sandbox, r: Result | None = None) -> None:
    """The sandbox saw no request at all: no POST, no GET (not even the preflight's)."""
    stats = sandbox.stats
    told = "" if r is None else f"\nexit {r.code}\n{r.stdout}{r.stderr}"
    assert sum(stats["post_request"].values()) == 0, f"{stats['post_request']}{told}"
    assert sum(stats["post_requests"].values()) == 0, f"{stats['post_requests']}{told}"
    assert stats["gets"] == 0, f"{stats['get']}{told}"
    assert sum(stats["other"].values()) == 0, f"{stats['other']}{told}"
    assert sandbox.created == []


def assert_refused(r: Result, case: Case, command: str) -> None:
    """Exit 2, the case's one-line message, and nothing else on standard error."""
    err = r.stderr
    assert "Traceback" not in err, err
    assert r.code == 2, f"exit {r.code}\n{err}"
    lines = err.splitlines()
    if case.click:
        # click's own usage block: exactly these four lines.
        assert lines[:3] == [f"Usage: bulksend {command} [OPTIONS] CONTACTS",
                             f"Try 'bulksend {command} --help' for help.", ""], err
        assert len(lines) == 4 and lines[3].startswith("Error: "), err
        for part in case.expect:
            assert part in lines[3], err
        return
    errors = [line for line in lines if line.startswith("bulksend: error: ")]
    assert len(errors) == 1, err
    # Several mapping problems: one per line under the error, each with its line number (issue 15).
    problems = [line for line in lines if line.startswith("  ")]
    assert all(re.match(r"  line \d+(, |: )", line) for line in problems), err
    assert lines[1:1 + len(problems)] == problems, err
    lines = [lines[0], *lines[1 + len(problems):]]
    message = " ".join([errors[0].removeprefix("bulksend: error: "), *(p.strip() for p in problems)])
    if case.where is not None:
        wheres = (case.where,) if isinstance(case.where, str) else case.where
        assert message.startswith(tuple(f"{w}: " for w in wheres)), message
    for part in case.expect:
        assert part in message, message
    hints = [line for line in lines if line.startswith("hint: ")]
    if case.hint is not None:
        assert len(hints) == 1 and case.hint in hints[0], err
    # The message is all there is: its line first, at most a hint after it.
    assert lines[0] == errors[0], f"standard error does not start with the error:\n{err}"
    assert lines[1:] == hints and len(hints) <= 1, err


@pytest.mark.parametrize("name", CASES)
def test_send_refuses_bad_input_before_any_request(name: str, tmp_path: Path, sandbox: Sandbox) -> None:
    case = CASES[name]
    setup_workdir(tmp_path, case)
    args = ["send", case.contacts, "-m", case.mapping, *case.args]
    if "--results" not in case.send_args:
        args += ["--results", "results.csv"]
    if "--api-url" not in case.send_args:
        args += ["--api-url", sandbox.url]
    before = snapshot(tmp_path)
    r = run_cli(*args, "--rate", "none", *case.send_args, cwd=tmp_path, stdin=case.stdin)

    assert_nothing_reached(sandbox, r)
    # Nothing written, nothing changed: no results, no journal, the inputs intact.
    assert snapshot(tmp_path) == before, f"exit {r.code}\n{r.stdout}{r.stderr}"
    assert_refused(r, case, "send")
    assert r.stdout == "", r.stdout


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.validate])
def test_validate_refuses_bad_input(name: str, tmp_path: Path, sandbox: Sandbox) -> None:
    case = CASES[name]
    setup_workdir(tmp_path, case)
    r = run_cli("validate", case.contacts, "-m", case.mapping, *case.args, cwd=tmp_path, key=None,
                stdin=case.stdin, env={"COLLECT_API_URL": sandbox.url})

    assert_nothing_reached(sandbox, r)
    assert_refused(r, case, "validate")
    assert r.stdout == "", r.stdout


@posix_permissions
@pytest.mark.parametrize("command", ["send", "validate"])
@pytest.mark.parametrize("what", ["contacts", "mapping"])
def test_unreadable_file(what: str, command: str, tmp_path: Path, sandbox: Sandbox) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a chmod 000 file; see the 'path through a file' cases instead")
    write(tmp_path / "contacts.csv", BASE_CONTACTS)
    write(tmp_path / "mapping.yaml", BASE_MAPPING)
    target = tmp_path / ("contacts.csv" if what == "contacts" else "mapping.yaml")
    target.chmod(0)
    extra = ["--results", "results.csv", "--api-url", sandbox.url] if command == "send" else []
    try:
        r = run_cli(command, "contacts.csv", "-m", "mapping.yaml", *extra, cwd=tmp_path)
    finally:
        target.chmod(0o644)
    case = Case(nothing, ("permission denied",), target.name)
    assert_refused(r, case, command)
    assert_nothing_reached(sandbox)


def test_the_base_workdir_is_valid_and_sendable(tmp_path: Path, sandbox: Sandbox) -> None:
    """The corpus breaks one thing each: unbroken, the same files send fine."""
    setup_workdir(tmp_path, Case(nothing, (), None))
    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"{READ}\ncontacts.csv: 3 rows: 3 valid, 0 invalid, 0 duplicate")

    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                "--api-url", sandbox.url, "--rate", "none", "--no-progress", cwd=tmp_path)

    assert r.code == 0, r.stdout + r.stderr
    assert sorted(c["email"] for c in sandbox.created) == [
        "ann@example.com", "bob@example.com", "cid@example.com"]
    assert {c["received"]["dueDate"] for c in sandbox.created} == {
        "2026-03-31T23:59:00+02:00", "2026-04-01T23:59:00+02:00", "2027-01-15T23:59:00+01:00"}


@pytest.mark.parametrize("results", ["ledger.csv", "contacts.csv"])
def test_a_refused_results_file_is_still_refused_on_the_rerun(results: str, tmp_path: Path,
                                                              sandbox: Sandbox) -> None:
    """--results naming a CSV that is not a results file (another export, or the
    contacts file itself) is refused; the same command run again must be refused
    again, not overwrite that file."""
    setup_workdir(tmp_path, Case(nothing, (), None))
    write(tmp_path / "ledger.csv", "Name,Amount\r\nkeep me,42\r\n")
    before = snapshot(tmp_path)
    inputs = {name: before[name] for name in ("contacts.csv", "ledger.csv")}
    for attempt in (1, 2):
        r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", results,
                    "--api-url", sandbox.url, "--rate", "none", cwd=tmp_path)
        assert r.code == 2, f"attempt {attempt}: exit {r.code}\n{r.stdout}{r.stderr}"
        assert f"bulksend: error: {results}: " in r.stderr, r.stderr
        assert {name: (tmp_path / name).read_bytes() for name in inputs} == inputs, attempt
        assert_nothing_reached(sandbox)
    assert snapshot(tmp_path) == before  # and no journal left behind by the refusal


# --- validate: invalid rows are listed, the file is not refused ------------------

# What validate says it read, before the counts (issue 13), and the order of
# day and month with the row that decides it (issue 24: every choice shown with its evidence).
READ = ('read contacts.csv: CSV, encoding UTF-8 (detected), delimiter "," (detected), header on row 1\n'
        '  guessed: column "Due": dates read day first (format %d/%m/%Y): row 2 ("31/03/2026") reads no'
        " other way")

SOME_INVALID = "\r\n".join([
    COLUMNS,
    "ann@example.com,Ann,Archer,,31/03/2026",  # 2 valid
    "bob@example.com,Bob,Baker,,31/02/2026",  # 3 no 31 February
    "cid@example,Cid,Cooper,,15/01/2027",  # 4 not an email
    ",Dan,Dunn,,15/01/2027",  # 5 no email
    "ANN@example.com,Ann,Again,,01/04/2026",  # 6 same key as row 2
    "eve@example.com,Eve,,,01/04/2026",  # 7 valid (Last Name is optional)
]) + "\r\n"
PROBLEMS = [
    'contacts.csv: row 3: invalid: column "Due": "31/02/2026" is not a date in format %d/%m/%Y',
    'contacts.csv: row 4: invalid: column "Email": "cid@example" is not an email address',
    'contacts.csv: row 5: invalid: column "Email" is empty (required)',
    "contacts.csv: row 6: duplicate: same key as row 2 (xvr69EYLKXvTkfYuk|ann@example.com)",
]


def test_validate_lists_invalid_rows_and_exits_1(tmp_path: Path, sandbox: Sandbox) -> None:
    setup_workdir(tmp_path, Case(contacts_text(SOME_INVALID), (), None))
    before = snapshot(tmp_path)

    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None,
                env={"COLLECT_API_URL": sandbox.url})

    assert r.code == 1, r.stdout + r.stderr
    assert r.stderr == ""
    counts = "contacts.csv: 6 rows: 2 valid, 3 invalid, 1 duplicate"
    assert r.stdout.splitlines() == [*READ.splitlines(), counts, *PROBLEMS, DUE_NOTE]
    assert snapshot(tmp_path) == before  # validate writes nothing
    assert_nothing_reached(sandbox)


def test_validate_show_limits_the_listed_problems(tmp_path: Path) -> None:
    setup_workdir(tmp_path, Case(contacts_text(SOME_INVALID), (), None))

    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", "--show", "2", cwd=tmp_path, key=None)

    assert r.code == 1
    assert r.stdout.splitlines() == [
        *READ.splitlines(), "contacts.csv: 6 rows: 2 valid, 3 invalid, 1 duplicate", *PROBLEMS[:2],
        "... and 2 more (--show N to list more, or send --dry-run for all)", DUE_NOTE,
    ]


def test_validate_exits_0_when_every_row_is_valid(tmp_path: Path, sandbox: Sandbox) -> None:
    setup_workdir(tmp_path, Case(nothing, (), None))
    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None,
                env={"COLLECT_API_URL": sandbox.url})
    assert (r.code, r.stdout, r.stderr) == (
        0, f"{READ}\ncontacts.csv: 3 rows: 3 valid, 0 invalid, 0 duplicate\n{DUE_NOTE}\n", "")
    assert_nothing_reached(sandbox)


def test_validate_names_spreadsheet_rows(tmp_path: Path) -> None:
    """Row numbers are the sheet's own: contacts.xlsx's row 5 has no Due date."""
    shutil.copy(READING / "contacts.xlsx", tmp_path / "contacts.xlsx")
    write(tmp_path / "mapping.yaml",
          f"{MAPPING.split(chr(10))[0]}\ncontact: {{email: Email, firstName: First Name}}\n"
          "dueDate: {column: Due, past: allow}\n")  # the sheet's dates are fixed, and past by now

    r = run_cli("validate", "contacts.xlsx", "-m", "mapping.yaml", "--sheet", "Contacts", cwd=tmp_path,
                key=None)

    assert r.code == 1, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        'read contacts.xlsx: XLSX, sheet "Contacts", header on row 1',
        "contacts.xlsx: 5 rows: 4 valid, 1 invalid, 0 duplicate",
        'contacts.xlsx: row 5: invalid: column "Due" is empty (required)',
        "mapping.yaml: dueDate: a due date with no time is sent as 23:59 that day in the team's time zone,"
        " read from GET /team when sending (no timezone in the mapping; until then it is shown without an"
        " offset)",
    ]
