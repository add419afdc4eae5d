"""Where a table comes from: ``open_table`` hands a path to the reader of its
kind, by its extension (a spreadsheet to reading/workbook.py; any other file to
delimited.py as text, tab-delimited for .tsv and .tab), and spools standard
input ("-") to a temporary file, read as CSV and deleted when the table closes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import BinaryIO

from bulksend.common.errors import InputError
from bulksend.reading.delimited import open_text
from bulksend.reading.table import Table

SPREADSHEET_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"})
TAB_EXTENSIONS = frozenset({".tsv", ".tab"})


def open_table(
    source: str,
    *,
    sheet: str | int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    stdin: BinaryIO | None = None,
    header_row: int | None = None,
    include_hidden: bool = False,
) -> Table:
    """Open a contacts table; raises ``InputError`` for anything that cannot be read whole.

    ``source`` is a path, or ``"-"`` for CSV on ``stdin`` (default
    ``sys.stdin.buffer``), which is spooled to a temporary file so that rows()
    can run twice; the file is deleted on close. ``sheet`` (spreadsheets only)
    is a name or a 1-based number. ``encoding`` and ``delimiter`` (text only)
    override detection; spreadsheets ignore them, having neither.
    ``header_row`` (1-based, as a spreadsheet numbers rows) is the row holding
    the column names; by default the first non-blank one; rows above it are not
    read. ``include_hidden``: rows hidden in an .xlsx sheet are read as any
    other, instead of coming with ``Row.left_out`` set.
    """
    if header_row is not None and header_row < 1:
        raise InputError(f"{source}: --header-row {header_row}: rows are numbered from 1")
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _open_stdin(stream, sheet, encoding, delimiter, header_row)
    extension = os.path.splitext(source)[1].lower()
    if extension in SPREADSHEET_EXTENSIONS:
        # Imported here: a CSV run need not load the spreadsheet readers (~6 ms of start-up).
        from bulksend.reading.workbook import open_spreadsheet

        return open_spreadsheet(source, source, sheet, header_row, include_hidden)
    if sheet is not None:
        raise InputError(
            f'{source}: is a text file and has no sheets (sheet "{sheet}" was asked for)',
            hint="--sheet applies to .xlsx, .xls and .ods files only",
        )
    given = frozenset(n for n, v in (("encoding", encoding), ("delimiter", delimiter)) if v is not None)
    if delimiter is None and extension in TAB_EXTENSIONS:
        delimiter = "\t"
    return open_text(source, source, encoding, delimiter, header_row, given)


def _open_stdin(
    stream: BinaryIO, sheet: str | int | None, encoding: str | None, delimiter: str | None,
    header_row: int | None,
) -> Table:
    name = "<stdin>"
    if sheet is not None:
        raise InputError(
            f"{name}: standard input is read as CSV, it has no sheets",
            hint="give the spreadsheet's path instead of -",
        )
    fd, spool = tempfile.mkstemp(prefix="bulksend-stdin-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1024 * 1024)
        given = frozenset(n for n, v in (("encoding", encoding), ("delimiter", delimiter)) if v is not None)
        table = open_text(name, spool, encoding, delimiter, header_row, given)
    except BaseException:
        _remove(spool)
        raise
    table.on_close(_remove, spool)
    return table


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
