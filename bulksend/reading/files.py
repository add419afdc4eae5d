"""A contacts file on disk, as bytes: ``open_binary`` opens it for reading or
raises an ``InputError`` a person can act on (no such file, a directory,
permission denied), and ``ZIP_MAGIC`` and ``OLE_MAGIC`` are the first bytes
that tell a spreadsheet from text. Both file readers open their file here
(delimited.py once per pass over the rows, reading/workbook.py once).
"""

from __future__ import annotations

import os
from typing import BinaryIO

from bulksend.common.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"  # .xlsx / .xlsm / .xlsb / .ods
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (and password-protected .xlsx)


def open_binary(name: str, path: str) -> BinaryIO:
    """``path`` opened for reading bytes; raises ``InputError`` naming ``name`` (the
    path as given, or "<stdin>") when it is a directory, missing, or not readable."""
    if os.path.isdir(path):
        raise InputError(
            f"{name}: is a directory, not a file",
            hint="give the path of the CSV or spreadsheet file itself",
        )
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(
            f"{name}: no such file",
            hint="check the path (relative paths start from the current directory)",
        ) from None
    except PermissionError:
        raise InputError(
            f"{name}: permission denied",
            hint="check the file's permissions; if it is open in Excel, close it and retry",
        ) from None
    except OSError as error:
        raise InputError(f"{name}: cannot open: {error.strerror or error}") from None
