"""What a results file remembers of the send that made it, for the commands after it (issue 27).

A send keeps in its journal's meta (store/journal.py; never the key): the API
URL it sent to, how its mapping read ``dueDate`` (format, timezone, type) and
its input (the contacts and mapping files, the reading options given, the
folder it ran in). Read here, read only:

* ``status``, ``update`` and ``reconcile`` read and change the requests where
  they were sent (``api_url_for``) unless told otherwise (``--api-url``,
  ``api_url=``, COLLECT_API_URL), and say so when told otherwise;
* ``update --due-date`` reads a date exactly as that mapping read its dueDate
  (``read_due_date``: its format, else ISO 8601) and sends it as ``send``
  would have: a day is 23:59 that day, a date-time without an offset is read,
  in the mapping's timezone, else the team's (GET /team); a due date already
  past there is refused, and a team's zone that cannot be read stops it
  (``resolve_due``);
* ``report`` prints the send command with the real files (``send_command``).

A results file whose journal is gone (or older than issue 27) remembers
nothing: the API URL is then COLLECT_API_URL's or the default, a due date is
read as ISO 8601, and report says it does not know the files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from bulksend.collect.retry import CALL_RETRY, RetryPolicy
from bulksend.common.errors import AbortError, UsageError
from bulksend.common.progress import NullProgress
from bulksend.mapping.converters import MIDNIGHT, calendar_time, find_zone, read_moment
from bulksend.mapping.duedates import END_OF_DAY
from bulksend.mapping.problems import RowError
from bulksend.store.journal import API_URL, DUE_READING, SEND_INPUT, peek_meta
from bulksend.store.runlock import journal_path


@dataclass(frozen=True)
class Remembered:
    """What the journal of a results file holds of its last send; None (or
    empty) where it holds nothing. ``due``: ``{}`` when the mapping had no
    dueDate, else ``{"format", "timezone", "type"}``."""

    api_url: str | None = None
    due: dict[str, Any] | None = None
    send: dict[str, Any] = field(default_factory=dict)


def remembered(results: Path) -> Remembered:
    """What ``results``' journal remembers (read only; nothing when there is none)."""
    meta = peek_meta(journal_path(results), [API_URL, DUE_READING, SEND_INPUT])

    def loaded(name: str) -> dict[str, Any] | None:
        try:
            value = json.loads(meta[name]) if name in meta else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    return Remembered(meta.get(API_URL) or None, loaded(DUE_READING), loaded(SEND_INPUT) or {})


# -- the API URL --------------------------------------------------------------------


def api_url_for(results: Path, given: str | None) -> tuple[str | None, str | None]:
    """The API URL a command after the send uses on ``results``, and a note
    to show when it is not the one the send used.

    ``given`` (``--api-url`` or ``api_url=``), else COLLECT_API_URL, else the
    URL the send used, else None (settings.check_api_url's default). The note
    says plainly that the file's requests were sent elsewhere."""
    told = given if given is not None else (os.environ.get("COLLECT_API_URL") or None)
    kept = remembered(results).api_url
    if told is None:
        return kept, None
    if kept and told.rstrip("/") != kept.rstrip("/"):
        return told, (f"{results} was sent to {kept}; reading {told} instead, as --api-url "
                      "(or COLLECT_API_URL) says: requests that live elsewhere read as not found there")
    return told, None


# -- update --due-date ----------------------------------------------------------------


@dataclass(frozen=True)
class DueInput:
    """``--due-date`` as read: the moment (a day, or a date-time, naive unless
    the text gave an offset), the zone the mapping names (None: the team's),
    and the text given."""

    text: str
    moment: date
    zone: str | None

    @property
    def needs_team_zone(self) -> bool:
        """Whether it is read in the team's zone (GET /team): no zone of the
        mapping's, and no offset of its own."""
        given = isinstance(self.moment, datetime) and self.moment.tzinfo is not None
        return self.zone is None and not given


def read_due_date(results: Path, text: str) -> DueInput:
    """``--due-date`` read as the mapping of the send that made ``results``
    read its dueDate (``read_moment`` with its format, else ISO 8601; a naive
    midnight under ``type: date`` is a day). Raises ``UsageError`` (exit 2):
    not a date that mapping reads, or a timezone no longer known."""
    due = remembered(results).due or {}
    fmt = due.get("format") if isinstance(due.get("format"), str) else None
    value = text.strip()
    try:
        parsed, has_time = read_moment("", value, fmt)
    except RowError:
        if fmt is None:
            raise UsageError(f"--due-date {text!r}: not an ISO 8601 date or date-time",
                             hint="write it like 2026-12-31 or 2026-12-31T18:00:00+01:00") from None
        raise UsageError(f"--due-date {text!r}: not a date in format {fmt} (as the mapping of the send that "
                         f"made {results} read dueDate), nor a date like 2026-12-31",
                         hint=f"write it as that mapping's dueDate reads it ({fmt}), or like 2026-12-31",
                         ) from None
    zone = due.get("timezone") if isinstance(due.get("timezone"), str) else None
    if zone is not None and find_zone(zone) is None:
        raise UsageError(f"--due-date: the mapping's dueDate timezone {zone!r} is not a known zone here")
    day = not has_time or (due.get("type", "date") == "date" and parsed.tzinfo is None
                           and parsed.time() == MIDNIGHT)
    return DueInput(value, parsed.date() if day else parsed, zone)


