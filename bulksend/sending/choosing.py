"""Which rows go out this run: ``--where`` and the do-not-contact lists (issue 28).

``--where COLUMN=V1,V2`` (mapping/where.py, the grammar ``update --where``
reads) sends only the rows whose cell is one of the values; the others are
recorded ``filtered``. ``--exclude FILE`` (and a mapping's ``exclude:``) names a
do-not-contact list: a CSV (or any table bulksend reads) with an email column,
or one address a line; a row whose contact's email is on it is recorded
``excluded``, naming the file. Emails are compared as the key compares them:
each address of the list is read as the mapping reads an email column
(mapping/converters.py: invisible characters removed, the normal form of one
written with other characters), then both sides ignore case.

Neither status is final. The feeder (sending/feeder.py) records such a row
without claiming its key in the journal, so the journal keeps what it knew (a
key never sent, or failed) and a later run without the option sends it, once;
a row whose key an earlier run sent (or may have) keeps that record instead,
request id and all, since the results file is where ``status`` and ``update``
find it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulksend.common.errors import InputError
from bulksend.mapping.converters import converter
from bulksend.mapping.problems import RowError, quote
from bulksend.mapping.where import ColumnWhere
from bulksend.reading.cells import normal_name

if TYPE_CHECKING:
    from bulksend.mapping.compiled import Mapping
    from bulksend.reading.table import Table
    from bulksend.settings import Mode

# Header names of a list's email column, compared without case, spaces or dashes.
_EMAIL_HEADERS = frozenset({"email", "emails", "mail", "emailaddress", "mailaddress", "courriel",
                            "adressemail", "adresseemail", "correo", "correoelectronico"})


@dataclass(frozen=True)
class DoNotContact:
    """One do-not-contact list: its file (as named), who named it, the
    addresses (as the key compares them) and the lines that hold none."""

    path: str
    origin: str  # "--exclude", or "mapping.yaml's exclude"
    emails: frozenset[str]
    ignored: tuple[int, ...] = ()  # line numbers of cells that are not email addresses

    def note(self) -> str:
        """What the list holds, for the run's messages."""
        text = f"{self.path} ({self.origin}): {len(self.emails)} address(es) not contacted"
        if self.ignored:
            lines = ", ".join(str(n) for n in self.ignored[:3]) + (", …" if len(self.ignored) > 3 else "")
            text += f"; {len(self.ignored)} line(s) that are not email addresses ignored (lines {lines})"
        return text


def read_list(path: str, origin: str) -> DoNotContact:
    """Read a do-not-contact list: any file bulksend reads as a table (CSV,
    .xlsx, …) with one column named like ``email`` (or ``E-mail``, ``Email
    address``, ``courriel``), or a text file of one address a line (no
    header; blank lines and ``#`` comments skipped). Raises InputError (exit
    2, nothing sent) for a file that cannot be read, is empty (a list of no one
    is a header alone: an empty file may be a failed export) or holds no such column."""
    from bulksend.reading.sources import open_table

    with contextlib.suppress(OSError):  # a file that cannot be read: open_table says why
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: the do-not-contact list ({origin}) is empty; nothing was sent",
                             hint="a list of no one is its header line alone (email): an empty file may "
                                  "be an export that failed, and sending would reach the people on it")
    try:
        table = open_table(path)
    except InputError as exc:
        raise InputError(f"do-not-contact list ({origin}): {exc.message}", hint=exc.hint) from None
    with table:
        column = _email_column(table.columns)
        cells: list[tuple[int, str]] = []
        if column is None:
            if len(table.columns) != 1 or not ("@" in table.columns[0] or table.columns[0].startswith("#")):
                shown = ", ".join(quote(c) for c in table.columns[:8])
                raise InputError(
                    f"{path}: a do-not-contact list ({origin}) needs a column named email, or one "
                    f"address a line; its header has {shown}",
                    hint="name the column of addresses email, or list one address a line with no header")
            column = table.columns[0]
            cells.append((table.header_row, column))  # one address a line: the "header" is one (or a comment)
        cells.extend((row.number, row.values.get(column, "")) for row in table.rows())
    return _addresses(path, origin, cells)


