"""Mapping: one spreadsheet row → one POST /request body and the row's key.

The YAML mapping file (PRODUCT.md, "Mapping file") is read once, checked against
the input's columns — every problem at once, each naming its line and key path —
and compiled into a tree of closures. ``Mapping.apply`` then runs those closures
for each row: no YAML, no regex compilation and no walking of the spec per row.

A closure ("getter") takes the row's ``values`` and returns the field's payload
value, or ``_OMIT`` when an optional field is empty (an empty value is left out of
the payload, never sent as ""), or raises ``_RowError`` whose message becomes the
row's one-line error. Exceptions are cheap when not raised, and invalid rows are
the exception, so this keeps the happy path free of result checking.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import math
import re
import time as _time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bulksend.errors import MappingError
from bulksend.items import Catalogue, ItemProblem, resolve_payload_items
from bulksend.reading import INVISIBLE, Header, Row, normal_name

__all__ = ["Mapped", "Mapping", "load_mapping", "mapping_from_dict", "parse_mapping"]


@dataclass(frozen=True, slots=True)
class Mapped:
    """One row after mapping: a payload and its key, or the reason it has none."""

    row: int  # the spreadsheet row number (Row.number)
    payload: dict[str, Any] | None  # the POST /request body; None when the row is invalid
    # The row's identity; None when invalid, except for a row refused only because
    # its due date is past: a rerun may then still find it sent by an earlier run.
    key: str | None
    error: str | None  # the first problem of an invalid row, on one line


# --------------------------------------------------------------------------- #
# The vocabulary of the mapping file

TYPES: Final = ("string", "int", "bool", "date", "datetime", "list", "email")
SPEC_OPTIONS: Final = (
    "column",
    "value",
    "template",
    "default",
    "required",
    "type",
    "split",
    "format",
    "timezone",
    "lower",
    "strip",
    "past",  # dueDate only: `past: allow`
)

# What a field of the request body holds, and so which spec types fit it.
# A kind maps to (default type, allowed types); "any" is the free-form `data`.
_KINDS: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "string": ("string", frozenset({"string", "email", "date", "datetime"})),
    "email": ("email", frozenset({"email", "string"})),
    "due": ("date", frozenset({"date", "datetime"})),  # the request's dueDate (DueDates)
    "bool": ("bool", frozenset({"bool"})),
    "list": ("list", frozenset({"list"})),
    "any": ("string", frozenset(TYPES)),
}

# Top-level keys follow the POST /request body (collect-api.md §4), plus `key`.
TOP_KEYS: Final[dict[str, str]] = {
    "campaignId": "string",
    "contact": "contact",
    "items": "list",
    "data": "object",
    "sample": "sample",
    "dueDate": "due",
    "createdBy": "string",
    "assignedTo": "string",
    "sendMessage": "bool",
    "sendCompletionMessage": "bool",
    "sendRejectionMessage": "bool",
    "sendReopenMessage": "bool",
    "esignDocs": "esignDocs",
    "esignTriggers": "list",
    "key": "key",
}
# The inline contact as the API's example sends it (collect-api.md §4); phone or
# language are not documented for contacts, so they are refused, not passed on.
CONTACT_FIELDS: Final[dict[str, str]] = {
    "email": "email",
    "firstName": "string",
    "lastName": "string",
    "company": "string",
    "data": "object",
}
SAMPLE_FIELDS: Final[dict[str, str]] = {"itemId": "string", "url": "string"}

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
_EMAIL_ATOM: Final = r"[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f"
_EMAIL: Final = re.compile(rf"{_EMAIL_ATOM}]+@(?:{_EMAIL_ATOM}.]+\.)+{_EMAIL_ATOM}.]+")

_DEFAULT_SPLIT: Final = ","
_KEY_SEPARATOR: Final = "|"


class _Omit:
    """The value of an optional field that is empty: left out of the payload."""

    def __repr__(self) -> str:
        return "<omitted>"


_OMIT: Final = _Omit()

Values = dict[str, str]
Getter = Callable[[Values], Any]  # returns a payload value or _OMIT, or raises _RowError
# The shape of the payload a mapping can produce, for checking key paths:
# a dict of child shapes for an object, None for a leaf.
Shape = dict[str, Any] | None


class _RowError(Exception):
    """A row cannot be mapped; the message is that row's one-line error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Problem(Exception):
    """A problem of the mapping file found while checking one value."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


# Characters that str.splitlines() treats as line breaks but json.dumps leaves as is.
_EXTRA_BREAKS: Final = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _quote(text: str, limit: int = 80) -> str:
    """Quote a cell or name for a one-line message (escaped, shortened)."""
    if len(text) > limit:
        text = text[:limit] + "…"
    try:
        text.encode("utf-8")
        ascii_only = False
    except UnicodeEncodeError:  # lone surrogates: escape everything
        ascii_only = True
    return json.dumps(text, ensure_ascii=ascii_only).translate(_EXTRA_BREAKS)


def _closest(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate nearest to word, ignoring case, or None when none is close."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(normal_name(candidate).lower(), candidate)
    found = difflib.get_close_matches(normal_name(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def _suggest(word: str, candidates: Sequence[str]) -> str:
    near = _closest(word, candidates)
    return f" (closest: {_quote(near)})" if near is not None else ""


def _shown(text: str) -> str:
    """Characters for a message, each one a person cannot tell apart by eye
    (not printable ASCII) with its code point: "é" (U+00E9)."""
    quoted = json.dumps(text, ensure_ascii=False)
    codes = " ".join(f"U+{ord(c):04X}" for c in text if not (c.isascii() and c.isprintable()))
    return f"{quoted} ({codes})" if codes else quoted


def _difference(wanted: str, found: str) -> str | None:
    """Where a mapping's column name first differs from a header name that
    looks the same (the difference is in characters that are not printable
    ASCII), e.g. 'the mapping has "é" (U+00E9) where the file has "e"'; None
    when the difference is plain to see."""
    matcher = difflib.SequenceMatcher(None, wanted, found, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        ours, theirs = wanted[a1:a2], found[b1:b2]
        if tag == "equal":
            continue
        if (ours + theirs).isascii() and (ours + theirs).isprintable():
            return None
        if tag == "replace":
            return f"the mapping has {_shown(ours)} where the file has {_shown(theirs)}"
        if tag == "delete":
            return f"the mapping has {_shown(ours)} that the file has not"
        return f"the file has {_shown(theirs)} that the mapping has not"
    return None


# --------------------------------------------------------------------------- #
# Converters: cell text (stripped, non-empty) → payload value. Each is built once
# per field at load time; `where` is the prefix of its row errors, e.g.
# 'column "Due": '.

Converter = Callable[[str], Any]  # returns the value, None for "empty", or raises _RowError


def _int_converter(where: str) -> Converter:
    def convert(text: str) -> int:
        if _INT.fullmatch(text) is None:
            raise _RowError(f"{where}{_quote(text)} is not a whole number")
        return int(text)

    return convert


def _bool_converter(where: str) -> Converter:
    def convert(text: str) -> bool:
        value = _BOOLS.get(text.lower())
        if value is None:
            raise _RowError(f"{where}{_quote(text)} is not true/false (or yes/no, y/n, 1/0)")
        return value

    return convert


def _email_converter(where: str) -> Converter:
    """An address as the sheet writes it, less the characters no one can see
    (zero-width space, BOM, soft hyphen, ...: reading.INVISIBLE), which would
    make the API create a second contact and the key miss the duplicate."""

    def convert(text: str) -> str:
        address = text if text.isascii() else INVISIBLE.sub("", text).strip()
        if _EMAIL.fullmatch(address) is None:
            raise _RowError(f"{where}{_quote(text)} is not an email address")
        return address

    return convert


def _list_converter(separator: str) -> Converter:
    def convert(text: str) -> list[str] | None:
        items = [item.strip() for item in text.split(separator)]
        kept = [item for item in items if item]
        return kept or None

    return convert


_SHEET_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2})?")
# strptime directives that read a time of day or an offset: a format with none reads a day.
_TIME_DIRECTIVES: Final = re.compile(r"%[HIMSfpXcz]")
_MIDNIGHT: Final = time(0)


@functools.cache
def _reads_time(fmt: str) -> bool:
    """Whether a strptime format reads a time of day or an offset."""
    return _TIME_DIRECTIVES.search(fmt.replace("%%", "")) is not None


def _read_moment(where: str, text: str, fmt: str | None) -> tuple[datetime, bool]:
    """Parse a cell with `fmt` (strptime) or as ISO 8601.

    Returns the moment (naive unless the text or format gave an offset) and
    whether the text gave a time of day. Raises _RowError naming the cell.
    """
    if fmt is not None:
        try:
            return datetime.strptime(text, fmt), _reads_time(fmt)
        except ValueError:
            # A real date cell of a spreadsheet reads as ISO text (see
            # reading.py): the same mapping then serves its CSV export too.
            if _SHEET_DATE.fullmatch(text) is None:
                raise _RowError(f"{where}{_quote(text)} is not a date in format {fmt}") from None
    elif _ISO_DATE.fullmatch(text) is None:
        raise _RowError(
            f"{where}{_quote(text)} is not an ISO 8601 date (YYYY-MM-DD);"
            ' set format in the mapping, e.g. format: "%d/%m/%Y"'
        )
    try:
        return datetime.fromisoformat(text), len(text) > len("YYYY-MM-DD")
    except ValueError:
        raise _RowError(f"{where}{_quote(text)} is not a valid date") from None


def _calendar_time(wall: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in `zone` as an instant, read the way a calendar reads it
    (RFC 5545 §3.3.5): a time that happens twice (clocks set back) is the first
    one; a time that never happens (clocks set forward) is read with the offset
    from before the gap, so 02:30 on a spring-forward night is 03:30, the later
    instant. Returned in `zone` with the offset then in force (a real wall time).
    fold=0 is exactly that reading (PEP 495)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def _date_converter(where: str, kind: str, fmt: str | None, zone: tzinfo | None) -> Converter:
    """Parse with `fmt` (strptime) or as ISO 8601; render a date or a datetime.

    For `date` and `datetime` fields of `data`; the request's dueDate has its
    own rules (_due_converter)."""

    def convert(text: str) -> str:
        parsed, _has_time = _read_moment(where, text, fmt)
        try:
            if kind == "date":
                if parsed.tzinfo is not None and zone is not None:
                    parsed = parsed.astimezone(zone)
                return parsed.date().isoformat()
            if parsed.tzinfo is None:
                if zone is None:
                    raise _RowError(f"{where}{_quote(text)} has no UTC offset; set timezone in the mapping")
                parsed = _calendar_time(parsed, zone)
            return parsed.isoformat()
        except (OverflowError, ValueError):
            raise _RowError(f"{where}{_quote(text)} is out of the range of dates") from None

    return convert


# --------------------------------------------------------------------------- #
# Due dates (issue 17)

# The end of a due day, as every due date in Collect's examples is: 23:59 local
# time ("2022-07-11 21:59:00 UTC" is 23:59 in Paris in summer; collect-api.md §4, §9).
END_OF_DAY: Final = time(23, 59)
# Until the team's zone is known, a day is judged past only once it is past in
# every zone: its end in the westernmost one, UTC-12, is the latest.
_WESTERNMOST: Final = timezone(timedelta(hours=-12))
FAR_AHEAD_SECONDS: Final = 2 * 365.25 * 86400  # two years: beyond, validate warns
_DUE_CACHE_SIZE: Final = 4096  # distinct cells remembered per field (sheets repeat dates)


class DueDates:
    """How one mapping's dueDate becomes the instant sent (issue 17).

    A due *day* (no time of day) is sent as END_OF_DAY that day, as an ISO 8601
    instant with its offset, in the field's `timezone`, else in the team's zone
    (GET /team `tz`, given to ``Mapping.use_team_zone`` at send time). A date-time
    with an offset is that instant; one without is read in the same zone, DST
    gaps and overlaps as a calendar reads them (``_calendar_time``). Until the
    team's zone is known (validate, a dry run, the read before the preflight) a
    day that needs it is rendered with no offset and judged past only when it is
    past in every zone. A due date before ``clock()`` (seconds since the epoch)
    makes the row invalid unless the field says `past: allow`.

    ``late`` is set by a converter during one ``Mapping.apply`` when the row's
    due date is past; ``apply`` clears it first. ``generation`` changes with the
    team's zone, so that cached conversions made without it are not reused.
    """

    __slots__ = ("clock", "field_zone", "generation", "late", "mapped", "needs_team_zone",
                 "team_zone", "team_zone_name")

    def __init__(self, clock: Callable[[], float] = _time.time) -> None:
        self.clock = clock
        self.mapped = False  # the mapping has a dueDate field
        self.field_zone: str | None = None  # its `timezone`, if any
        self.needs_team_zone = False  # it has no `timezone`
        self.team_zone: tzinfo | None = None
        self.team_zone_name: str | None = None
        self.late: str | None = None
        self.generation = 0

    def resolve(self, moment: date, zone: tzinfo | None) -> tuple[float, str]:
        """(seconds since the epoch, text to send) of a day or a date-time.

        Raises OverflowError or ValueError at the ends of the range of dates."""
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            return moment.timestamp(), moment.isoformat()
        wall = moment if isinstance(moment, datetime) else datetime.combine(moment, END_OF_DAY)
        zone = zone or self.team_zone
        if zone is None:  # the team's zone is read at send time
            return wall.replace(tzinfo=_WESTERNMOST).timestamp(), wall.isoformat()
        instant = _calendar_time(wall, zone)
        return instant.timestamp(), instant.isoformat()

    def far_ahead(self, value: object) -> bool:
        """Whether a payload's dueDate (as rendered by resolve) is more than two years ahead."""
        if not isinstance(value, str):
            return False
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_WESTERNMOST)
            return moment.timestamp() > self.clock() + FAR_AHEAD_SECONDS
        except (OverflowError, ValueError):
            return False


