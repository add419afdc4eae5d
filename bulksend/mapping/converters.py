"""Converters: a cell's text → its payload value, by the field's type.

The spec types are string, int, bool, date, datetime, list and email. Each
converter is built once per field when the mapping is loaded; `where` is the
prefix of its row errors, e.g. 'column "Due": '. A converter takes the cell's
text (stripped, non-empty) and returns the value, None for "empty" (a list of
blanks), or raises RowError. The request's dueDate has its own rules
(duedates.py), built on ``read_moment`` and ``calendar_time`` here.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo
from datetime import UTC, datetime, time, tzinfo
from typing import Final

from bulksend.common.errors import UsageError
from bulksend.mapping.evidence import Evidence, OrderWitness, date_text, order_name
from bulksend.mapping.getters import Converter
from bulksend.mapping.problems import RowError, quote
from bulksend.reading.cells import INVISIBLE

TYPES: Final = ("string", "int", "bool", "date", "datetime", "list", "email")
DEFAULT_SPLIT: Final = ","

_BOOLS: Final[dict[str, bool]] = {
    "true": True,
    "yes": True,
    "y": True,
    "1": True,
    "false": False,
    "no": False,
    "n": False,
    "0": False,
}
_INT: Final = re.compile(r"[+-]?[0-9]{1,30}")
# ISO 8601 as spreadsheets export it; the space separator is what Excel's text
# rendering of a date cell gives. Any number of fraction digits (ISO 8601 sets
# no limit; .NET's round-trip format writes 7): fromisoformat keeps 6.
_ISO_DATE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
# Email-shaped: one @, a dotted domain, no spaces, brackets, quotes, separators
# or control characters (a "Name <a@b.c>" cell or "a@b.c; d@e.f" is refused).
# Only decides whether a refusal says why (email-validator's reason).
_EMAIL_ATOM: Final = r"[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f"
_EMAIL: Final = re.compile(rf"{_EMAIL_ATOM}]+@(?:{_EMAIL_ATOM}.]+\.)+{_EMAIL_ATOM}.]+")
# The common address that email-validator accepts as it is written (a strict
# subset of what it accepts: a dot-atom of the usual characters, host labels of
# letters, digits and single hyphens, a top-level domain of letters): checked
# here in a regex, 30 times faster than email-validator's ~28 µs, which reads
# every other address. Lengths and special-use domains are checked beside it.
# (A host label: letters and digits, single hyphens between them; written
# without look-arounds, it matches the same labels a third faster.)
_PLAIN_EMAIL: Final = re.compile(
    r"[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*"
    r"@(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+[A-Za-z]{2,63}"
)
# RFC 6761 and co.: names email-validator refuses as the part after the @.
_SPECIAL_USE: Final = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
# Full stops that IDNA (UTS #46) reads as ".": ideographic, full-width, half-width.
_DOTS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# Google Contacts writes several addresses of one kind in one cell: "a ::: b".
_SEVERAL: Final = ":::"


def converter(where: str, kind: str, split: str, fmt: str | None, zone: tzinfo | None,
              evidence: Evidence | None = None, column: str | None = None) -> Converter | None:
    """The converter of spec type ``kind``; None for string (the text itself).

    ``split`` separates a list's items; ``fmt`` (strptime) and ``zone`` read dates.
    ``evidence`` (evidence.py) is told what the rows show: the order of day and
    month, addresses sent in their normal form; None for a constant.
    ``column``: the column the field reads (None: a template or a constant)."""
    if kind == "int":
        return _int_converter(where)
    if kind == "bool":
        return _bool_converter(where)
    if kind == "email":
        return _email_converter(where, evidence)
    if kind == "list":
        return _list_converter(split)
    if kind in ("date", "datetime"):
        return _date_converter(where, kind, fmt, zone, evidence, column)
    return None  # string: the text itself


def _int_converter(where: str) -> Converter:
    def convert(text: str) -> int:
        if _INT.fullmatch(text) is None:
            raise RowError(f"{where}{quote(text)} is not a whole number")
        return int(text)

    return convert


def _bool_converter(where: str) -> Converter:
    def convert(text: str) -> bool:
        value = _BOOLS.get(text.lower())
        if value is None:
            raise RowError(f"{where}{quote(text)} is not true/false (or yes/no, y/n, 1/0)")
        return value

    return convert


def _email_converter(where: str, evidence: Evidence | None) -> Converter:
    """An address as the sheet writes it, less the characters no one can see
    (zero-width space, BOM, soft hyphen, ...: reading.INVISIBLE), which would
    make the API create a second contact and the key miss the duplicate.

    Its syntax is email-validator's (RFC 5321/5322, IDNA 2008; deliverability
    not checked: no network). An address written with other characters for the
    same thing (full-width letters as a Japanese keyboard types them, an
    ideographic full stop U+3002) is sent in its normal form (NFKC, dots, the
    domain's case as email-validator gives it), so that it reaches the same
    contact and its key finds the duplicate; one already valid as written is
    sent as written (issue 10, case 4). A cell of several addresses as Google
    Contacts writes them (``a ::: b``) sends the first; both are noted."""

    def convert(text: str) -> str:
        address = text if text.isascii() else INVISIBLE.sub("", text).strip()
        if _SEVERAL in address:
            first = address.split(_SEVERAL, 1)[0].strip()
            sent = convert(first) if first else ""
            if not sent:
                raise RowError(f"{where}{quote(text)} is not an email address")
            if evidence is not None:
                evidence.several(where, text, sent)
            return sent
        if _plain_email(address):
            return address
        normal = address if address.isascii() else unicodedata.normalize("NFKC", address).translate(_DOTS)
        checked, reason = _validated(normal)
        if checked is None:
            why = f" ({reason})" if reason and _EMAIL.fullmatch(normal) else ""
            raise RowError(f"{where}{quote(text)} is not an email address{why}")
        if normal == address:
            return address  # valid as written: sent as written
        if evidence is not None:
            evidence.normalised(where, text, checked)
        return checked

    return convert


def _plain_email(address: str) -> bool:
    """Whether email-validator would accept ``address`` as written (a common
    ASCII address): see _PLAIN_EMAIL."""
    if _PLAIN_EMAIL.fullmatch(address) is None or len(address) > 254:
        return False
    local, _, domain = address.rpartition("@")
    if len(local) > 64 or len(domain) > 253:
        return False
    labels = domain.lower().split(".")
    return labels[-1] not in _SPECIAL_USE and max(map(len, labels)) <= 63


def _validated(address: str) -> tuple[str | None, str]:
    """email-validator's normal form of ``address``, or None and its reason."""
    from email_validator import EmailNotValidError, validate_email

    try:
        found = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return None, str(error).rstrip(".")
    return str(found.normalized), ""


def _list_converter(separator: str) -> Converter:
    def convert(text: str) -> list[str] | None:
        items = [item.strip() for item in text.split(separator)]
        kept = [item for item in items if item]
        return kept or None

    return convert


_SHEET_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2})?")
# strptime directives that read a time of day or an offset: a format with none reads a day.
_TIME_DIRECTIVES: Final = re.compile(r"%[HIMSfpXcz]")
MIDNIGHT: Final = time(0)


