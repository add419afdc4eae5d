"""A cell as the text a person sees in a spreadsheet, and a column name as a
person reads it: the rules the readers share. ``cell_text`` writes a value
(calamine's in reading/workbook.py, Python's in reading/frames.py) as a spreadsheet shows it:
empty -> "", booleans -> TRUE/FALSE, whole numbers without ".0", other numbers
rounded to Excel's 15 significant digits and written in their shortest form,
dates YYYY-MM-DD, date-times YYYY-MM-DD HH:MM:SS (midnight ones as a date),
times HH:MM:SS, durations [h]:mm:ss. ``is_blank`` tells a wholly blank record,
skipped but counted. ``normal_name`` drops the ``INVISIBLE`` characters and
spacing a person cannot see, so that header and mapping names match as they look.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata

# Characters a person cannot see: Unicode's format characters (category Cf:
# zero-width space and joiners, word joiner, BOM, soft hyphen, direction marks,
# ...) and the few invisible ones of other categories (combining grapheme
# joiner, variation selectors, Hangul fillers, Mongolian free variation
# selectors). tests/test_sheets_wild.py checks the class holds every Cf character.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160"
    "\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f\U000e0100-\U000e01ef]"
)


EXACT_INTEGERS = 2**53  # below this, every whole number is a double exactly


def normal_name(name: str) -> str:
    """A column name as a person reads it: invisible characters removed,
    Unicode NFC (macOS writes "é" as "e" + U+0301), runs of spaces (no-break
    ones included) as one space, trimmed. Header and mapping names match on it."""
    return " ".join(unicodedata.normalize("NFC", INVISIBLE.sub("", name)).split())


def cell_text(value: object) -> str:
    """The text a spreadsheet shows for a cell value from calamine."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, dt.datetime):
        moment = _round_to_second(value)
        if moment.time() == dt.time(0):
            return moment.date().isoformat()
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return _round_to_second(dt.datetime.combine(dt.date(2000, 1, 1), value)).strftime("%H:%M:%S")
    if isinstance(value, dt.timedelta):
        # A duration (e.g. [h]:mm:ss in Excel) may exceed 24 hours.
        seconds = round(value.total_seconds())
        sign = "-" if seconds < 0 else ""
        hours, rest = divmod(abs(seconds), 3600)
        return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return str(value)


def _number_text(value: float) -> str:
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    # A whole number a double holds exactly is the digits the file holds: a
    # 16-digit account number stays 1234567890123456 (issue 24), where Excel's
    # display would show 1234567890123460.
    if value.is_integer() and abs(value) < EXACT_INTEGERS:
        return str(int(value))
    # Otherwise Excel keeps and shows 15 significant digits: 0.1+0.2 is 0.3 on
    # screen, and a day fraction or a sum never shows binary noise.
    shown = float(f"{value:.15g}")
    if shown.is_integer() and abs(shown) < 1e15:
        return str(int(shown))
    return repr(shown)


def _round_to_second(moment: dt.datetime) -> dt.datetime:
    # Spreadsheets store times as fractions of a day; 09:30 may come back
    # as 09:29:59.999999.
    if moment.microsecond >= 500_000:
        moment += dt.timedelta(seconds=1)
    return moment.replace(microsecond=0)


def is_blank(cells: list[str]) -> bool:
    """Whether a record's cells are all empty or white space (such a row is
    skipped, but counted)."""
    return not "".join(cells).strip()


def column_letter(index: int) -> str:
    """A spreadsheet's name for column ``index`` (0-based): 0 → "A", 25 → "Z",
    26 → "AA" (bijective base 26, as Excel, LibreOffice and ECMA-376 name them)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