def _due_converter(where: str, spec_type: str, fmt: str | None, zone: tzinfo | None,
                   dates: DueDates, past_hint: str | None) -> Converter:
    """Cell text → the dueDate sent (DueDates); `past_hint` None means `past: allow`.

    A naive midnight under `type: date` is a day, as spreadsheets write date cells."""
    cache: dict[str, tuple[int, float, str]] = {}  # text -> (generation, epoch, rendered)

    def moment(text: str) -> date:
        parsed, has_time = _read_moment(where, text, fmt)
        if not has_time or (spec_type == "date" and parsed.tzinfo is None and parsed.time() == _MIDNIGHT):
            return parsed.date()
        return parsed

    def convert(text: str) -> str:
        hit = cache.get(text)
        if hit is None or hit[0] != dates.generation:
            due = moment(text)
            try:
                hit = (dates.generation, *dates.resolve(due, zone))
            except (OverflowError, ValueError):
                raise _RowError(f"{where}{_quote(text)} is out of the range of dates") from None
            if len(cache) >= _DUE_CACHE_SIZE:
                cache.clear()
            cache[text] = hit
        if past_hint is not None and hit[1] < dates.clock() and dates.late is None:
            dates.late = f"{where}due date {_quote(text)} is in the past ({hit[2]}); {past_hint}"
        return hit[2]

    return convert


class _DueDefault:
    """A dueDate's `default`, resolved for each row that falls back on it."""

    __slots__ = ("convert", "text")

    def __init__(self, convert: Converter, text: str) -> None:
        self.convert = convert
        self.text = text

    def __call__(self) -> Any:
        return self.convert(self.text)


