"""The Python API's arguments, each checked before anything is read, sent or created (issue 25).

The command line's options are typed by click; a Python caller's arguments
are whatever was passed. A string where a flag is expected is truthy
(``dry_run="no"`` would be a dry run), a float where a count is expected
sends one row more (``limit=2.5``), a string where a Progress is expected
fails after the results file and its journal were made. So each function of
bulksend.api checks its arguments first, with these, and raises UsageError
(exit 2) naming the first one that is wrong. Numbers are checked by
``check_numbers``; the API URL, the key and the rate by
bulksend/settings.py.
"""

from __future__ import annotations

import math
import os

from bulksend.common.errors import UsageError

__all__ = ["check_callable", "check_flags", "check_paths", "check_progress", "check_sheet", "check_texts",
           "shown"]

# The methods of common.progress.Progress a run calls.
_PROGRESS_METHODS = ("start", "outcome", "carried", "event", "rate", "close")


def shown(value: object) -> str:
    """``value`` as a message shows it: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_flags(*, optional: tuple[str, ...] = (), **flags: object) -> None:
    """UsageError for the first flag that is not True or False (those named in
    ``optional`` may be None): a string is not a flag, ``dry_run="no"`` is not False."""
    for name, value in flags.items():
        if not isinstance(value, bool) and not (value is None and name in optional):
            allowed = "True, False or None" if name in optional else "True or False"
            raise UsageError(f"{name}={shown(value)}: must be {allowed}")


def check_texts(**texts: object) -> None:
    """UsageError for the first argument that is neither None nor text (a str).
    The value is not shown: it may be a secret."""
    for name, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{name}: must be text (a str) or None, not {type(value).__name__}")


def check_paths(*, optional: tuple[str, ...] = (), **paths: object) -> None:
    """UsageError for the first argument that is not a path (a str, or an
    os.PathLike giving one; bytes are not taken); those named in ``optional``
    may be None."""
    for name, value in paths.items():
        if value is None and name in optional:
            continue
        if not isinstance(value, str | os.PathLike) or not isinstance(os.fspath(value), str):
            raise UsageError(f"{name}: must be a path (a str or a pathlib.Path), not {type(value).__name__}")


def check_sheet(sheet: object) -> None:
    """``sheet=``: None, a sheet's name (str) or its position (int, from 0)."""
    if sheet is not None and (isinstance(sheet, bool) or not isinstance(sheet, str | int)):
        raise UsageError(f"sheet={shown(sheet)}: must be a sheet's name (a str), its position (an int) "
                         "or None")


def check_progress(progress: object) -> None:
    """``progress=``: True (a bar and the log), False (the log only), or an
    object with the methods of bulksend.common.progress.Progress. UsageError
    for anything else (``progress="yes"``), before anything is made."""
    if isinstance(progress, bool):
        return
    missing = [name for name in _PROGRESS_METHODS if not callable(getattr(progress, name, None))]
    if missing:
        raise UsageError(f"progress={shown(progress)}: must be True, False or a Progress "
                         f"(a {type(progress).__name__} has no {missing[0]}() method)",
                         hint="pass True for a progress bar, False for none, or an object with the "
                         "methods of bulksend.common.progress.Progress")


def check_callable(name: str, value: object) -> None:
    """UsageError when ``value`` is neither None nor callable."""
    if value is not None and not callable(value):
        raise UsageError(f"{name}: must be a function or None, not {type(value).__name__}")


# The numbers that count something: whole numbers only (issue 25: limit=2.5 sent 3 rows).
WHOLE = frozenset({"concurrency", "max_attempts", "limit", "header_row", "max_problems", "preview",
                    "examples"})


def check_numbers(**ranges: tuple[float | None, float, float | None]) -> None:
    """UsageError for the first argument outside its range (None: no value
    given, or no upper bound). A number is an int or a float, never a bool,
    NaN or infinite; those named in ``WHOLE`` must be ints."""
    for name, (value, low, high) in ranges.items():
        if value is None:
            continue
        whole = name in WHOLE
        if (isinstance(value, bool) or not isinstance(value, int if whole else int | float)
                or not math.isfinite(value) or value < low or (high is not None and value > high)):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            kind = "a whole number (an int)" if whole and isinstance(value, float) else "a number"
            raise UsageError(f"{name}={shown(value)}: must be {kind} {bound}")