@functools.cache
def _reads_time(fmt: str) -> bool:
    """Whether a strptime format reads a time of day or an offset."""
    return _TIME_DIRECTIVES.search(fmt.replace("%%", "")) is not None


def read_moment(where: str, text: str, fmt: str | None) -> tuple[datetime, bool]:
    """Parse a cell with `fmt` (strptime) or as ISO 8601; full-width digits
    and separators read as digits (evidence.date_text).

    Returns the moment (naive unless the text or format gave an offset) and
    whether the text gave a time of day. Raises RowError naming the cell.
    """
    written, text = text, date_text(text)
    if fmt is not None:
        try:
            return datetime.strptime(text, fmt), _reads_time(fmt)
        except ValueError:
            # A real date cell of a spreadsheet reads as ISO text (see
            # reading/cells.py): the same mapping then serves its CSV export too.
            if _SHEET_DATE.fullmatch(text) is None:
                raise RowError(f"{where}{quote(written)} is not a date in format {fmt}") from None
    elif _ISO_DATE.fullmatch(text) is None:
        raise RowError(
            f"{where}{quote(written)} is not an ISO 8601 date (YYYY-MM-DD);"
            ' set format in the mapping, e.g. format: "%d/%m/%Y"'
        )
    try:
        return datetime.fromisoformat(text), len(text) > len("YYYY-MM-DD")
    except ValueError:
        raise RowError(f"{where}{quote(written)} is not a valid date") from None