def _converter(where: str, kind: str, split: str, fmt: str | None, zone: tzinfo | None) -> Converter | None:
    if kind == "int":
        return _int_converter(where)
    if kind == "bool":
        return _bool_converter(where)
    if kind == "email":
        return _email_converter(where)
    if kind == "list":
        return _list_converter(split)
    if kind in ("date", "datetime"):
        return _date_converter(where, kind, fmt, zone)
    return None  # string: the text itself


# --------------------------------------------------------------------------- #
# Getters


def _column_getter(
    column: str,
    *,
    strip: bool,
    lower: bool,
    convert: Converter | None,
    default: Any,
    required: bool,
) -> Getter:
    finish = _finisher(f"column {_quote(column)} is empty (required)", lower=lower,
                       convert=convert, default=default, required=required)

    def get(values: Values) -> Any:
        text = values.get(column, "")
        return finish(text.strip() if strip else text)

    return get


def _finisher(
    empty: str, *, lower: bool, convert: Converter | None, default: Any, required: bool
) -> Callable[[str], Any]:
    """What a cell's (or a template's) text becomes: converted when present, else
    the default, else a row error when required, else omitted."""
    copy_default = isinstance(default, list | dict)
    resolve = default if isinstance(default, _DueDefault) else None

    def finish(text: str) -> Any:
        if text:
            if lower:
                text = text.lower()
            if convert is None:
                return text
            value = convert(text)
            if value is not None:
                return value
        if resolve is not None:
            return resolve()
        if default is not _OMIT:
            return copy.deepcopy(default) if copy_default else default
        if required:
            raise _RowError(empty)
        return _OMIT

    return finish


def _template_getter(
    template: str,
    fmt: str,
    columns: tuple[str, ...],
    *,
    strip: bool,
    lower: bool,
    convert: Converter | None,
    default: Any,
    required: bool,
) -> Getter:
    named = ", ".join(_quote(column) for column in columns)
    empty = f"template {_quote(template)} is empty (required)" + (
        f"; columns {named} are empty" if columns else ""
    )
    finish = _finisher(empty, lower=lower, convert=convert, default=default, required=required)

    def get(values: Values) -> Any:
        if strip:
            cells = [values.get(column, "").strip() for column in columns]
        else:
            cells = [values.get(column, "") for column in columns]
        return finish(fmt.format(*cells).strip())

    return get


def _constant_getter(value: Any) -> Getter:
    if isinstance(value, list | dict):
        # A fresh copy per row: a later stage may add to a payload it was given.
        return lambda values: copy.deepcopy(value)
    return lambda values: value


def _object_getter(fields: list[tuple[str, Getter]]) -> Getter:
    """Build an object of the fields that are not omitted; omit it when none is left."""
    pairs = tuple(fields)

    def get(values: Values) -> Any:
        built: dict[str, Any] = {}
        for name, getter in pairs:
            value = getter(values)
            if value is not _OMIT:
                built[name] = value
        return built if built else _OMIT

    return get


def _list_of_objects_getter(items: list[Getter]) -> Getter:
    parts = tuple(items)

    def get(values: Values) -> Any:
        built = [value for value in (getter(values) for getter in parts) if value is not _OMIT]
        return built if built else _OMIT

    return get


def _sample_getter(inner: Getter) -> Getter:
    # collect-api.md §4: sample is {itemId, url} and both keys are expected.
    def get(values: Values) -> Any:
        value = inner(values)
        if value is not _OMIT and len(value) != len(SAMPLE_FIELDS):
            missing = next(name for name in SAMPLE_FIELDS if name not in value)
            raise _RowError(f"sample.{missing} is empty but sample needs both itemId and url")
        return value

    return get


def _key_text(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    )
    # Escape the separator so that two different rows never share a key.
    if "\\" in text or _KEY_SEPARATOR in text:
        text = text.replace("\\", "\\\\").replace(_KEY_SEPARATOR, "\\" + _KEY_SEPARATOR)
    return text


# --------------------------------------------------------------------------- #
# The compiled mapping


class Mapping:
    """A checked mapping file, compiled for `apply`."""

    __slots__ = (
        "_build",
        "_catalogues",
        "_keys",
        "campaign_id",
        "columns_used",
        "digest",
        "due_dates",
        "fed",
        "folded",
        "key_paths",
        "path",
    )

    def __init__(
        self,
        *,
        path: str,
        digest: str,
        key_paths: list[str],
        columns_used: list[str],
        campaign_id: str | None,
        build: Getter,
        due_dates: DueDates | None = None,
        folded: frozenset[str] = frozenset(),
        fed: dict[str, list[tuple[str, str]]] | None = None,
    ) -> None:
        self.path = path
        self.digest = digest  # sha256 of the file text: a rerun warns when it changed
        self.key_paths = key_paths
        self.columns_used = columns_used
        # The campaign when it is a constant (for checking it before a run), else None.
        self.campaign_id = campaign_id
        self._build = build
        # The zone and clock the dueDate is resolved with (the clock is settable for tests).
        self.due_dates = due_dates if due_dates is not None else DueDates()
        # Payload paths of emails: sent as written, compared ignoring case in
        # the key (a key path that is one, or holds some, is lower-cased there).
        self.folded = folded
        # Campaign id -> its elements (items.py), set at send time by use_items:
        # items named by their element's name are then sent as the element's id.
        self._catalogues: dict[str, Catalogue] = {}
        # Column -> the (payload path, spec type) of each field it fills: which
        # columns feed text (api.py warns when pandas has typed one of those).
        self.fed = fed if fed is not None else {}
        self._keys = tuple(
            (path, tuple(path.split(".")), path in folded,
             tuple(tuple(f.split(".")[len(path.split(".")):]) for f in folded if f.startswith(path + ".")))
            for path in key_paths
        )

    def __repr__(self) -> str:
        return f"Mapping(path={self.path!r}, key_paths={self.key_paths!r})"

    def apply(self, row: Row) -> Mapped:
        """Map one row to its payload and key, or to the first reason it cannot be sent
        (a row left out by reading, such as a hidden one, has that reason)."""
        if row.left_out:
            return Mapped(row.number, None, None, row.left_out)
        if row.extra:
            return Mapped(row.number, None, None, _extra_cells_error(row.extra))
        dates = self.due_dates
        dates.late = None
        try:
            payload = self._build(row.values)
            if payload is _OMIT:
                payload = {}
            for required in ("campaignId", "contact"):
                if required not in payload:
                    raise _RowError(f"{required} is empty (the API requires it)")
            if self._catalogues and "items" in payload:
                try:
                    resolve_payload_items(payload, self._catalogues)
                except ItemProblem as problem:
                    raise _RowError(f"items: {problem}") from None
            parts = []
            for path, steps, fold, inside in self._keys:
                value: Any = payload
                for step in steps:
                    value = value.get(step) if isinstance(value, dict) else None
                if value is None or value == "" or value == [] or value == {}:
                    raise _RowError(f"key part {path} is empty")
                if fold and isinstance(value, str):
                    value = value.lower()
                elif inside:
                    value = _folded(value, inside)
                parts.append(_key_text(value))
        except _RowError as error:
            return Mapped(row.number, None, None, error.message)
        if dates.late is not None:  # invalid, but its key lets a rerun find it sent earlier
            return Mapped(row.number, None, _KEY_SEPARATOR.join(parts), dates.late)
        return Mapped(row.number, payload, _KEY_SEPARATOR.join(parts), None)

    def use_items(self, catalogues: dict[str, Catalogue]) -> None:
        """Send items named by an element's name as that element's id from now on.

        ``catalogues`` maps a campaign id to its elements (items.py), as the
        preflight read them through GET /campaigns/{id} (collect-api.md §6).
        Called at send time, like use_team_zone. A row whose item names no
        element of its (checked) campaign, or several, is then invalid."""
        self._catalogues = dict(catalogues)

    def use_team_zone(self, name: object) -> None:
        """Resolve the dueDate in the team's time zone from now on.

        `name` is the `tz` that GET /team answered (an IANA name such as
        "Europe/Paris"). Called at send time, after the preflight and before any
        row is mapped for sending. Raises MappingError when the dueDate needs the
        team's zone (it has no `timezone`) and `name` is not a known zone."""
        dates = self.due_dates
        zone = _zone(name) if isinstance(name, str) and name.strip() else None
        if zone is None:
            if dates.needs_team_zone:
                shown = _quote(name) if isinstance(name, str) else json.dumps(name, default=str)
                raise MappingError(
                    self.path,
                    [f"dueDate has no timezone and the team's time zone from GET /team ({shown})"
                     " is not a known IANA zone; nothing was sent"],
                    hint="add timezone to dueDate in the mapping, e.g. timezone: Europe/Paris",
                )
            return
        dates.team_zone, dates.team_zone_name = zone, str(name)
        dates.generation += 1

    def due_zone_note(self) -> str | None:
        """One line saying in which zone a due day ends, or None when no dueDate is mapped."""
        dates = self.due_dates
        if not dates.mapped:
            return None
        end = f"a due date with no time is sent as {END_OF_DAY:%H:%M} that day"
        if dates.field_zone is not None:
            return f"dueDate: {end} in {dates.field_zone} (the mapping's timezone)"
        if dates.team_zone_name is not None:
            return f"dueDate: {end} in {dates.team_zone_name} (the team's time zone, from GET /team)"
        return (
            f"dueDate: {end} in the team's time zone, read from GET /team when sending"
            " (no timezone in the mapping; until then it is shown without an offset)"
        )

    def due_far_ahead(self, payload: dict[str, Any] | None) -> bool:
        """Whether a payload's dueDate is more than two years ahead (often a swapped day and month)."""
        return payload is not None and self.due_dates.far_ahead(payload.get("dueDate"))


