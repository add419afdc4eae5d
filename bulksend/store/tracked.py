"""The results CSV after the send: the columns ``status`` and ``update`` add (issue 14).

``bulksend status`` and ``bulksend update`` write what they learn about each
sent row's request into columns of their own, placed right after the
contract's columns (PRODUCT.md, "Results CSV") and before the input's:

| column | written by | meaning |
|---|---|---|
| ``request_status`` | status, update | the request's status in Collect (list spelling, §7) |
| ``due_date`` | status | the request's ``dueDate`` as Collect returns it |
| ``status_read_at`` | status, update | UTC ISO 8601 time that status was read |
| ``last_update`` | update | the last change ``update`` made or tried, and its outcome |
| ``updated_at`` | update | UTC ISO 8601 time of that outcome |

What keeps ``send`` working: the contract's columns stay first and in order
(``is_results_header``), and every reader of a results file reads cells by
column name (``read_results``, ``seed_journal_from_csv``, ``report``). A
``send`` rewrites the file from its journal; before it does, its session keeps
these columns' cells by key in the journal (``tracking_cells``, issue 27), and
the rewritten file carries them again. A rewrite here changes the file's
bytes, so the next ``send`` reads its input from the start instead of from a
checkpoint (store/checkpoints.py): slower on a very large file, never wrong.

The rewrite goes through a temporary file and ``os.replace``: a kill leaves
the old file or the new one, never half of each.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bulksend.common.errors import ResultsError
from bulksend.common.outcome import SENT
from bulksend.mapping.keys import key_parts
from bulksend.store.results import (
    COLUMNS,
    TRACK_COLUMNS,
    check_results_target,
    csv_lines,
    is_results_header,
    neutralise,
    not_results_file,
    replace_file,
    unneutralise,
)
from bulksend.store.runlock import journal_path

_ID = re.compile(r"[A-Za-z0-9]{17}")  # Collect ids (collect-api.md §1)
_EMAIL = re.compile(r"[^@\s\"{}\[\]]+@[^@\s\"{}\[\]]+")  # a key part that is an email (not JSON)


@dataclass(slots=True)
class SentRow:
    """One ``sent`` line of a results file: its position among the data lines
    (``index``, 0-based), ``row`` and ``key`` as the contract writes them, the
    request's id, the campaign it was sent in when the send journal or the key
    says (else ""), and the tracking columns' current values."""

    index: int
    row: int
    key: str
    request_id: str
    campaign: str
    track: dict[str, str]
    contact_id: str = ""  # the contact's _id, as the send's answer gave it
    email: str = ""  # the contact's email as the key or the send journal holds it ("": not known)

    @property
    def who(self) -> str:
        """The row's contact as the results file tells it (``sent_rows``): its
        email, else its contact id, else "contact not known" (never another key
        part: ``campaignId|email|M1`` is ``email``'s row, not ``M1``'s)."""
        return self.email or self.contact_id or "contact not known"


def _open(path: Path) -> Iterator[list[str]]:
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file: {exc.strerror}",
                           hint="pass the results CSV a send wrote") from exc
    with handle:
        try:
            yield from csv_lines(handle)  # whatever the length of a cell (a send now reads these too)
        except (UnicodeDecodeError, csv.Error):
            raise not_results_file(path) from None


def _track_at(header: list[str]) -> dict[str, int]:
    """Where the tracking columns are: right after the contract's, in their order."""
    at: dict[str, int] = {}
    for offset, name in enumerate(TRACK_COLUMNS):
        position = len(COLUMNS) + offset
        if position < len(header) and header[position] == name:
            at[name] = position
        else:
            break
    return at


def has_tracking(path: Path) -> bool:
    """Whether the results file at ``path`` exists and its header has the
    tracking columns; False when it cannot be read as a results file."""
    if not path.is_file():
        return False
    try:
        header = next(_open(path), None)
    except ResultsError:
        return False
    return is_results_header(header) and bool(_track_at(list(header)))


