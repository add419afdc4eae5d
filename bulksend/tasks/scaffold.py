"""``bulksend init CONTACTS``: a commented mapping written for that file (issue 15).

The file is read as ``send`` reads it (reading/); each column is then given a
place in the POST /request body (collect-api.md §4):

* by its header, in English, French, German, Spanish or Italian (tasks/headers.py):
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

from bulksend.reading.sources import open_table
from bulksend.reading.table import Table
from bulksend.tasks.headers import compared, role_of

__all__ = ["Column", "DateFormat", "InitConfig", "Plan", "detect_date", "plan_columns"]

SAMPLES: Final = 500  # cells kept per column to detect emails and dates
PLACEHOLDER: Final = "YOUR_CAMPAIGN_ID"
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Tried in this order; a day/month and a month/day format that read every
# cell alike are told apart by a day above 12 (or not at all: day first, the
# order of the languages init knows, and a comment says it is a guess).
DATE_FORMATS: Final = (
    "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%d/%m/%y", "%m/%d/%y",
    "%d.%m.%y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
    "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S",
)
_SWAPPED: Final = {"%d/%m/%Y": "%m/%d/%Y", "%d/%m/%y": "%m/%d/%y", "%d/%m/%Y %H:%M": "%m/%d/%Y %H:%M"}


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
    and up to SAMPLES of its cells."""

    name: str
    filled: int = 0
    empty: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DateFormat:
    """The strptime ``fmt`` a column's cells are written in; ``ambiguous``: they
    read as day/month and as month/day alike; ``misses``: sampled cells it does
    not read; ``example``: one cell."""

    fmt: str
    ambiguous: bool
    misses: int
    example: str

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
    return total, columns


def detect_date(samples: list[str]) -> DateFormat | None:
    """The format most of ``samples`` (at least 80 %, and a date in every case
    with digits) are written in; None when the cells are not dates."""
    if not samples:
        return None
    counts = {fmt: sum(1 for s in samples if _reads(s, fmt)) for fmt in DATE_FORMATS}
    best = max(DATE_FORMATS, key=lambda fmt: counts[fmt])  # the first of equals: the preferred
    if counts[best] < max(1, 0.8 * len(samples)):
        return None
    swapped = _SWAPPED.get(best)
    ambiguous = swapped is not None and counts[swapped] == counts[best]
    example = next(s for s in samples if _reads(s, best))
    return DateFormat(best, ambiguous, len(samples) - counts[best], example)


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


def plan_columns(columns: dict[str, Column]) -> Plan:
    """Give each column its place: by header (tasks/headers.py), the email by content
    when no header names it, the rest under contact.data."""
    plan = Plan()
    named: dict[str, list[str]] = {}
    for name in columns:
        role = role_of(name)
        if role is not None:
            named.setdefault(role, []).append(name)
    for role in ("email", "firstName", "lastName", "company", "items", "dueDate"):
        if named.get(role):
            plan.roles[role] = named[role][0]
            plan.why[named[role][0]] = "its header"
    _place_names(plan, named)
    if "email" not in plan.roles:
        _email_by_content(plan, columns)
    _place_dates(plan, columns)
    taken = set(plan.roles.values())
    for name in columns:
        if name not in taken:
            plan.data[_unique(camel_key(name) or f"column{len(plan.data) + 1}", plan.data)] = name
            if name in plan.dates and plan.dates[name].has_time:
                plan.dates.pop(name)  # a date-time needs a zone: kept as written
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


def _email_by_content(plan: Plan, columns: dict[str, Column]) -> None:
    best, share = None, 0.0
    for column in columns.values():
        if column.name in plan.roles.values() or not column.samples:
            continue
        found = sum(1 for s in column.samples if _EMAIL.fullmatch(s)) / len(column.samples)
        if found > share:
            best, share = column.name, found
    if best is not None and share >= 0.8:
        plan.roles["email"] = best
        plan.why[best] = "its cells (they are email addresses)"


def _place_dates(plan: Plan, columns: dict[str, Column]) -> None:
    taken = {column for role, column in plan.roles.items() if role != "dueDate"}
    for column in columns.values():
        if column.name not in taken:
            found = detect_date(column.samples)
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


def _unique(key: str, taken: dict[str, str]) -> str:
    candidate, n = key, 2
    while candidate in taken or compared(candidate) in {compared(k) for k in taken}:
        candidate, n = f"{key}{n}", n + 1
    return candidate


def read_plan(config: InitConfig) -> tuple[Table, int, dict[str, Column], Plan]:
    """Open and read the contacts file and plan its columns; the table is
    returned closed (its header and description stay usable)."""
    with open_table(config.contacts, sheet=config.sheet, encoding=config.encoding,
                    delimiter=config.delimiter, header_row=config.header_row) as table:
        total, columns = profile(table)
    return table, total, columns, plan_columns(columns)


def today() -> date:
    """The date written in the mapping's first line (a function, for tests)."""
    return date.today()
