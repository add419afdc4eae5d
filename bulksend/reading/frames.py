"""Contacts held in memory, as a ``Table``: a list of dicts, or a pandas DataFrame.

The Python API (api/) accepts contacts that never were a file. They are read
as the reader reads a file (reading/table.py): every cell becomes text, a wholly
blank row is skipped but counted, and rows are numbered as a spreadsheet would
number them (the column names are row 1, the first record row 2), so results,
journal and resume work the same way.

pandas is imported only when a DataFrame is passed (it is an optional extra,
``bulksend[pandas]``); a DataFrame can only exist if pandas was imported by
the caller, which ``is_dataframe`` relies on.

A DataFrame is often read by pandas with its type inference on, which loses
text before bulksend sees it: ``007`` becomes ``7.0``, a cell ``NA`` becomes
NaN, ``01/02/2024`` may become a date. Those columns cannot be repaired here;
``typed_column_problems`` names the ones the mapping sends as text, and the
API warns (``TypedColumnWarning``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from bulksend.common.errors import InputError
from bulksend.reading.cells import cell_text
from bulksend.reading.table import Records, Table

__all__ = [
    "FRAME_NAME",
    "RECORDS_NAME",
    "MemoryTable",
    "TypedColumnWarning",
    "is_dataframe",
    "table_from_frame",
    "table_from_records",
    "typed_column_problems",
]

FRAME_NAME = "<DataFrame>"  # how messages name a DataFrame of contacts
RECORDS_NAME = "<rows>"  # ... and an iterable of dicts

# The spec types whose column is read as text: a pandas-typed column there
# has already lost what was written (int, bool and dates are parsed anyway).
TEXT_TYPES = frozenset({"string", "email", "list"})
KEEP_TEXT = "pd.read_csv(path, dtype=str, keep_default_na=False)"


class TypedColumnWarning(UserWarning):
    """A DataFrame column the mapping sends as text was typed by pandas (numbers,
    dates, NaN), so some cells may no longer be what the file held."""


def is_dataframe(value: object) -> bool:
    """Whether ``value`` is a pandas DataFrame; never imports pandas."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


class MemoryTable(Table):
    """A ``Table`` over rows already in memory: not a file, so never read from
    the middle (``seekable`` is False) and never checkpointed (``path`` is None)."""

    def __init__(self, name: str, columns: list[str], rows: Callable[[], Iterator[list[str]]],
                 *, what: str, count: int) -> None:
        self._what = what
        self._count = count

        def records(start: object = None) -> Records:
            yield 1, list(columns)
            for number, cells in enumerate(rows(), start=2):
                if "".join(cells).strip():  # a wholly blank row is skipped, as in a file
                    yield number, cells

        super().__init__(name, records, lambda index: str(index + 1), kind=what)

    def describe(self) -> str:
        """What was read, on one line: what it is, how many rows and columns."""
        return (f"{self.name}: {self._what}, {self._count} rows, {len(self.columns)} columns "
                f"(row 2 of the results is its first row)")


# --- cells -------------------------------------------------------------------


def _plain(value: Any) -> object:
    """``value`` with numpy's and pandas' own kinds as Python's: a numpy scalar
    (``numpy.int64(7)``, ``numpy.datetime64``) as the int, float, bool or
    datetime it holds; a missing value (``pd.NA``, ``pd.NaT``, numpy's NaT) as
    None (issue 25: they are cells of a list of dicts too, not only of a
    DataFrame). Neither library is imported: a value of theirs can only exist
    if the caller imported them."""
    numpy: Any = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        if isinstance(value, numpy.datetime64 | numpy.timedelta64):
            if numpy.isnat(value):
                return None
            # In microseconds, .item() gives a datetime (in nanoseconds, an int).
            unit = "datetime64[us]" if isinstance(value, numpy.datetime64) else "timedelta64[us]"
            value = value.astype(unit)
        value = value.item()
    pandas = sys.modules.get("pandas")
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return None
    return value


def _cell(value: object, name: str, number: int, column: str) -> str:
    """A Python value as the text a spreadsheet would show (cells.cell_text);
    numpy's and pandas' values as the Python values they stand for
    (``_plain``). InputError naming the row and column for a value that is not a cell."""
    if isinstance(value, str):
        return value
    value = _plain(value)
    if value is None or isinstance(value, bool | int | float | dt.date | dt.time | dt.timedelta):
        return cell_text(value)
    if isinstance(value, decimal.Decimal | fractions.Fraction):
        return str(value)
    raise InputError(
        f"{name}: row {number}, column {column!r}: a {type(value).__name__} is not a cell",
        hint="give each cell as text (or a number, a boolean, a date)",
    )