def tracking_cells(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(key, cells of TRACK_COLUMNS) of each line of the results file at
    ``path`` that has any, cells as written before neutralising; nothing when
    the file has no tracking columns. Raises ``ResultsError`` when it cannot
    be read or is not a results file."""
    lines = _open(path)
    header = next(lines, None)
    if not is_results_header(header):
        raise not_results_file(path)
    at = _track_at(list(header))
    if not at:
        return
    key_at = COLUMNS.index("key")
    for cells in lines:
        values = [unneutralise(cells[at[name]]) if name in at and at[name] < len(cells) else ""
                  for name in TRACK_COLUMNS]
        if any(values) and key_at < len(cells) and cells[key_at]:
            yield unneutralise(cells[key_at]), values


def sent_rows(path: Path) -> tuple[list[SentRow], dict[int, str]]:
    """The ``sent`` lines of the results file at ``path``, and the status of
    every other line by row number (``{14: "failed"}``).

    Raises ``ResultsError`` (exit 2) when the file cannot be read, is not a
    results file, or holds a ``sent`` line with no ``request_id`` (naming its row)."""
    lines = _open(path)
    header = next(lines, None)
    if not is_results_header(header):
        raise not_results_file(path)
    at = {name: i for i, name in enumerate(header)}
    track = _track_at(list(header))
    targets = _journal_targets(path)
    rows: list[SentRow] = []
    others: dict[int, str] = {}
    for index, cells in enumerate(lines):
        if len(cells) <= at["request_id"] or cells[at["status"]] != SENT:
            number = cells[at["row"]] if cells else ""
            if number.isdigit():
                others[int(number)] = cells[at["status"]] if len(cells) > at["status"] else ""
            continue
        key = unneutralise(cells[at["key"]])
        request_id = cells[at["request_id"]]
        row = cells[at["row"]]
        if not request_id:
            raise ResultsError(f"{path}: row {row}: status sent but no request_id",
                               hint="the file was edited: restore the request id, or run send again")
        campaign, contact = targets.get(key) or _default_target(key)
        values = {name: unneutralise(cells[i]) if i < len(cells) else "" for name, i in track.items()}
        contact_id = cells[at["contact_id"]] if len(cells) > at["contact_id"] else ""
        if contact and "@" not in contact:
            contact_id = contact_id or contact
        rows.append(SentRow(index, int(row) if row.isdigit() else 0, key, request_id, campaign,
                            {name: values.get(name, "") for name in TRACK_COLUMNS}, contact_id,
                            contact if "@" in contact else ""))
    return rows, others


def _default_target(key: str) -> tuple[str, str]:
    """(campaign, contact) a key names when its send journal does not say: a
    first part that is a Collect id is the campaign; the contact is the second
    part of a default key (``campaignId|email`` or ``campaignId|contact id``),
    else the key's one part that is an email (``campaignId|email|M1``: a key
    with a field after the email). "" where not known: two emails, or none."""
    parts = key_parts(key)
    campaign = parts[0] if len(parts) > 1 and _ID.fullmatch(parts[0]) else ""
    if campaign and len(parts) == 2:
        return campaign, parts[1]
    emails = [part for part in parts if _EMAIL.fullmatch(part)]
    return campaign, emails[0] if len(emails) == 1 else ""


def _journal_targets(results: Path) -> dict[str, tuple[str, str]]:
    """key -> (campaignId, contact: email or id) from the send journal's look-up
    targets (custom keys), read only (no run is counted)."""
    path = journal_path(results)
    if not path.exists():
        return {}
    import json

    found: dict[str, tuple[str, str]] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for key, target in db.execute("SELECT key, target FROM rows WHERE target != ''"):
                read = json.loads(target)
                campaign, contact = read.get("campaignId"), read.get("contact")
                if isinstance(campaign, str) and campaign:
                    found[key] = (campaign, contact if isinstance(contact, str) else "")
        finally:
            db.close()
    except (sqlite3.Error, ValueError, AttributeError):
        return {}
    return found


def check_output(output: Path, results: Path) -> None:
    """``--output FILE``: a new file, the results file itself, or another results file."""
    if output.exists() and output.resolve() == results.resolve():
        return
    check_results_target(output, str(results))


def rewrite(source: Path, target: Path, changes: Mapping[int, Mapping[str, str]]) -> None:
    """Write ``source`` to ``target`` (the same path: in place) with the tracking
    columns after the contract's; ``changes``: data line index -> new values of
    tracking columns. Other cells are copied as they are."""
    tmp = target.with_name(target.name + ".tmp")
    lines = _open(source)
    header = next(lines, None)
    if not is_results_header(header):
        raise not_results_file(source)
    old = _track_at(list(header))
    rest = [i for i in range(len(COLUMNS), len(header)) if i not in old.values()]
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow([*COLUMNS, *TRACK_COLUMNS, *(header[i] for i in rest)])
            for index, cells in enumerate(lines):
                new = changes.get(index, {})
                track = [neutralise(new[name]) if name in new
                         else (cells[old[name]] if name in old and old[name] < len(cells) else "")
                         for name in TRACK_COLUMNS]
                head = cells[:len(COLUMNS)] + [""] * (len(COLUMNS) - len(cells))
                writer.writerow([*head, *track, *(cells[i] for i in rest if i < len(cells))])
        replace_file(tmp, target)  # Windows: retried while a spreadsheet holds it, then named
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ResultsError(f"{target}: cannot write the results file: {exc.strerror}") from exc