def read_witnessed(where: str, text: str, fmt: str | None, witness: OrderWitness | None,
                   row: int) -> tuple[datetime, bool]:
    """``read_moment``, telling ``witness`` (if any) what the cell shows about
    the order of day and month: a cell read only the other way is refused
    saying so, and counts against the mapping's order (evidence.py)."""
    try:
        found = read_moment(where, text, fmt)
    except RowError:
        if witness is not None and fmt is not None and witness.refute(row, date_text(text)):
            raise RowError(f"{where}{quote(text)} reads only {order_name(witness.other)} (format"
                           f" {witness.other}: day and month swapped?) and is not a date in format"
                           f" {fmt}") from None
        raise
    if witness is not None:
        cell = date_text(text)
        if _SHEET_DATE.fullmatch(cell) is not None:  # a spreadsheet's date cell tells no order
            witness.sheet_date(row, cell)
        elif witness.decided is None:
            witness.see(row, cell)
    return found


def calendar_time(wall: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in `zone` as an instant, read the way a calendar reads it
    (RFC 5545 §3.3.5): a time that happens twice (clocks set back) is the first
    one; a time that never happens (clocks set forward) is read with the offset
    from before the gap, so 02:30 on a spring-forward night is 03:30, the later
    instant. Returned in `zone` with the offset then in force (a real wall time).
    fold=0 is exactly that reading (PEP 495)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def _date_converter(where: str, kind: str, fmt: str | None, zone: tzinfo | None,
                    evidence: Evidence | None, column: str | None = None) -> Converter:
    """Parse with `fmt` (strptime) or as ISO 8601; render a date or a datetime.

    For `date` and `datetime` fields of `data`; the request's dueDate has its
    own rules (duedates.due_converter). The rows that tell day from month are
    noted (``evidence``; ``column``: the column read, None for a template)."""
    witness = evidence.order(where, fmt, column) if evidence is not None else None

    def convert(text: str) -> str:
        row = evidence.row if evidence is not None else 0
        parsed, _has_time = read_witnessed(where, text, fmt, witness, row)
        try:
            if kind == "date":
                if parsed.tzinfo is not None and zone is not None:
                    parsed = parsed.astimezone(zone)
                return parsed.date().isoformat()
            if parsed.tzinfo is None:
                if zone is None:
                    raise RowError(f"{where}{quote(text)} has no UTC offset; set timezone in the mapping")
                parsed = calendar_time(parsed, zone)
            return parsed.isoformat()
        except (OverflowError, ValueError):
            raise RowError(f"{where}{quote(text)} is out of the range of dates") from None

    return convert


def find_zone(name: str) -> tzinfo | None:
    """The IANA time zone called ``name`` (e.g. "Europe/Paris"), or None when there is none.

    Raises UsageError when this machine has no time-zone database at all, so
    that every zone, UTC too, is unknown: Windows has none of its own, and
    Python reads it there from the tzdata package (a dependency of bulksend
    on Windows; a copy installed without its dependencies lacks it)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    try:
        zoneinfo.ZoneInfo("UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(f"time zone {name!r}: this machine has no time-zone database, so no zone is known",
                         hint="install the tzdata package (pip install tzdata): Python reads the zones "
                         "from it where the system has none, as on Windows") from None
    return None


def bad_format(fmt: str) -> str | None:
    """Why strptime cannot use fmt, or None when it can."""
    try:
        datetime.strptime("", fmt)
    except ValueError as error:
        message = str(error)
        if message.startswith(("time data", "unconverted data")):
            return None
        return f"is not a strptime format: {message}"
    return "has no date directives (such as %d/%m/%Y)"