def resolve_due(due: DueInput, *, team_zone: str | None, now: float | None = None) -> str:
    """The instant to send for ``due`` (ISO 8601 with its offset), as ``send``
    would send it (issue 17): an instant as given; a day is 23:59 that day, a
    naive date-time that time, in the mapping's zone, else ``team_zone`` (GET
    /team's ``tz``). Raises ``AbortError`` (exit 3, nothing changed) when the
    team's zone is needed and not known, ``UsageError`` (exit 2) when the
    instant is already past."""
    moment = due.moment
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        instant = moment
    else:
        name = due.zone or team_zone
        zone: tzinfo | None = find_zone(name) if name else None
        if zone is None:
            why = f"GET /team names {team_zone!r}, no known zone" if team_zone else "GET /team went unread"
            raise AbortError(
                f"--due-date {due.text!r}: read in the team's time zone, as send reads a due date with no "
                f"offset, and {why}: nothing was changed",
                hint="rerun the same command later, or give the due date with its offset "
                "(2026-12-31T23:59:00+01:00)")
        wall = moment if isinstance(moment, datetime) else datetime.combine(moment, END_OF_DAY)
        instant = calendar_time(wall, zone)
    if instant.timestamp() < (time.time() if now is None else now):
        where = f" in {due.zone or team_zone}" if not isinstance(moment, datetime) else ""
        raise UsageError(f"--due-date {due.text!r}: is in the past ({instant.isoformat()}{where})",
                         hint="a due date must be later than now (Collect marks past ones due)")
    return instant.isoformat()


def team_zone(*, api_url: str, api_key: str, timeout: float, retry: RetryPolicy = CALL_RETRY) -> str | None:
    """GET /team's ``tz`` (the zone Collect ends a due day in, collect-api.md §9),
    asked again as ``retry`` says after a lost answer, a 5xx or an answer not
    understood; None when it cannot be read. Raises ``AuthError`` on 401,
    ``QuotaError`` on a 429 longer than the gate allows."""
    from bulksend.collect.client import Ambiguous, Client, NotSent, error_text
    from bulksend.collect.lookup import gated_call
    from bulksend.collect.rategate import RateGate

    async def read() -> object:
        async with Client(api_url, api_key, timeout=timeout, concurrency=1) as client:
            gate = RateGate(None, progress=NullProgress())

            async def once() -> object:
                answer = await gated_call(client, gate, "GET", "/team")
                if answer.status != 200 or not isinstance(answer.body, dict):
                    raise Ambiguous(f"GET /team answered {error_text(answer)}")
                return answer.body.get("tz")

            return await retry.call(once, (Ambiguous, NotSent))

    try:
        tz = asyncio.run(read())
    except (Ambiguous, NotSent):
        return None
    return tz if isinstance(tz, str) and tz.strip() else None


# -- report ---------------------------------------------------------------------------


def send_command(results: Path, *extra: str) -> tuple[str, str] | None:
    """The command that resumes the send that made ``results``, as that send
    read its input (its files, relative to the current folder when they are
    under it; the reading options it was given), with ``extra`` options; and
    a note for the person ("" or what the command needs that it cannot
    say). None when the journal does not say (or the contacts were given in
    memory, through the Python API)."""
    send = remembered(results).send
    contacts, mapping = send.get("contacts"), send.get("mapping")
    if not isinstance(contacts, str) or not isinstance(mapping, str):
        return None
    args = ["bulksend", "send", _shown(contacts), "-m", _shown(mapping)]
    for name, option in (("sheet", "--sheet"), ("encoding", "--encoding"), ("delimiter", "--delimiter"),
                         ("header_row", "--header-row")):
        if send.get(name) is not None:
            args += [option, str(send[name])]
    if send.get("include_hidden"):
        args.append("--include-hidden")
    if send.get("sandbox"):
        args.append("--sandbox")  # a rehearsal's record: a real send refuses it
    args += ["--results", str(results), *extra]
    note = "with the same contacts on standard input" if contacts == "-" else ""
    return shlex.join(args), note


def _shown(path: str) -> str:
    """A remembered absolute path as a person types it here: relative to the
    current folder when under it, else as it is."""
    if path == "-" or not os.path.isabs(path):
        return path
    here = os.getcwd()
    try:
        inside = os.path.commonpath([here, path]) == here
    except ValueError:  # another drive (Windows)
        inside = False
    return os.path.relpath(path, here) if inside else path
