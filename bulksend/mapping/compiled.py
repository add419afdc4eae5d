"""The compiled mapping: ``Mapping.apply`` turns one row into its payload and key.

``apply`` is the per-row hot path of a send: it runs the getters compiled at
load time (getters.py), with no YAML, no regex compilation and no walking of
the spec per row, then reads the key (keys.py). What is known only at send
time is given to the mapping then: the team's time zone (``use_team_zone``,
for the dueDate) and the campaigns' elements (``use_items``, for items named
by their element's name).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from bulksend.common.errors import InputError
from bulksend.mapping.duedates import DueDates
from bulksend.mapping.evidence import Evidence
from bulksend.mapping.getters import OMIT, Getter
from bulksend.mapping.items import Catalogue, ItemProblem, resolve_payload_items
from bulksend.mapping.keys import key_plan, row_key
from bulksend.mapping.problems import RowError, quote
from bulksend.reading.table import Row


class Mapped(NamedTuple):
    """One row after mapping: a payload and its key, or the reason it has none.
    (A NamedTuple, like reading.table.Row: immutable and quick to make.)"""

    row: int  # the spreadsheet row number (Row.number)
    payload: dict[str, Any] | None  # the POST /request body; None when the row is invalid
    # The row's identity; None when invalid, except for a row refused only because
    # its due date is past: a rerun may then still find it sent by an earlier run.
    key: str | None
    error: str | None  # the first problem of an invalid row, on one line


class Mapping:
    """A checked mapping file, compiled for `apply` (made by loading.parse_mapping)."""

    __slots__ = (
        "_build",
        "_catalogues",
        "_evidence",
        "_keys",
        "campaign_id",
        "columns_used",
        "digest",
        "due_dates",
        "exclude",
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
        evidence: Evidence | None = None,
        exclude: tuple[str, ...] = (),
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
        # Campaign id -> its elements (mapping/items.py), set at send time by use_items:
        # items named by their element's name are then sent as the element's id.
        self._catalogues: dict[str, Catalogue] = {}
        # Column -> the (payload path, spec type) of each field it fills: which
        # columns feed text (api/ warns when pandas has typed one of those).
        self.fed = fed if fed is not None else {}
        self._keys = key_plan(key_paths, folded)
        # What the rows mapped so far show about the choices made for them (issue 24).
        self._evidence = evidence if evidence is not None else Evidence()
        # `exclude`: the do-not-contact lists every send reads, as the file names
        # them (relative to the mapping file's folder; sending/choosing.py).
        self.exclude = exclude

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
        evidence = self._evidence
        evidence.row = row.number
        if evidence.scanning:
            evidence.scan(row.values)
        try:
            payload = self._build(row.values)
            if payload is OMIT:
                payload = {}
            for required in ("campaignId", "contact"):
                if required not in payload:
                    raise RowError(f"{required} is empty (the API requires it)")
            if self._catalogues and "items" in payload:
                try:
                    resolve_payload_items(payload, self._catalogues)
                except ItemProblem as problem:
                    raise RowError(f"items: {problem}") from None
            key = row_key(payload, self._keys)
        except RowError as error:
            return Mapped(row.number, None, None, error.message)
        if dates.late is not None:  # invalid, but its key lets a rerun find it sent earlier
            return Mapped(row.number, None, key, dates.late)
        return Mapped(row.number, payload, key, None)

    def guesses(self) -> list[str]:
        """What the rows mapped so far showed about the choices made for them,
        one line each with its rows: the order of day and month of a date
        format, addresses sent in their normal form or picked from several
        (evidence.py). validate and the top of send print them (issue 24)."""
        return self._evidence.lines()

    def observe(self, row: Row) -> bool:
        """Show a row the check pass reads but does not map to the date columns
        whose order of day and month no row has decided yet, so that
        ``check_orders`` speaks for the whole file. Returns False once no such
        column is left: the rows after need not be shown."""
        return self._evidence.observe(row.values, row.number)

    def check_orders(self, name: str) -> None:
        """Raise InputError (exit 2) when the rows seen contradict a date format's
        order of day and month: a row reads only the other way and none only the
        mapping's way (evidence.OrderWitness.refusal), so that every date that
        reads both ways would be sent swapped (issue 24). ``name``: the file."""
        refusals = self._evidence.refusals()
        if refusals:
            raise InputError(
                f"{name}: {refusals[0]}; nothing was sent",
                hint=f"if the file writes dates that way, set that format in {self.path}; if the row"
                     " is a typing slip, correct it",
            )

    def use_items(self, catalogues: dict[str, Catalogue]) -> None:
        """Send items named by an element's name as that element's id from now on.

        ``catalogues`` maps a campaign id to its elements (mapping/items.py), as the
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
        self.due_dates.use_team_zone(name, self.path)

    def due_zone_note(self) -> str | None:
        """One line saying in which zone a due day ends, or None when no dueDate is mapped."""
        return self.due_dates.zone_note()

    def due_far_ahead(self, payload: dict[str, Any] | None) -> bool:
        """Whether a payload's dueDate is more than two years ahead (often a swapped day and month)."""
        return payload is not None and self.due_dates.far_ahead(payload.get("dueDate"))


def _extra_cells_error(extra: tuple[str, ...]) -> str:
    count = len(extra)
    shown = ", ".join(quote(cell, limit=30) for cell in extra[:3])
    if count > 3:
        shown += ", …"
    cells = "cell" if count == 1 else "cells"
    return f"row has {count} more {cells} than the header ({shown})"