def _folded(value: Any, inside: tuple[tuple[str, ...], ...]) -> Any:
    """A copy of ``value`` with the strings at the paths ``inside`` lower-cased."""
    if not isinstance(value, dict):
        return value
    copied = dict(value)
    for steps in inside:
        if steps and steps[0] in copied:
            item = copied[steps[0]]
            if len(steps) > 1:
                copied[steps[0]] = _folded(item, (steps[1:],))
            elif isinstance(item, str):
                copied[steps[0]] = item.lower()
    return copied


def _extra_cells_error(extra: tuple[str, ...]) -> str:
    count = len(extra)
    shown = ", ".join(_quote(cell, limit=30) for cell in extra[:3])
    if count > 3:
        shown += ", …"
    cells = "cell" if count == 1 else "cells"
    return f"row has {count} more {cells} than the header ({shown})"


# --------------------------------------------------------------------------- #
# Loading and checking


def load_mapping(path: str, columns: Sequence[str], *, header: Header | None = None) -> Mapping:
    """Read and check the mapping file against the input's columns.

    Column names match after ``reading.normal_name`` (Unicode NFC, spaces,
    invisible characters). ``header`` (``Table.header``) adds the columns the
    table does not read: a mapping that uses a name several columns share is
    refused; and when a column is missing but one of the first rows holds every
    column the mapping names, the error says to pass ``--header-row`` with it.
    Raises MappingError with every problem of the file, or with the one reason
    the file cannot be read at all.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise MappingError(path, ["file not found"]) from None
    except IsADirectoryError:
        raise MappingError(path, ["is a directory, not a mapping file"]) from None
    except PermissionError:
        raise MappingError(path, ["cannot be read: permission denied"]) from None
    except OSError as error:
        raise MappingError(path, [f"cannot be read: {error.strerror or error}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        byte = raw[error.start]
        raise MappingError(
            path, [f"line {line}: not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"]
        ) from None
    return parse_mapping(text, path, columns, header=header)


def mapping_from_dict(doc: dict[str, Any], name: str, columns: Sequence[str], *,
                      header: Header | None = None) -> Mapping:
    """A mapping given as a dict in the YAML file's shape (the Python API).

    ``doc`` is what ``yaml.safe_load`` of a mapping file returns, e.g.
    ``{"campaignId": {"value": "xvr69EYLKXvTkfYuk"}, "contact": {"email": "Email"}}``;
    it is checked exactly as that file would be. ``name`` names the mapping in
    messages (there are no line numbers: each problem names its key path).
    Raises MappingError with every problem, or TypeError when ``doc`` is not a dict.
    """
    if not isinstance(doc, dict):
        raise TypeError(f"mapping: expected a dict in the mapping file's shape or a path, "
                        f"not {type(doc).__name__}")
    text = yaml.safe_dump(_yaml_ready(name, doc, ""), sort_keys=False, allow_unicode=True)
    return parse_mapping(text, name, columns, header=header, lines=False)


def _yaml_ready(name: str, value: object, path: str) -> Any:
    """``value`` with tuples as lists; MappingError naming the first part a
    mapping file could not hold (an object, a set, a key that is not text)."""
    if value is None or isinstance(value, str | bool | int | float | date):
        return value
    if isinstance(value, list | tuple):
        return [_yaml_ready(name, item, f"{path}[{i}]") for i, item in enumerate(value)]
    hint = "a mapping holds text, numbers, booleans, dates, lists and dicts"
    if isinstance(value, dict):
        ready: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise MappingError(name, [f"{path or 'the mapping'}: key {key!r} is not text"], hint=hint)
            ready[key] = _yaml_ready(name, item, _join(path, key))
        return ready
    raise MappingError(name, [f"{path or 'the mapping'}: a {type(value).__name__} cannot be written "
                              "in a mapping"], hint=hint)


def parse_mapping(text: str, path: str, columns: Sequence[str], *, header: Header | None = None,
                  lines: bool = True) -> Mapping:
    """Check mapping text against the input's columns; see load_mapping.
    ``lines=False``: problems name key paths only (a mapping given as a dict)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        parts = [part for part in (error.context, error.problem) if part]
        what = " ".join(parts) if parts else "cannot be parsed"
        raise MappingError(path, [f"{where}YAML syntax error: {what}"]) from None
    except yaml.YAMLError as error:
        raise MappingError(path, [f"YAML syntax error: {error}"]) from None
    compiler = _Compiler(columns, header)
    compiler.lines = lines
    build = compiler.compile(root)
    if compiler.problems or build is None:
        raise MappingError(path, compiler.problems, hint=compiler.header_hint())
    return Mapping(
        path=path,
        digest=digest,
        key_paths=compiler.key_paths,
        columns_used=list(compiler.columns_used),
        campaign_id=compiler.campaign_id,
        build=build,
        due_dates=compiler.dates,
        folded=frozenset(compiler.folded),
        fed=compiler.fed,
    )


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "nothing"
    return f"{_quote(str(node.value))}"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Compiler:
    """Walks the YAML node tree, collecting problems and building getters."""

    def __init__(self, columns: Sequence[str], header: Header | None = None) -> None:
        self.columns = list(columns)
        self.column_set = frozenset(columns)
        self.by_normal: dict[str, list[str]] = {}  # normal_name -> the header's names
        for column in self.columns:
            self.by_normal.setdefault(normal_name(column), []).append(column)
        self.header = header
        self.asked: dict[str, None] = {}  # every column name the mapping gives (ordered set)
        self.missing = False  # a column the mapping names is not in the file
        self.folded: set[str] = set()  # payload paths of emails, compared ignoring case in keys
        self.problems: list[str] = []
        self.columns_used: dict[str, None] = {}  # ordered set
        self.fed: dict[str, list[tuple[str, str]]] = {}  # column -> (payload path, spec type) it fills
        self.lines = True  # problems start with the file's line (False: a mapping given as a dict)
        self.key_paths: list[str] = []
        self.campaign_id: str | None = None
        self.constructor = SafeConstructor()
        self.walked: set[int] = set()  # ids of mapping nodes whose keys were checked
        self.plain_budget = 100_000  # YAML values read as constants, all told
        self.dates = DueDates()  # shared by the dueDate's converters and the Mapping

    # -- reporting ---------------------------------------------------------- #

    def header_hint(self) -> str | None:
        """When a column is missing and one of the file's first rows holds every
        column the mapping names: that row, and the option that reads it."""
        if not self.missing or self.header is None or not self.asked:
            return None
        row = self.header.row_holding(self.asked)
        if row is None:
            return None
        return (f"row {row} of the file holds every column the mapping names (the header was read on"
                f" row {self.header.row}): pass --header-row {row}")

    def problem(self, node: Node, path: str, message: str) -> None:
        if not self.lines:
            self.problems.append(f"{path or 'the mapping'}: {message}")
            return
        where = f"line {_line(node)}, {path}" if path else f"line {_line(node)}"
        self.problems.append(f"{where}: {message}")

    def feeds(self, column: str, path: str, spec_type: str) -> None:
        self.fed.setdefault(column, []).append((path, spec_type))

    def entries(self, node: MappingNode, path: str) -> list[tuple[str, Node, Node]]:
        """The (name, key node, value node) of a mapping; reports odd and repeated keys.

        YAML merge keys (``<<: *anchor``) are applied first; a key of the mapping
        itself then overrides a merged one, as in PyYAML's own loading.
        """
        report = id(node) not in self.walked  # report each mapping's problems once
        self.walked.add(id(node))
        if report:
            seen: set[str] = set()
            for key_node, _value in node.value:
                if isinstance(key_node, ScalarNode) and not key_node.tag.endswith(":merge"):
                    name = str(key_node.value)
                    if name in seen:
                        self.problem(key_node, _join(path, name), "appears twice")
                    seen.add(name)
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as error:
            if report:
                self.problem(node, path, f"cannot merge: {getattr(error, 'problem', error)}")
        found: dict[str, tuple[str, Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                if report:
                    self.problem(key_node, path, "a key must be plain text")
                continue
            name = str(key_node.value)
            found.pop(name, None)  # the later one wins and takes the later place
            found[name] = (name, key_node, value_node)
        return list(found.values())

    def use_column(self, node: Node, path: str, column: str) -> str | None:
        """The header's name for a column the mapping names: the same text, or
        the one name equal to it after ``normal_name`` (NFC, spaces, invisible
        characters); None, with the problem reported, when there is none."""
        self.asked.setdefault(column, None)
        key = normal_name(column)
        matches = [column] if column in self.column_set else self.by_normal.get(key, [])
        ambiguous = self.header.ambiguous.get(key) if self.header is not None else None
        if ambiguous is not None and column not in self.column_set:
            self.problem(node, path, f"column {_quote(column)} is ambiguous: the file has it on columns"
                         f" {', '.join(ambiguous)}; rename all but one in the file's header row")
            return None
        if len(matches) > 1:
            self.problem(node, path, f"column {_quote(column)} matches several columns of the file"
                         f" ({', '.join(_quote(m) for m in matches)}); name one exactly")
            return None
        if matches:
            self.columns_used.setdefault(matches[0], None)
            return matches[0]
        self.missing = True
        near = _closest(column, self.columns)
        differs = None if near is None else _difference(column, near)
        closest = "" if near is None else f" (closest: {_quote(near)}{': ' + differs if differs else ''})"
        self.problem(node, path, f"column {_quote(column)} is not in the file{closest}")
        return None

    # -- YAML values -------------------------------------------------------- #

    def scalar(self, node: ScalarNode) -> Any:
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as error:
            raise _Problem(f"cannot read value: {getattr(error, 'problem', error)}", node) from None

    def plain(self, node: Node, inside: frozenset[int] = frozenset()) -> Any:
        """A YAML value as JSON-ready Python (dates as ISO text); _Problem otherwise.

        Aliases are followed, so a value that contains itself, or one that grows
        past a sane size through nested aliases ("billion laughs"), is refused.
        """
        self.plain_budget -= 1
        if self.plain_budget < 0:
            raise _Problem("is too large (more than 100,000 values)", node)
        if id(node) in inside:
            raise _Problem("contains itself (a recursive alias)", node)
        if isinstance(node, ScalarNode):
            value = self.scalar(node)
            if isinstance(value, datetime | date):
                return value.isoformat()
            if isinstance(value, float) and not math.isfinite(value):
                raise _Problem(f"{node.value} cannot be sent as JSON", node)
            if value is None or isinstance(value, str | bool | int | float):
                return value
            raise _Problem(f"a {type(value).__name__} value cannot be sent as JSON", node)
        inside = inside | {id(node)}
        if isinstance(node, SequenceNode):
            return [self.plain(item, inside) for item in node.value]
        if isinstance(node, MappingNode):
            try:
                self.constructor.flatten_mapping(node)
            except yaml.YAMLError as error:
                raise _Problem(f"cannot merge: {getattr(error, 'problem', error)}", node) from None
            built: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise _Problem("a key must be plain text", key_node)
                built[str(key_node.value)] = self.plain(value_node, inside)
            return built
        raise _Problem("unsupported YAML value", node)  # pragma: no cover

    def typed_constant(self, value: Any, kind: str, node: Node, convert: Converter | None) -> Any:
        """Check a constant (a `value` or a `default`) against the field's type."""
        if value is None:
            raise _Problem("is empty: give a value, or leave the field out", node)
        if isinstance(value, str):
            text = value.strip()
            if not text:
                raise _Problem("is empty: give a value, or leave the field out", node)
            if kind == "email":
                text = text.lower()
            if convert is None:
                return text
            try:
                converted = convert(text)
            except _RowError as error:
                raise _Problem(error.message, node) from None
            if converted is None:
                raise _Problem("is empty: give a value, or leave the field out", node)
            return converted
        if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "bool" and (isinstance(value, bool) or value in (0, 1)):
            return bool(value)
        if kind == "list" and isinstance(value, list):
            items = [item for item in value if item is not None]
            if all(isinstance(item, str | int) and not isinstance(item, bool) for item in items):
                kept = [str(item).strip() for item in items]
                return [item for item in kept if item] or _problem("is an empty list", node)
        expected = {
            "string": "text",
            "email": "an email address",
            "int": "a whole number",
            "bool": "true or false",
            "list": "a list of text",
            "date": "a date (YYYY-MM-DD)",
            "datetime": "a date and time with a UTC offset",
        }[kind]
        raise _Problem(f"{json.dumps(value, default=str)} is not {expected}", node)

    # -- value specs -------------------------------------------------------- #

    def value_spec(self, node: Node, path: str, kind: str) -> tuple[Getter, Shape] | None:
        """A leaf field: a column name, a constant, a template or a column spec."""
        default_type, allowed = _KINDS[kind]
        if isinstance(node, ScalarNode):
            if node.tag.endswith(":str"):
                column = str(node.value)
                if not column.strip():
                    self.problem(node, path, "is empty: name a column, or use {value: …}")
                    return None
                found = self.use_column(node, path, column)
                if found is None:
                    return None
                self.feeds(found, path, default_type)
                where = f"column {_quote(found)}: "
                convert = (
                    self.due_converter(where, default_type, None, None, None, allow_past=False)
                    if kind == "due"
                    else _converter(where, default_type, _DEFAULT_SPLIT, None, None)
                )
                if default_type == "email":
                    self.folded.add(path)  # sent as written; the key ignores case (issue 10)
                getter = _column_getter(
                    found,
                    strip=True,
                    lower=False,
                    convert=convert,
                    default=_OMIT,
                    required=True,
                )
                return getter, None
            if node.tag.endswith(":null"):
                self.problem(node, path, "has no value: name a column, or use {value: …}")
                return None
            return self.constant(node, path, kind)
        if isinstance(node, SequenceNode):
            self.problem(
                node,
                path,
                "expected a column name or a spec, found a list (a constant list is written {value: [a, b]})",
            )
            return None
        assert isinstance(node, MappingNode)
        return self.spec_mapping(node, path, kind, default_type, allowed)

    def constant(self, node: Node, path: str, kind: str) -> tuple[Getter, Shape] | None:
        if kind == "due":
            return self.due_constant(node, path)
        try:
            value = self.plain(node)
            if kind != "any":
                default_type = _KINDS[kind][0]
                value = self.typed_constant(
                    value,
                    default_type,
                    node,
                    _converter("", default_type, _DEFAULT_SPLIT, None, None),
                )
            elif value is None:
                raise _Problem("is empty: give a value, or leave the field out", node)
        except _Problem as problem:
            self.problem(problem.node or node, path, problem.message)
            return None
        return _constant_getter(value), _shape_of(value)

    def due_converter(self, where: str, spec_type: str, fmt: str | None, zone_name: str | None,
                      zone: tzinfo | None, *, allow_past: bool, fix: str = "correct the cell") -> Converter:
        """The dueDate's converter (DueDates); notes the zone it uses for Mapping.due_zone_note.
        `fix` starts the hint of a past due date's error."""
        dates = self.dates
        dates.mapped = True
        dates.field_zone = zone_name if zone is not None else None
        dates.needs_team_zone = zone is None
        hint = None if allow_past else f"{fix}, or add past: allow to dueDate in the mapping"
        return _due_converter(where, spec_type, fmt, zone, dates, hint)

    def past_option(self, option: tuple[Node, Node] | None, path: str, *, due: bool) -> str | None:
        """`past: allow | refuse` of the dueDate (refuse when absent); a problem elsewhere."""
        if option is None:
            return None
        node = option[1]
        where = _join(path, "past")
        if not due:
            self.problem(node, where, "applies to dueDate only")
            return None
        if isinstance(node, ScalarNode) and node.tag.endswith(":str") and node.value in ("allow", "refuse"):
            return str(node.value)
        self.problem(node, where, f"must be allow or refuse, found {_describe(node)}")
        return None

    def due_constant(self, node: Node, path: str) -> tuple[Getter, Shape] | None:
        """`dueDate: {value: 2027-01-15}` (or a bare YAML date): checked now,
        resolved for each row, since the team's zone and the time of sending
        are known only then."""
        convert = self.due_converter("", "date", None, None, None, allow_past=False,
                                     fix="correct it (a constant takes no past: allow)")
        try:
            value = self.plain(node)
            self.typed_constant(value, "date", node, convert)
        except _Problem as problem:
            self.problem(problem.node or node, path, problem.message)
            return None
        text = str(value).strip()
        return (lambda values: convert(text)), None

    def spec_mapping(
        self, node: MappingNode, path: str, kind: str, default_type: str, allowed: frozenset[str]
    ) -> tuple[Getter, Shape] | None:
        before = len(self.problems)
        options = {name: (key, value) for name, key, value in self.entries(node, path)}
        unknown = False
        for name, (key_node, _value) in options.items():
            if name not in SPEC_OPTIONS:
                self.problem(
                    key_node,
                    _join(path, name),
                    f"unknown option{_suggest(name, SPEC_OPTIONS)}; "
                    "a spec takes column, value or template plus "
                    "default, required, type, split, format, timezone, lower, strip",
                )
                unknown = True
        sources = [name for name in ("column", "value", "template") if name in options]
        if len(sources) != 1:
            what = (
                f"has both {' and '.join(sources)}: use only one"
                if sources
                else "needs one of column, value or template"
            )
            if sources or not unknown:  # an unknown option is most likely the misspelt source
                self.problem(node, path, what)
            return None
        source = sources[0]
        if source == "value":
            others = [name for name in options if name != "value" and name in SPEC_OPTIONS]
            if others:
                self.problem(node, path, f"a constant takes no other options (found {', '.join(others)})")
            if len(self.problems) != before:
                return None
            return self.constant(options["value"][1], path, kind)

        def flag(name: str, fallback: bool) -> bool:
            if name not in options:
                return fallback
            value_node = options[name][1]
            value: Any = None
            if isinstance(value_node, ScalarNode) and value_node.tag.endswith(":bool"):
                value = self.scalar(value_node)
            if not isinstance(value, bool):
                self.problem(
                    value_node,
                    _join(path, name),
                    f"must be true or false, found {_describe(value_node)}",
                )
                return fallback
            return value

        def text(name: str, *, blank: bool = False) -> str | None:
            if name not in options:
                return None
            value_node = options[name][1]
            if not (isinstance(value_node, ScalarNode) and value_node.tag.endswith(":str")):
                self.problem(value_node, _join(path, name), f"must be text, found {_describe(value_node)}")
                return None
            value = str(value_node.value)
            if not (value if blank else value.strip()):
                self.problem(value_node, _join(path, name), "is empty")
                return None
            return value

        def option_problem(name: str, message: str) -> None:
            self.problem(options[name][1], _join(path, name), message)

        strip = flag("strip", True)
        required = flag("required", True)
        spec_type = text("type")
        split = text("split", blank=True)
        fmt = text("format")
        zone_name = text("timezone")
        past = self.past_option(options.get("past"), path, due=kind == "due")
        source_text = text(source)

        kind_type = default_type
        if spec_type is not None:
            if spec_type not in TYPES:
                option_problem(
                    "type",
                    f"unknown type {_quote(spec_type)}{_suggest(spec_type, TYPES)};"
                    f" types are {', '.join(TYPES)}",
                )
            elif spec_type not in allowed:
                option_problem(
                    "type",
                    f"type {spec_type} does not fit this field"
                    f" (it takes {', '.join(t for t in TYPES if t in allowed)})",
                )
            else:
                kind_type = spec_type
        # An email is sent as written (the API's contact look-up is exact) and
        # compared ignoring case in the key, unless the mapping sets lower:
        # true lowers both, false neither (the keys of earlier runs stay the same).
        lower = flag("lower", False)
        if kind_type == "email" and ("lower" not in options or lower):
            self.folded.add(path)

        if split is not None and kind_type != "list":
            option_problem("split", f"applies to type list, not {kind_type}")
        is_date = kind_type in ("date", "datetime")
        if fmt is not None:
            bad = f"applies to type date or datetime, not {kind_type}" if not is_date else _bad_format(fmt)
            if bad is not None:
                option_problem("format", bad)
        zone: tzinfo | None = None
        if zone_name is not None:
            if not is_date:
                option_problem("timezone", f"applies to type date or datetime, not {kind_type}")
            else:
                zone = _zone(zone_name)
                if zone is None:
                    hint = _suggest(zone_name, sorted(zoneinfo.available_timezones()))
                    option_problem(
                        "timezone",
                        f"unknown time zone {_quote(zone_name)}{hint} (an IANA name such as Europe/Paris)",
                    )
        # A dueDate with no zone uses the team's (DueDates).
        if (kind_type == "datetime" and kind != "due" and fmt is not None and zone_name is None
                and "%z" not in fmt):
            option_problem(
                "format",
                "has no %z and no timezone is set, so the times would have no UTC offset;"
                " add timezone (e.g. timezone: Europe/Paris)",
            )

        # The source: a column, or a template over columns.
        template_parts: tuple[str, tuple[str, ...]] = ("", ())
        if source_text is None:
            return None  # reported by text()
        source_node = options[source][1]
        column = source_text
        if source == "column":
            column = self.use_column(source_node, _join(path, "column"), source_text) or source_text
            where = f"column {_quote(column)}: "
        else:
            try:
                template_parts = _parse_template(source_text)
            except _Problem as problem:
                option_problem("template", problem.message)
            else:
                found = [self.use_column(source_node, _join(path, "template"), n) for n in template_parts[1]]
                template_parts = template_parts[0], tuple(f or n for f, n in zip(found, template_parts[1],
                                                                                 strict=True))
            where = f"template {_quote(source_text)}: "

        separator = split if split is not None else _DEFAULT_SPLIT
        if len(self.problems) != before:
            return None
        for used in [column] if source == "column" else template_parts[1]:
            # A template's columns are read as text, whatever the field's type.
            self.feeds(used, path, kind_type if source == "column" else "string")
        due = kind == "due"
        allow_past = past == "allow"
        default: Any = _OMIT
        if "default" in options:
            default_node = options["default"][1]
            default_convert = (
                self.due_converter(f"{path}.default: ", kind_type, fmt, zone_name, zone,
                                   allow_past=allow_past, fix="correct the default")
                if due
                else _converter("", kind_type, separator, fmt, zone)
            )
            try:
                value = self.plain(default_node)
                default = self.typed_constant(
                    value.lower() if lower and isinstance(value, str) else value,
                    kind_type,
                    default_node,
                    default_convert,
                )
            except _Problem as problem:
                self.problem(problem.node or default_node, _join(path, "default"), problem.message)
                return None
            if due and default_convert is not None:
                # Resolved for each row, like the cells: the zone and the clock are known then.
                default = _DueDefault(default_convert, str(value).strip())

        convert = (
            self.due_converter(where, kind_type, fmt, zone_name, zone, allow_past=allow_past)
            if due
            else _converter(where, kind_type, separator, fmt, zone)
        )
        if source == "column":
            getter = _column_getter(
                column,
                strip=strip,
                lower=lower,
                convert=convert,
                default=default,
                required=required,
            )
        else:
            fmt_string, names = template_parts
            getter = _template_getter(
                source_text,
                fmt_string,
                names,
                strip=strip,
                lower=lower,
                convert=convert,
                default=default,
                required=required,
            )
        return getter, None

    # -- objects ------------------------------------------------------------ #

    def free_object(self, node: Node, path: str) -> tuple[Getter, Shape] | None:
        """`data` and `contact.data`: free keys, each a value spec."""
        if isinstance(node, MappingNode):
            entries = self.entries(node, path)
            if len(entries) == 1 and entries[0][0] == "value" and isinstance(entries[0][2], MappingNode):
                return self.constant(entries[0][2], path, "any")  # {value: {…}}
            fields: list[tuple[str, Getter]] = []
            shape: dict[str, Any] = {}
            for name, _key, value_node in entries:
                compiled = self.value_spec(value_node, _join(path, name), "any")
                if compiled is not None:
                    fields.append((name, compiled[0]))
                    shape[name] = compiled[1]
            return _object_getter(fields), shape
        self.problem(node, path, f"expected a mapping of data fields, found {_describe(node)}")
        return None

    def fixed_object(
        self, node: MappingNode, path: str, known: dict[str, str], what: str
    ) -> tuple[Getter, Shape] | None:
        fields: list[tuple[str, Getter]] = []
        shape: dict[str, Any] = {}
        for name, key_node, value_node in self.entries(node, path):
            field_path = _join(path, name)
            kind = known.get(name)
            if kind is None:
                self.unknown_field(key_node, field_path, name, known, what)
                continue
            compiled = (
                self.free_object(value_node, field_path)
                if kind == "object"
                else self.value_spec(value_node, field_path, kind)
            )
            if compiled is not None:
                fields.append((name, compiled[0]))
            shape[name] = None if compiled is None else compiled[1]
        return _object_getter(fields), shape

    def unknown_field(self, node: Node, path: str, name: str, known: dict[str, str], what: str) -> None:
        hint = _suggest(name, list(known))
        self.problem(node, path, f"not a {what} field{hint}; {what} fields are {', '.join(known)}")

    def constant_object(
        self, node: MappingNode, path: str, known: dict[str, str], what: str
    ) -> dict[str, Any] | None:
        """A constant object of fixed fields ({value: {…}} for contact or sample),
        each field checked as the same field written inline would be; None
        when a problem was reported."""
        try:
            value = self.plain(node)  # also applies merge keys to node
        except _Problem as problem:
            self.problem(problem.node or node, path, problem.message)
            return None
        # The later of repeated keys wins, as in plain().
        nodes = {str(k.value): (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
        checked: dict[str, Any] = {}
        good = True
        for name, field_value in value.items():
            key_node, field_node = nodes.get(name, (node, node))
            field_path = _join(path, name)
            kind = known.get(name)
            if kind is None:
                self.unknown_field(key_node, field_path, name, known, what)
                good = False
                continue
            try:
                if kind == "object":
                    if not isinstance(field_value, dict):
                        raise _Problem(
                            f"expected a mapping of data fields, found {json.dumps(field_value)}",
                            field_node,
                        )
                    checked[name] = field_value
                else:
                    convert = _converter("", kind, _DEFAULT_SPLIT, None, None)
                    checked[name] = self.typed_constant(field_value, kind, field_node, convert)
            except _Problem as problem:
                self.problem(problem.node or field_node, field_path, problem.message)
                good = False
        return checked if good else None

    def contact(self, node: Node) -> tuple[Getter, Shape, bool] | None:
        """The inline contact (→ True) or a contact id (→ False)."""
        if isinstance(node, MappingNode) and not any(
            isinstance(key, ScalarNode) and key.value in ("column", "value", "template")
            for key, _value in node.value
        ):
            compiled = self.fixed_object(node, "contact", CONTACT_FIELDS, "contact")
            names = {key.value for key, _value in node.value if isinstance(key, ScalarNode)}
            if "email" not in names:
                self.problem(node, "contact", "an inline contact needs email")
            return None if compiled is None else (*compiled, True)
        if isinstance(node, SequenceNode):
            self.problem(
                node,
                "contact",
                "expected a mapping of contact fields (email, firstName, …)"
                " or a column holding a contact id, found a list",
            )
            return None
        if isinstance(node, MappingNode):
            value_node = next(
                (v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "value"),
                None,
            )
            if isinstance(value_node, MappingNode):
                # A constant inline contact: {value: {email: …}}, held to the
                # inline form's rules (known fields, email required).
                value = self.constant_object(value_node, "contact", CONTACT_FIELDS, "contact")
                if value is None:
                    return None
                if "email" not in value:
                    self.problem(value_node, "contact", "an inline contact needs email")
                    return None
                return _constant_getter(value), _shape_of(value), True
        compiled = self.value_spec(node, "contact", "string")
        return None if compiled is None else (*compiled, False)

    def constant_sample(self, node: Node, path: str) -> tuple[Getter, Shape] | None:
        """`sample: {value: {itemId: …, url: …}}`: both fields, and nothing else."""
        if not isinstance(node, MappingNode):
            self.problem(node, path, f"expected a mapping {{itemId: …, url: …}}, found {_describe(node)}")
            return None
        value = self.constant_object(node, path, SAMPLE_FIELDS, "sample")
        if value is None:
            return None
        missing = [field for field in SAMPLE_FIELDS if field not in value]
        for field in missing:
            self.problem(node, path, f"needs {field} as well")
        return None if missing else (_constant_getter(value), _shape_of(value))

    def esign_docs(self, node: Node) -> tuple[Getter, Shape] | None:
        # collect-api.md §4: an array of objects (likely elementId, url or data, name).
        if isinstance(node, SequenceNode):
            items: list[Getter] = []
            for index, item in enumerate(node.value):
                compiled = self.free_object(item, f"esignDocs[{index}]")
                if compiled is not None:
                    items.append(compiled[0])
            return _list_of_objects_getter(items), None
        if isinstance(node, MappingNode):
            entries = self.entries(node, "esignDocs")
            if len(entries) == 1 and entries[0][0] == "value":
                value_node = entries[0][2]
                if isinstance(value_node, SequenceNode) and all(
                    isinstance(item, MappingNode) for item in value_node.value
                ):
                    return self.constant(value_node, "esignDocs", "any")
        self.problem(
            node,
            "esignDocs",
            "expected a list of documents (each a mapping such as {elementId: …, url: …})"
            f" or {{value: [...]}}, found {_describe(node)}",
        )
        return None

    # -- the whole file ----------------------------------------------------- #

    def compile(self, root: Node | None) -> Getter | None:
        if root is None:
            self.problems.append("line 1: the file is empty; a mapping needs at least campaignId and contact")
            return None
        if not isinstance(root, MappingNode):
            self.problem(
                root,
                "",
                f"expected a mapping of request fields (campaignId, contact, …), found {_describe(root)}",
            )
            return None
        fields: list[tuple[str, Getter]] = []
        shape: dict[str, Any] = {}
        key_node: Node | None = None
        contact_is_inline: bool | None = None
        for name, name_node, value_node in self.entries(root, ""):
            kind = TOP_KEYS.get(name)
            compiled: tuple[Getter, Shape] | None
            if kind is None:
                self.problem(
                    name_node,
                    name,
                    f"unknown key{_suggest(name, list(TOP_KEYS))}; the keys are the fields of"
                    " POST /request (campaignId, contact, items, data, sample, dueDate,"
                    " createdBy, assignedTo, send…Message, esignDocs, esignTriggers) and key",
                )
                continue
            if kind == "key":
                key_node = value_node
                continue
            if kind == "contact":
                contact = self.contact(value_node)
                if contact is None:
                    contact_is_inline = True  # known to be present; no key problems on top
                    shape["contact"] = {"email": None}
                    continue
                compiled = contact[0], contact[1]
                contact_is_inline = contact[2]
            elif kind == "object":
                compiled = self.free_object(value_node, name)
            elif kind == "sample":
                if isinstance(value_node, MappingNode) and not _is_constant(value_node):
                    compiled = self.fixed_object(value_node, name, SAMPLE_FIELDS, "sample")
                    names = {k.value for k, _v in value_node.value if isinstance(k, ScalarNode)}
                    for missing in (field for field in SAMPLE_FIELDS if field not in names):
                        self.problem(value_node, name, f"needs {missing} as well")
                    if compiled is not None:
                        compiled = _sample_getter(compiled[0]), compiled[1]
                elif isinstance(value_node, MappingNode):
                    compiled = self.constant_sample(value_node.value[0][1], name)
                else:
                    self.problem(
                        value_node,
                        name,
                        f"expected a mapping {{itemId: …, url: …}}, found {_describe(value_node)}",
                    )
                    compiled = None
            elif kind == "esignDocs":
                compiled = self.esign_docs(value_node)
            else:
                compiled = self.value_spec(value_node, name, kind)
                if name == "campaignId" and compiled is not None and _is_constant_node(value_node):
                    value = compiled[0]({})
                    self.campaign_id = value if isinstance(value, str) else None
            if compiled is not None:
                fields.append((name, compiled[0]))
                shape[name] = compiled[1]
            else:
                shape.setdefault(name, None)  # reported already; keep key paths quiet

        names = {key.value for key, _value in root.value if isinstance(key, ScalarNode)}
        for required in ("campaignId", "contact"):
            if required not in names:
                self.problem(root, required, "is missing (POST /request requires it)")
                shape.setdefault(required, None)
        self.compile_key(key_node, shape, contact_is_inline)
        return _object_getter(fields)

    def compile_key(self, node: Node | None, shape: dict[str, Any], inline: bool | None) -> None:
        if node is None:
            self.key_paths = (
                ["campaignId", "contact.email"] if inline in (True, None) else ["campaignId", "contact"]
            )
            return
        items: list[Node]
        if isinstance(node, ScalarNode) and node.tag.endswith(":str"):
            items = [node]
        elif isinstance(node, SequenceNode) and node.value:
            items = list(node.value)
        else:
            found = "an empty list" if isinstance(node, SequenceNode) else _describe(node)
            self.problem(node, "key", f"expected a list of payload paths, found {found}")
            return
        paths: list[str] = []
        known = _all_paths(shape)
        for item in items:
            if not (isinstance(item, ScalarNode) and item.tag.endswith(":str")):
                self.problem(item, "key", f"expected a payload path, found {_describe(item)}")
                continue
            path = str(item.value).strip()
            if path in paths:
                self.problem(item, "key", f"{_quote(path)} is listed twice")
                continue
            if not _has_path(shape, path):
                self.problem(
                    item,
                    "key",
                    f"{_quote(path)} is not a field of this mapping{_suggest(path, known)}",
                )
                continue
            paths.append(path)
        self.key_paths = paths


# --------------------------------------------------------------------------- #
# Small helpers


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _problem(message: str, node: Node) -> Any:
    raise _Problem(message, node)


def _is_constant(node: MappingNode) -> bool:
    return (
        len(node.value) == 1
        and isinstance(node.value[0][0], ScalarNode)
        and node.value[0][0].value == "value"
    )


def _is_constant_node(node: Node) -> bool:
    if isinstance(node, MappingNode):
        return _is_constant(node)
    return isinstance(node, ScalarNode) and not node.tag.endswith(":str")


def _shape_of(value: Any) -> Shape:
    if isinstance(value, dict):
        return {name: _shape_of(item) for name, item in value.items()}
    return None


def _has_path(shape: dict[str, Any], path: str) -> bool:
    node: Any = shape
    for step in path.split("."):
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def _all_paths(shape: dict[str, Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for name, child in shape.items():
        path = _join(prefix, name)
        found.append(path)
        if isinstance(child, dict):
            found.extend(_all_paths(child, path))
    return found


def zone_named(name: str) -> tzinfo | None:
    """The IANA time zone ``name`` ("Europe/Paris"), or None when unknown."""
    return _zone(name)


def _zone(name: str) -> tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _bad_format(fmt: str) -> str | None:
    """Why strptime cannot use fmt, or None when it can."""
    try:
        datetime.strptime("", fmt)
    except ValueError as error:
        message = str(error)
        if message.startswith(("time data", "unconverted data")):
            return None
        return f"is not a strptime format: {message}"
    return "has no date directives (such as %d/%m/%Y)"


def _parse_template(template: str) -> tuple[str, tuple[str, ...]]:
    """Turn "{First Name} {Last Name}" into a positional str.format string and its columns.

    `{{` and `}}` are literal braces; anything between single braces is a column
    name (trimmed), so names with ":" or "!" work, unlike str.format's own fields.
    """
    out: list[str] = []
    names: list[str] = []
    index = 0
    length = len(template)
    while index < length:
        char = template[index]
        if char == "{":
            if template.startswith("{{", index):
                out.append("{{")
                index += 2
                continue
            end = template.find("}", index + 1)
            if end < 0:
                raise _Problem('has a "{" that is never closed (write "{{" for a brace)')
            name = template[index + 1 : end].strip()
            if "{" in name:
                raise _Problem('has a "{" inside a placeholder')
            if not name:
                raise _Problem('has an empty placeholder "{}"')
            out.append("{" + str(len(names)) + "}")
            names.append(name)
            index = end + 1
        elif char == "}":
            if template.startswith("}}", index):
                out.append("}}")
                index += 2
                continue
            raise _Problem('has a "}" without "{" (write "}}" for a brace)')
        else:
            out.append(char)
            index += 1
    return "".join(out), tuple(names)