def _email_column(columns: list[str]) -> str | None:
    """The one column named like an email column, or None."""
    named = [c for c in columns
             if "".join(ch for ch in normal_name(c).casefold() if ch.isalnum()) in _EMAIL_HEADERS]
    return named[0] if len(named) == 1 else None


def _addresses(path: str, origin: str, cells: list[tuple[int, str]]) -> DoNotContact:
    """The list's addresses as the key compares emails (the mapping's email
    converter, then lower case); cells that are none are noted, not fatal: an
    address a row could be sent to is always one the converter accepts."""
    read = converter("", "email", ",", None, None)
    assert read is not None
    emails: set[str] = set()
    ignored: list[int] = []
    for number, cell in cells:
        text = cell.strip()
        if not text or text.startswith("#"):
            continue
        try:
            emails.add(str(read(text)).lower())
        except RowError:
            ignored.append(number)
    return DoNotContact(path, origin, frozenset(emails), tuple(ignored))


def contact_email(payload: MappingABC[str, Any]) -> str | None:
    """The email a payload's contact is sent with, as the key compares it; None for a contact id."""
    contact = payload.get("contact")
    if isinstance(contact, MappingABC):
        email = contact.get("email")
        if isinstance(email, str) and email:
            return email.lower()
    return None


@dataclass
class Choice:
    """This run's ``--where`` and do-not-contact lists (see the module's docstring)."""

    where: ColumnWhere | None = None
    lists: tuple[DoNotContact, ...] = ()
    notes: list[str] = field(default_factory=list)  # what each option does, for the top of the run

    def filtered(self, cells: MappingABC[str, str]) -> str | None:
        """The results' error for a row outside ``--where``; None when it is to be sent."""
        if self.where is None or self.where.matches(cells):
            return None
        return self.where.why_not(cells)

    def excluded(self, payload: MappingABC[str, Any]) -> str | None:
        """The results' error for a row whose contact is on a list; None when it may be
        sent. A contact given by id cannot be compared: it is not sent (the lists' point)."""
        if not self.lists:
            return None
        email = contact_email(payload)
        if email is None:
            return ("not sent: the do-not-contact list compares emails, and this row's contact "
                    f"has none (--exclude {self.lists[0].path})")
        for listed in self.lists:
            if email in listed.emails:
                return f"not sent: on the do-not-contact list {listed.path} ({listed.origin})"
        return None


    def leaves_out(self, cells: MappingABC[str, str], payload: MappingABC[str, Any]) -> bool:
        """Whether this run leaves a valid row out (for the pre-send check, sending/existing.py)."""
        return self.filtered(cells) is not None or self.excluded(payload) is not None

    def labels(self) -> dict[str, str]:
        """How the confirmation names the rows left out (sending/plan.py), by status."""
        files = ", ".join(listed.path for listed in self.lists)
        return {"filtered": f"filtered (--where {self.where.text})" if self.where is not None else "filtered",
                "excluded": f"excluded (do-not-contact list {files})"}


def choose(mode: Mode, mapping: Mapping, table: Table) -> Choice | None:
    """The run's Choice, or None when it sends every row. ``mode.exclude``'s
    files are read as given; the mapping's ``exclude`` relative to its
    folder. Raises UsageError (``--where`` not understood, or naming no
    column) and InputError (a list that cannot be read), nothing sent."""
    where = ColumnWhere(mode.where, table.columns, table.name) if mode.where else None
    named = [(path, "--exclude") for path in mode.exclude]
    if mapping.exclude:
        folder = Path(mapping.path).parent if Path(mapping.path).is_file() else Path()
        origin = f"{mapping.path}'s exclude"
        named += [(str(folder / name) if not Path(name).is_absolute() else name, origin)
                  for name in mapping.exclude]
    if where is None and not named:
        return None
    seen: set[str] = set()
    lists = []
    for path, origin in named:
        same = str(Path(path).resolve())
        if same not in seen:  # one file named twice (the option and the mapping) is read once
            seen.add(same)
            lists.append(read_list(path, origin))
    choice = Choice(where, tuple(lists))
    if where is not None:
        choice.notes.append(f"--where {where.text}: only rows whose {where.column} is "
                            f"{' or '.join(where.where.values)} are sent; the others are recorded filtered")
    choice.notes += [listed.note() for listed in lists]
    return choice

