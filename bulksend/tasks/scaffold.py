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

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Final

from bulksend.mapping.evidence import day_month_swapped
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
    """The strptime ``fmt`` a column's cells are written in; ``ambiguous``: they
    read as day/month and as month/day alike (``other`` is the twin format);
    ``misses``: sampled cells it does not read; ``example``: one cell;
    ``decided``: the first row (and cell) that reads ``fmt`` but not ``other``."""

    fmt: str
    ambiguous: bool
    misses: int
    example: str
    other: str | None = None
    decided: tuple[int, str] | None = None

    @property
    def has_time(self) -> bool:
        """Whether the format reads a time of day (a date-time, not a date)."""
        return "%H" in self.fmt


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


def detect_date(samples: list[str], rows: list[int] | None = None) -> DateFormat | None:
    """The format most of ``samples`` (at least 80 %, and a date in every case
    with digits) are written in; None when the cells are not dates. ``rows``:
    each sample's row number, for the row that decides day from month."""
    if not samples:
        return None
    dated = [i for i, s in enumerate(samples) if _DATE_SHAPE.fullmatch(s)]
    if len(dated) < max(1, 0.8 * len(samples)):
        return None
    shaped = {fmt: [i for i in dated if _FORMAT_RES[fmt].fullmatch(samples[i])] for fmt in DATE_FORMATS}
    best = max(DATE_FORMATS, key=lambda fmt: len(shaped[fmt]))  # the first of equals: the preferred
    reads = {best: [i for i in shaped[best] if _reads(samples[i], best)]}  # 31/02 is no date
    if len(reads[best]) < max(1, 0.8 * len(samples)):
        return None
    other = day_month_swapped(best)
    decided = None
    if other is not None:
        only = next((i for i in reads[best] if not _reads(samples[i], other)), None)
        if only is not None:
            decided = ((rows[only] if rows else only + 2), samples[only])
    ambiguous = other is not None and decided is None
    example = samples[reads[best][0]]
    if ambiguous and other is not None:  # one whose two readings differ shows the question best
        example = next((samples[i] for i in reads[best]
                        if datetime.strptime(samples[i], best) != datetime.strptime(samples[i], other)),
                       example)
    return DateFormat(best, ambiguous, len(samples) - len(reads[best]), example, other, decided)


def _reads(text: str, fmt: str) -> bool:
    try:
        datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


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
    taken = {column for role, column in plan.roles.items() if role != "dueDate"}
    for column in columns.values():
        if column.name not in taken:
            found = detect_date(column.samples, column.rows)
            if found is not None:
                plan.dates[column.name] = found
    due = plan.roles.get("dueDate")
    if due is not None and due not in plan.dates:
        del plan.roles["dueDate"]  # not dates after all: kept as data
        plan.why.pop(due, None)


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
    return table, total, columns, plan_columns(columns, total)


def today() -> date:
    """The date written in the mapping's first line (a function, for tests)."""
    return date.today()
