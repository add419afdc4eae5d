"""``--where NAME=V1,V2``: the one row-selection grammar of ``send`` and ``update`` (issue 28).

``update --where status=pending,due`` chooses sent rows by the request status
``status`` last read; ``send --where Country=FR,BE`` sends only the rows whose
``Country`` cell is one of the values. Both read the option here, with the same
words when it is not understood: a name, ``=``, then one or more values
separated by commas (each trimmed; empty ones dropped).

For ``send`` the name is a column of the input, matched as the mapping matches
column names (``reading.normal_name``: Unicode NFC, runs of spaces, characters
no one can see), else ignoring case when that names one column; a cell matches
a value when the two are equal after the same normalisation, ignoring case
(``fr`` is ``FR``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bulksend.common.errors import UsageError
from bulksend.mapping.problems import quote, suggest
from bulksend.reading.cells import normal_name


@dataclass(frozen=True)
class Where:
    """``--where`` as given (``text``), read: the name (trimmed) and its values."""

    text: str
    name: str
    values: tuple[str, ...]


def parse_where(text: str, *, example: str = "status=pending", another: str = "due") -> Where:
    """``NAME=V1,V2`` -> Where. Raises ``UsageError`` (exit 2) when there is no
    name, no ``=`` or no value; its hint shows ``example`` (and ``,another``)."""
    name, eq, values = text.partition("=")
    kept = tuple(v.strip() for v in values.split(",") if v.strip())
    if not name.strip() or not eq or not kept:
        raise _not_understood(text, example, another)
    return Where(text, name.strip(), kept)


def _not_understood(text: str, example: str, another: str) -> UsageError:
    return UsageError(f"--where {text!r}: not understood",
                      hint=f"write --where {example} (or several: {example},{another})")


def status_where(text: str) -> list[str]:
    """``update --where status=pending,due`` -> the status names as written.
    Raises ``UsageError`` for any other name, or the grammar's errors."""
    where = parse_where(text)
    if where.name != "status":
        raise _not_understood(text, "status=pending", "due")
    return list(where.values)


def _folded(text: str) -> str:
    return normal_name(text).casefold()


class ColumnWhere:
    """``send --where COLUMN=V1,V2``: which rows match, by one column's cell.

    ``columns``: the input's header names; ``source``: the input's name, for
    messages. Raises ``UsageError`` (exit 2, nothing sent) for text not
    understood and for a column the input does not have (the closest named)."""

    def __init__(self, text: str, columns: Sequence[str], source: str) -> None:
        where = parse_where(text, example="Country=FR", another="BE")
        self.where = where
        wanted = normal_name(where.name)
        found = ([c for c in columns if c == where.name] or [c for c in columns if normal_name(c) == wanted]
                 or [c for c in columns if _folded(c) == wanted.casefold()])
        if len(found) != 1:
            what = "matches several columns of" if found else "is not a column of"
            raise UsageError(
                f"--where {text!r}: {quote(where.name)} {what} {source}{suggest(where.name, columns)}",
                hint="name one column as the file's header row writes it")
        self.column = found[0]
        self.values = frozenset(_folded(v) for v in where.values)

    @property
    def text(self) -> str:
        """The option as given, for messages: ``Country=FR``."""
        return self.where.text

    def matches(self, cells: Mapping[str, str]) -> bool:
        """Whether a row (column name -> cell) is one of those to send."""
        return _folded(cells.get(self.column, "")) in self.values

    def why_not(self, cells: Mapping[str, str]) -> str:
        """The results' error for a row that does not match: one line."""
        cell = cells.get(self.column, "").strip()
        shown = quote(cell, limit=40) if cell else "empty"
        return f"not sent this run: {self.column} is {shown} (--where {self.text})"