# --- an iterable of dicts --------------------------------------------------------


def table_from_records(records: list[Mapping[str, Any]], name: str = RECORDS_NAME) -> MemoryTable:
    """A table over ``records``, each a dict of column name -> cell.

    Columns are every key met, in the order first met; a key a record lacks is
    an empty cell. Cells are text as given; None is empty; numbers, booleans
    and dates are written as a spreadsheet shows them (``7``, ``TRUE``,
    ``2024-05-01``). Raises InputError when there is no record, a record is
    not a dict, a key is not text, or a cell is a list, a dict or an object.
    """
    if not records:
        raise InputError(f"{name}: holds no contacts", hint="pass a list with one dict per contact")
    seen: dict[str, None] = {}
    for number, record in enumerate(records, start=2):
        if not isinstance(record, Mapping):
            raise InputError(f"{name}: row {number} is a {type(record).__name__}, not a dict",
                             hint="pass one dict per contact, column name -> cell")
        for key in record:
            if not isinstance(key, str):
                raise InputError(f"{name}: row {number}: column name {key!r} is not text")
            seen.setdefault(key, None)
    columns = list(seen)

    def rows() -> Iterator[list[str]]:
        for number, record in enumerate(records, start=2):
            yield [_cell(record.get(column), name, number, column) for column in columns]

    return MemoryTable(name, columns, rows, what="dicts", count=len(records))


# --- a pandas DataFrame ------------------------------------------------------------


def table_from_frame(frame: Any, name: str = FRAME_NAME) -> MemoryTable:
    """A table over a pandas DataFrame's rows (its index is not read; row 2 is
    ``frame.iloc[0]``). Column names are ``str()`` of the labels. Missing values
    (NaN, None, NaT, pd.NA) are empty cells; other cells as in
    ``table_from_records``. Raises InputError for a cell that is not a value."""
    import pandas as pd

    columns = [str(label) for label in frame.columns]

    def cell(value: object, number: int, column: str) -> str:
        if isinstance(value, str):
            return value
        value = _plain(value)  # numpy scalars (Int64 columns) as Python's; pd.NA, NaT as None
        if pd.api.types.is_scalar(value) and pd.isna(value):
            return ""
        return _cell(value, name, number, column)

    def rows() -> Iterator[list[str]]:
        for number, values in enumerate(frame.itertuples(index=False, name=None), start=2):
            yield [cell(value, number, column) for value, column in zip(values, columns, strict=True)]

    return MemoryTable(name, columns, rows, what="a pandas DataFrame", count=len(frame))


def typed_column_problems(frame: Any, fed: Mapping[str, Iterable[tuple[str, str]]],
                          name: str = FRAME_NAME) -> list[str]:
    """One message per DataFrame column that the mapping sends as text (``fed``:
    ``Mapping.fed``, column -> (payload path, spec type)) but whose values
    pandas has typed: numbers, booleans, dates, or missing values (NaN)."""
    positions: dict[str, int] = {}
    for i, label in enumerate(frame.columns):
        positions.setdefault(str(label).strip().lstrip("\ufeff").strip(), i)
    problems = []
    for column, fields in fed.items():
        paths = [path for path, spec_type in fields if spec_type in TEXT_TYPES]
        if not paths or column not in positions:
            continue
        series = frame.iloc[:, positions[column]]
        risk = _risk(series)
        if risk is not None:
            problems.append(
                f"{name}: column {column!r} ({series.dtype}) fills {', '.join(dict.fromkeys(paths))} as "
                f"text, but pandas has already typed it: {risk}. To keep every cell as written, read "
                f"the file with {KEEP_TEXT}"
            )
    return problems


def _risk(series: Any) -> str | None:
    kind = series.dtype.kind
    if kind in "fc":
        return "a value written 007 reached bulksend as 7.0 (sent as 7), and long numbers lose digits"
    if kind in "iu":
        return "a value written 007 reached bulksend as 7"
    if kind == "b":
        return "values were read as booleans (sent as TRUE/FALSE)"
    if kind in "mM":
        return "values were read as dates or times (01/02/2024 is sent as 2024-01-02)"
    values = series.dropna()
    if len(values) and not all(isinstance(v, str) for v in values):
        return "some values are numbers or dates, not text (007 may have become 7)"
    if series.isna().any():
        return ("it holds missing values (NaN): cells written NA, null or n/a were read as NaN, "
                "sent as empty")
    return None
