"""Due dates (issue 17): the request's dueDate, from a cell or a constant to the instant sent.

Everything about the dueDate lives here: the end of a due day, the zone it is
read in (the field's `timezone`, else the team's from GET /team), DST gaps and
overlaps, a date in the past (refused unless `past: allow`) and one far ahead
(validate warns). ``DueDates`` is the state one mapping shares between its
compiled converters and ``Mapping`` (the team's zone, the clock, the row's
lateness); the functions below compile the dueDate's parts of a mapping file.
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final

from yaml.nodes import Node, ScalarNode

from bulksend.common.errors import MappingError
from bulksend.mapping.converters import MIDNIGHT, calendar_time, find_zone, read_witnessed
from bulksend.mapping.evidence import Evidence
from bulksend.mapping.getters import Converter, Getter, Shape
from bulksend.mapping.nodes import Nodes, typed_constant
from bulksend.mapping.problems import Problem, Problems, RowError, describe, join, quote

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
    gaps and overlaps as a calendar reads them (``converters.calendar_time``). Until the
    team's zone is known (validate, a dry run, the read before the preflight) a
    day that needs it is rendered with no offset and judged past only when it is
    past in every zone. A due date before ``clock()`` (seconds since the epoch)
    makes the row invalid unless the field says `past: allow`.

    ``late`` is set by a converter during one ``Mapping.apply`` when the row's
    due date is past; ``apply`` clears it first. ``generation`` changes with the
    team's zone, so that cached conversions made without it are not reused.
    """

    __slots__ = ("clock", "field_zone", "fmt", "generation", "late", "mapped", "needs_team_zone",
                 "spec_type", "team_zone", "team_zone_name")

    def __init__(self, clock: Callable[[], float] = _time.time) -> None:
        self.clock = clock
        self.mapped = False  # the mapping has a dueDate field
        self.field_zone: str | None = None  # its `timezone`, if any
        self.fmt: str | None = None  # its `format` (strptime), if any: `update --due-date` reads so too
        self.spec_type = "date"  # its `type`: date or datetime
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
        instant = calendar_time(wall, zone)
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

    def converter(self, where: str, spec_type: str, fmt: str | None, zone_name: str | None,
                  zone: tzinfo | None, *, allow_past: bool, fix: str = "correct the cell",
                  evidence: Evidence | None = None, column: str | None = None) -> Converter:
        """The dueDate's converter (``due_converter``); notes the zone it uses for
        ``zone_note``. `fix` starts the hint of a past due date's error.
        ``evidence`` is told which rows decide the order of day and month
        (``column``: the column read; None for a template)."""
        self.mapped = True
        self.fmt, self.spec_type = fmt, spec_type
        self.field_zone = zone_name if zone is not None else None
        self.needs_team_zone = zone is None
        hint = None if allow_past else f"{fix}, or add past: allow to dueDate in the mapping"
        return due_converter(where, spec_type, fmt, zone, self, hint, evidence, column)

    def use_team_zone(self, name: object, path: str) -> None:
        """Resolve in the team's zone ``name`` (GET /team `tz`) from now on; see
        ``Mapping.use_team_zone``. MappingError (naming the mapping ``path``) when
        the dueDate needs that zone and ``name`` is not a known IANA zone."""
        zone = find_zone(name) if isinstance(name, str) and name.strip() else None
        if zone is None:
            if self.needs_team_zone:
                shown = quote(name) if isinstance(name, str) else json.dumps(name, default=str)
                raise MappingError(
                    path,
                    [f"dueDate has no timezone and the team's time zone from GET /team ({shown})"
                     " is not a known IANA zone; nothing was sent"],
                    hint="add timezone to dueDate in the mapping, e.g. timezone: Europe/Paris",
                )
            return
        self.team_zone, self.team_zone_name = zone, str(name)
        self.generation += 1

    def zone_note(self) -> str | None:
        """One line saying in which zone a due day ends, or None when no dueDate is mapped."""
        if not self.mapped:
            return None
        end = f"a due date with no time is sent as {END_OF_DAY:%H:%M} that day"
        if self.field_zone is not None:
            return f"dueDate: {end} in {self.field_zone} (the mapping's timezone)"
        if self.team_zone_name is not None:
            return f"dueDate: {end} in {self.team_zone_name} (the team's time zone, from GET /team)"
        return (
            f"dueDate: {end} in the team's time zone, read from GET /team when sending"
            " (no timezone in the mapping; until then it is shown without an offset)"
        )


def due_converter(where: str, spec_type: str, fmt: str | None, zone: tzinfo | None,
                  dates: DueDates, past_hint: str | None, evidence: Evidence | None = None,
                  column: str | None = None) -> Converter:
    """Cell text → the dueDate sent (DueDates); `past_hint` None means `past: allow`.

    A naive midnight under `type: date` is a day, as spreadsheets write date cells.
    The first distinct cells are told to ``evidence`` (which row decides day/month)."""
    cache: dict[str, tuple[int, float, str]] = {}  # text -> (generation, epoch, rendered)
    witness = evidence.order(where, fmt, column) if evidence is not None else None

    def moment(text: str) -> date:
        parsed, has_time = read_witnessed(where, text, fmt, witness, evidence.row if evidence else 0)
        if not has_time or (spec_type == "date" and parsed.tzinfo is None and parsed.time() == MIDNIGHT):
            return parsed.date()
        return parsed

    def convert(text: str) -> str:
        hit = cache.get(text)
        if hit is None or hit[0] != dates.generation:
            due = moment(text)
            try:
                hit = (dates.generation, *dates.resolve(due, zone))
            except (OverflowError, ValueError):
                raise RowError(f"{where}{quote(text)} is out of the range of dates") from None
            if len(cache) >= _DUE_CACHE_SIZE:
                cache.clear()
            cache[text] = hit
        if past_hint is not None and hit[1] < dates.clock() and dates.late is None:
            dates.late = f"{where}due date {quote(text)} is in the past ({hit[2]}); {past_hint}"
        return hit[2]

    return convert


def past_option(problems: Problems, option: tuple[Node, Node] | None, path: str, *,
                due: bool) -> str | None:
    """`past: allow | refuse` of the dueDate (None, which refuses, when absent); a problem elsewhere."""
    if option is None:
        return None
    node = option[1]
    where = join(path, "past")
    if not due:
        problems.report(node, where, "applies to dueDate only")
        return None
    if isinstance(node, ScalarNode) and node.tag.endswith(":str") and node.value in ("allow", "refuse"):
        return str(node.value)
    problems.report(node, where, f"must be allow or refuse, found {describe(node)}")
    return None


def due_constant(dates: DueDates, nodes: Nodes, node: Node, path: str) -> tuple[Getter, Shape] | None:
    """`dueDate: {value: 2027-01-15}` (or a bare YAML date): checked now,
    resolved for each row, since the team's zone and the time of sending
    are known only then. None when a problem was reported."""
    convert = dates.converter("", "date", None, None, None, allow_past=False,
                              fix="correct it (a constant takes no past: allow)")
    try:
        value: Any = nodes.plain(node)
        typed_constant(value, "date", node, convert)
    except Problem as problem:
        nodes.problems.report(problem.node or node, path, problem.message)
        return None
    text = str(value).strip()
    return (lambda values: convert(text)), None
