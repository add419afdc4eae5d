"""``bulksend init CONTACTS``: a commented mapping written for that file (issue 15).

The file is read as ``send`` reads it (reading.py); each column is then given a
place in the POST /request body (collect-api.md §4):

* by its header, in English, French, German, Spanish or Italian (headers.py):
  the contact's email, first and last name, company; the items asked for; the
  due date;
* by its content when no header names the email: the column whose cells look
  like email addresses;
* every other column goes under ``contact.data`` with a camelCase key.

Date-looking columns (the due date and the others) get the strptime format
their cells are written in. The mapping is compiled against the file before it
is written (mapping.parse_mapping), so it passes ``validate`` on that file.
With ``--campaign`` and an API key, GET /campaigns/{id} (§6) lists the
campaign's documents and forms by name in comments.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Final

from bulksend.mapping.evidence import date_text, day_month_swapped, reads, twin_format
from bulksend.mapping.questions import question
from bulksend.reading.sources import open_table
from bulksend.reading.table import Table
from bulksend.tasks.headers import compared, role_of

__all__ = ["Column", "DateFormat", "InitConfig", "Plan", "detect_date", "plan_columns"]

SAMPLES: Final = 500  # cells kept per column to detect emails and dates
# An address as init recognises one in a cell (the mapping's check is
# email-validator's); Google Contacts writes several in one cell: "a ::: b".
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SEVERAL: Final = re.compile(r"\s*:::\s*")
ADDRESS_SHARE: Final = 0.8  # a column holds addresses when this share of its cells are
# Tried in this order, the first of equals preferred. A format with a day/month
# twin (%d/%m/%Y and %m/%d/%Y) is told from it by a row that reads only one way
# (a day above 12); when every date reads both ways, init asks (issue 24).
DATE_FORMATS: Final = (
    "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y/%m/%d", "%d/%m/%y",
    "%m/%d/%y", "%d.%m.%y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
    "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
)
# What any of DATE_FORMATS reads, as a regex: cells of other shapes are not
# tried at all; the formats are then tried as regexes (_FORMAT_RES), strptime
# confirming only the cells that decide (500 columns of 2,000 rows: 11 s
# before, under 3 s now, issue 24).
_DATE_SHAPE: Final = re.compile(r"\d{1,4}([-/.])\d{1,2}\1\d{2,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")
_DIRECTIVES: Final = {"%d": r"(?:0?[1-9]|[12]\d|3[01])", "%m": r"(?:0?[1-9]|1[0-2])", "%Y": r"\d{4}",
                      "%y": r"\d{2}", "%H": r"(?:[01]?\d|2[0-3])", "%M": r"[0-5]\d",
                      "%S": r"(?:[0-5]\d|6[01])"}
_FORMAT_RES: Final = {
    fmt: re.compile("".join(_DIRECTIVES.get(part, re.escape(part)) for part in re.split(r"(%[a-zA-Z])", fmt)))
    for fmt in DATE_FORMATS
}
_SHEET_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2})?")  # a spreadsheet's date cell
_MISSED_SHOWN: Final = 3
# Day and month kept as written when they cannot be told apart: the due date's
# order is asked; another column's dates are sent as the text they are.
MOSTLY: Final = 0.5  # a due-date or items column more rows fill than this is required


@dataclass(frozen=True)
class InitConfig:
    """What ``bulksend init`` was asked: the contacts file and how to read it,
    where to write, and the campaign (with the API to ask about it)."""

    contacts: str
    output: Path
    force: bool = False
    campaign: str | None = None
    api_url: str = "https://api.usecollect.com/v1"
    api_key: str = field(default="", repr=False)  # "" : the campaign's elements are not listed
    sheet: str | int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int | None = None


@dataclass
class Column:
    """One column as read: its header, how many rows fill it or leave it empty,
    and up to SAMPLES of its cells with their row numbers."""

    name: str
    filled: int = 0
    empty: int = 0
    samples: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the row number of each sample

    def mostly_filled(self) -> bool:
        """Whether more than half of the rows fill it (and at least one does)."""
        return self.filled > MOSTLY * (self.filled + self.empty)


@dataclass(frozen=True)
class DateFormat:
    """The strptime ``fmt`` a column's cells are written in; ``ambiguous``: the
    order of day and month is a question (every date reads as day/month and as
    month/day alike, or rows read only one way and others only the other:
    ``conflict``); ``other`` is the twin format; ``misses``: cells it does not
    read (``missed``: the first few, with their rows); ``example``: one cell;
    ``decided``: the first row (and cell) that reads ``fmt`` but not ``other``,
    ``contrary`` one that reads ``other`` but not ``fmt``; ``sheet_dates``:
    cells written YYYY-MM-DD (a spreadsheet's date cells), read as such."""

    fmt: str
    ambiguous: bool
    misses: int
    example: str
    other: str | None = None
    decided: tuple[int, str] | None = None
    contrary: tuple[int, str] | None = None
    missed: tuple[tuple[int, str], ...] = ()
    sheet_dates: int = 0

    @property
    def has_time(self) -> bool:
        """Whether the format reads a time of day (a date-time, not a date)."""
        return "%H" in self.fmt

    @property
    def conflict(self) -> bool:
        """Whether rows read only day first and others only month first."""
        return self.decided is not None and self.contrary is not None

    @property
    def dotted(self) -> bool:
        """A dotted format (06.03.2027) whose order no row decides: day first,
        as dates written with dots are wherever they are so written."""
        return (self.other is not None and day_month_swapped(self.fmt) is None and self.decided is None
                and self.contrary is None)


@dataclass
class Plan:
    """Where each column goes: ``roles`` maps a field (email, firstName, lastName,
    company, items, dueDate) to its column; ``data`` the contact.data keys to
    columns; ``dates`` a column's date format; ``why`` a column's reason."""

    roles: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    dates: dict[str, DateFormat] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    split: str = ";"
    whole_name: bool = False  # firstName holds a whole name (no first-name column)
    # Questions the file does not answer (issue 24): the columns that could be
    # the email (roles["email"] is then "A or B"), and the data columns whose
    # dates read day first and month first alike (kept as text).
    email_choices: list[str] = field(default_factory=list)
    as_text: dict[str, DateFormat] = field(default_factory=dict)
    total: int = 0  # data rows read
    not_due: tuple[str, str] | None = None  # a column named for the due date that holds no date, a cell


def profile(table: Table) -> tuple[int, dict[str, Column]]:
    """Read every row: the number of data rows, and each column's Column."""
    columns = {name: Column(name) for name in table.columns}
    total = 0
    for row in table.rows():
        if row.left_out:
            continue
        total += 1
        for name, column in columns.items():
            cell = row.values.get(name, "").strip()
            if not cell:
                column.empty += 1
                continue
            column.filled += 1
            if len(column.samples) < SAMPLES:
                column.samples.append(cell)
                column.rows.append(row.number)
    return total, columns


def detect_date(samples: list[str], rows: list[int] | None = None, *, due: bool = False) -> DateFormat | None:
    """The format most of ``samples`` (at least 80 %, and a date in every case
    with digits; ``due``: at least one, the column being named for the due
    date) are written in; None when the cells are not dates. ``rows``: each
    sample's row number, for the rows that decide day from month. Full-width
    digits read as digits (evidence.date_text)."""
    cells = [date_text(s) for s in samples]
    if not cells:
        return None
    numbers = rows or [i + 2 for i in range(len(cells))]
    need = 1 if due else max(1, 0.8 * len(cells))
    dated = [i for i, c in enumerate(cells) if _DATE_SHAPE.fullmatch(c)]
    if len(dated) < need:
        return None
    # A spreadsheet's date cell (YYYY-MM-DD) is read whatever the format: it
    # counts for every one, and text dates beside it choose.
    sheet = sum(1 for i in dated if _SHEET_DATE.fullmatch(cells[i]))
    shaped = {fmt: sum(1 for i in dated if _FORMAT_RES[fmt].fullmatch(cells[i])) for fmt in DATE_FORMATS}
    best = max(DATE_FORMATS, key=lambda fmt: shaped[fmt] + (sheet if fmt != "%Y-%m-%d" else 0))
    return judge_dates(best, cells, numbers, need)


def judge_dates(fmt: str, cells: list[str], numbers: list[int], need: float = 1,
                weights: list[int] | None = None) -> DateFormat | None:
    """``cells`` (row ``numbers``) read in ``fmt`` and its day/month twin: the
    format the rows decide (the twin when only it reads some rows), or the
    question; None when fewer than ``need`` cells are dates. ``weights``: how
    many rows each cell stands for (1 each by default), for ``misses``."""
    other = twin_format(fmt)
    only: dict[str, list[int]] = {fmt: [], other or "": []}
    both: list[int] = []
    sheet: list[int] = []
    missed: list[int] = []
    for i, cell in enumerate(cells):
        mine = _reads(cell, fmt)
        theirs = other is not None and _reads(cell, other)
        if mine and theirs:
            both.append(i)
        elif mine or theirs:
            only[fmt if mine else other or ""].append(i)
        elif _SHEET_DATE.fullmatch(cell):
            sheet.append(i)
        else:
            missed.append(i)
    if other is not None and only[other] and not only[fmt]:
        fmt, other = other, fmt  # the rows decide the twin: 6.20.27 is month first
    dated = len(cells) - len(missed)
    if dated < need:
        return None
    decided = (numbers[only[fmt][0]], cells[only[fmt][0]]) if other is not None and only[fmt] else None
    contrary = (numbers[only[other][0]], cells[only[other][0]]) if other is not None and only[other] else None
    ambiguous = other is not None and (contrary is not None or (decided is None and day_month_swapped(fmt)
                                                                 is not None))
    example = cells[min(only[fmt] + both, default=min(sheet, default=0))]
    if ambiguous and decided is None and other is not None:  # one whose readings differ shows it best
        example = next((cells[i] for i in both
                        if datetime.strptime(cells[i], fmt) != datetime.strptime(cells[i], other)), example)
    misses = sum(weights[i] for i in missed) if weights else len(missed)
    return DateFormat(fmt, ambiguous, misses, example, other, decided, contrary,
                      tuple((numbers[i], cells[i]) for i in missed[:_MISSED_SHOWN]), len(sheet))


@functools.lru_cache(maxsize=1 << 16)
def _reads(text: str, fmt: str) -> bool:
    """Whether ``text`` is a date in ``fmt``: its shape first (a regex), then strptime (31/02 is no date)."""
    if not _format_re(fmt).fullmatch(text):
        return False
    return reads(text, fmt)


@functools.lru_cache(maxsize=64)
def _format_re(fmt: str) -> re.Pattern[str]:
    parts = re.split(r"(%[a-zA-Z])", fmt)
    return re.compile("".join(_DIRECTIVES.get(part, re.escape(part)) for part in parts))


def camel_key(header: str) -> str:
    """A contact.data key for a header: ``Date of birth`` → ``dateOfBirth``,
    ``Numéro client`` → ``numeroClient``; "" when no letter or digit is left."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", header) if not unicodedata.combining(c))
    words = [w for w in re.split(r"[^0-9A-Za-z]+", plain) if w]
    if not words:
        return ""
    return words[0].lower() + "".join(w[:1].upper() + w[1:].lower() for w in words[1:])


def plan_columns(columns: dict[str, Column], total: int = 0) -> Plan:
    """Give each column its place: by header (tasks/headers.py), the email by header
    and content (a question when two columns fit, issue 24), the rest under
    contact.data. ``total``: the number of data rows read."""
    plan = Plan(total=total)
    named: dict[str, list[str]] = {}
    for name in columns:
        role = role_of(name)
        if role is not None:
            named.setdefault(role, []).append(name)
    for role in ("firstName", "lastName", "company", "items", "dueDate"):
        if named.get(role):
            plan.roles[role] = named[role][0]
            plan.why[named[role][0]] = "its header"
    _place_names(plan, named)
    _place_email(plan, columns, named.get("email", []))
    _place_dates(plan, columns)
    taken = set(plan.roles.values()) | set(plan.email_choices)
    keys: set[str] = set()  # the data keys given, as compared
    for name in columns:
        if name not in taken:
            plan.data[_unique(camel_key(name) or f"column{len(plan.data) + 1}", keys)] = name
            found = plan.dates.get(name)
            if found is not None and found.has_time:
                plan.dates.pop(name)  # a date-time needs a zone: kept as written
            elif found is not None and found.ambiguous:
                plan.as_text[name] = plan.dates.pop(name)  # day/month unknown: kept as written
    if "items" in plan.roles:
        plan.split = _separator(columns[plan.roles["items"]].samples)
    return plan


def _place_names(plan: Plan, named: dict[str, list[str]]) -> None:
    """``name`` (German Name, French Nom) is the surname beside a first-name
    column, else a whole name; a whole name goes to firstName when no column
    gives the first name (Collect greets a contact by it)."""
    for column in named.get("name", []):
        if "firstName" in plan.roles and "lastName" not in plan.roles:
            plan.roles["lastName"] = column
            plan.why[column] = "its header (the surname, beside a first-name column)"
        else:
            named.setdefault("fullName", []).append(column)
    whole = named.get("fullName", [])
    if whole and "firstName" not in plan.roles:
        plan.roles["firstName"] = whole[0]
        plan.why[whole[0]] = "its header (a whole name: no column gives the first name alone)"
        plan.whole_name = True


def address_share(column: Column) -> float:
    """The share of a column's sampled cells that are email addresses (a Google
    Contacts cell of several, "a ::: b", counts as addresses); 0 when empty."""
    if not column.samples:
        return 0.0
    found = sum(1 for s in column.samples if all(_EMAIL.fullmatch(p) for p in _SEVERAL.split(s)))
    return found / len(column.samples)


def _place_email(plan: Plan, columns: dict[str, Column], named: list[str]) -> None:
    """The contact's email: the column whose header names it and whose cells are
    addresses; else the one column whose cells are (a header ``Email`` that is
    empty does not win over a ``Courriel`` full of addresses); when two fit
    alike, the question "A or B" (questions.py), answered in the mapping."""
    taken = set(plan.roles.values())
    holding = [c.name for c in columns.values() if c.name not in taken and address_share(c) >= ADDRESS_SHARE]
    by_header = [name for name in named if name in holding]
    fuller = [n for n in holding if by_header and not columns[by_header[0]].mostly_filled()
              and n not in by_header and columns[n].filled > columns[by_header[0]].filled]
    if len(by_header) == 1 and fuller:  # named for it, mostly empty; another full of addresses
        _ask_email(plan, [by_header[0], *fuller])
        return
    if len(by_header) == 1:
        chosen, why = by_header[0], "its header, and its cells are email addresses"
    elif len(by_header) > 1:
        _ask_email(plan, by_header)
        return
    elif len(holding) == 1:
        chosen, why = holding[0], "its cells (they are email addresses)"
    elif len(holding) > 1:
        _ask_email(plan, holding)
        return
    elif named:  # no cell to judge by (a file of no rows): the header
        chosen, why = named[0], "its header"
    else:
        return
    unlike = [name for name in named if name != chosen]
    if unlike:
        why += "; " + ", ".join(f'"{n}" {_holds(columns[n])}' for n in unlike)
    also = [name for name in holding if name != chosen and name not in unlike]
    if also:
        why += "; " + ", ".join(f'"{n}" also holds addresses ({columns[n].filled} rows), not used'
                                for n in also)
    plan.roles["email"] = chosen
    plan.why[chosen] = why


def _holds(column: Column) -> str:
    """What a column named for the email holds instead of addresses, for a reason."""
    if not column.filled:
        return "is empty"
    return f"holds no addresses (e.g. {column.samples[0][:30]!r})"


def _ask_email(plan: Plan, names: list[str]) -> None:
    plan.email_choices = names
    plan.roles["email"] = question(names)
    listed = ", ".join(f'"{n}"' for n in names)
    plan.why[plan.roles["email"]] = f"a question: {listed} all hold addresses"


def _place_dates(plan: Plan, columns: dict[str, Column]) -> None:
    """Each column's date format. A column named for the due date stays the
    dueDate when any of its cells is a date (issue 24: never moved to
    contact.data quietly); the cells that fit no format are rows validate
    names invalid. One whose cells hold no date at all is data, and init says so."""
    due = plan.roles.get("dueDate")
    taken = {column for role, column in plan.roles.items() if role != "dueDate"}
    for column in columns.values():
        if column.name not in taken:
            found = detect_date(column.samples, column.rows, due=column.name == due)
            if found is not None:
                plan.dates[column.name] = found
    if due is not None and due not in plan.dates:
        del plan.roles["dueDate"]  # not dates at all: kept as data, and said
        plan.why.pop(due, None)
        cells = columns[due].samples
        plan.not_due = (due, cells[0] if cells else "")


def confirm_dates(table: Table, plan: Plan, columns: dict[str, Column]) -> None:
    """Read the whole file again for the date columns whose samples do not
    tell it all (issue 24): the due date's, and those whose order of day and
    month the first SAMPLES cells left open; one row among thousands decides
    it (or contradicts it), and every cell the due date's format misses is
    counted. Only columns with more rows than samples are read again."""
    due = plan.roles.get("dueDate")
    wanted = {name: found for name, found in {**plan.dates, **plan.as_text}.items()
              if columns[name].filled > len(columns[name].samples)
              and (name == due or found.ambiguous or found.dotted)}
    if not wanted:
        return
    seen: dict[str, dict[str, list[int]]] = {name: {} for name in wanted}  # cell -> [first row, count]
    for row in table.rows():
        if row.left_out:
            continue
        for name, cells in seen.items():
            cell = date_text(row.values.get(name, ""))
            if cell:
                cells.setdefault(cell, [row.number, 0])[1] += 1
    for name, found in wanted.items():
        texts = list(seen[name])
        judged = judge_dates(found.fmt, texts, [seen[name][t][0] for t in texts], 1,
                             [seen[name][t][1] for t in texts])
        if judged is None:
            continue
        plan.as_text.pop(name, None)
        plan.dates.pop(name, None)
        if name != due and judged.ambiguous:
            plan.as_text[name] = judged
        else:
            plan.dates[name] = judged


def _separator(samples: list[str]) -> str:
    for separator in (";", "|", ",", "\n"):
        if any(separator in s for s in samples):
            return separator
    return ";"


def _unique(key: str, taken: set[str]) -> str:
    """``key``, or ``key2``, ``key3``...: the first not in ``taken`` (compared), which it joins."""
    candidate, n = key, 2
    while compared(candidate) in taken:
        candidate, n = f"{key}{n}", n + 1
    taken.add(compared(candidate))
    return candidate


def read_plan(config: InitConfig) -> tuple[Table, int, dict[str, Column], Plan]:
    """Open and read the contacts file and plan its columns; the table is
    returned closed (its header and description stay usable)."""
    with open_table(config.contacts, sheet=config.sheet, encoding=config.encoding,
                    delimiter=config.delimiter, header_row=config.header_row) as table:
        total, columns = profile(table)
        plan = plan_columns(columns, total)
        confirm_dates(table, plan, columns)
    return table, total, columns, plan


def today() -> date:
    """The date written in the mapping's first line (a function, for tests)."""
    return date.today()
