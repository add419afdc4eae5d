"""What ``bulksend.send`` and ``bulksend.validate`` give back: ``Run`` and ``Validation``.

A ``Run`` wraps the engine's ``Summary`` and reads the rows themselves from
the results CSV when asked (``iter(run)``, ``run.to_pandas()``), so it holds
no row in memory. Nothing here sends or writes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulksend.common.errors import BulksendError, ExitStatus, ResultsError
from bulksend.common.outcome import DUPLICATE, EXCLUDED, FILTERED, INVALID, STATUSES, Outcome, Summary
from bulksend.store.results import COLUMNS, _results_lines, unneutralise

if TYPE_CHECKING:
    import pandas

    from bulksend.tasks.rehearsal import Rehearsal

__all__ = ["Run", "Validation"]


@dataclass(frozen=True)
class Run:
    """What a ``send`` did. The rows themselves are in the results CSV, which
    iterating the run (or ``to_pandas()``) reads as it is now.

    Attributes:
        summary: the engine's own summary (bulksend.sending.run.Summary), as the
            command line prints it.
        warnings: what was warned before the run (typed DataFrame columns).
        rehearsal: a rehearsal's sandbox and stand-in campaigns
            (``send(..., sandbox=True)``), else None.
    """

    summary: Summary
    warnings: tuple[str, ...] = ()
    rehearsal: Rehearsal | None = None

    @property
    def results(self) -> Path:
        """The results CSV (one line per input row, contract columns first)."""
        return self.summary.results

    @property
    def total(self) -> int:
        """The number of input rows (blank rows not counted)."""
        return self.summary.total

    @property
    def counts(self) -> dict[str, int]:
        """Rows by status, every status present: sent, failed, invalid,
        duplicate, unknown, ready (a dry run, or rows not reached); and
        filtered (``where``) and excluded (``exclude``) when the run has any."""
        counts = self.summary.counts
        return {status: counts[status] for status in STATUSES
                if counts[status] or status not in (FILTERED, EXCLUDED)}

    @property
    def posts(self) -> int:
        """POSTs made this run, retries included."""
        return self.summary.posts

    @property
    def elapsed(self) -> float:
        """Seconds the sending took (from the first row read to the results written)."""
        return self.summary.elapsed

    @property
    def dry_run(self) -> bool:
        """It was a dry run: nothing sent, each payload in the results."""
        return self.summary.dry_run

    @property
    def interrupted(self) -> bool:
        """The run was stopped (Ctrl-C, a kernel interrupt, SIGTERM); rerun to resume."""
        return self.summary.interrupted

    @property
    def aborted(self) -> BulksendError | None:
        """Why the run stopped early (a refused key, an outage, a long quota), or None."""
        return self.summary.aborted

    @property
    def notes(self) -> list[str]:
        """What the engine wants known besides problems (the due date's zone, batching)."""
        return list(self.summary.notes)

    @property
    def exit_status(self) -> ExitStatus:
        """As the command line exits: 0 every row sent (or already), 1 some rows
        not sent, 3 aborted (resumable), 130 interrupted (resumable)."""
        return self.summary.exit_status

    @property
    def ok(self) -> bool:
        """Every row is sent (or was already): ``exit_status`` is 0."""
        return self.exit_status == ExitStatus.OK

    def __repr__(self) -> str:
        counts = ", ".join(f"{status}={n}" for status, n in self.counts.items() if n)
        return (f"<Run {str(self.results)!r} rows={self.total} {counts or 'nothing'} "
                f"exit_status={int(self.exit_status)}>")

    def __iter__(self) -> Iterator[Outcome]:
        """Each row's outcome, in the results file's order (input order once
        the run has finished): the contract's columns, ``payload`` (dry run)
        and the input's cells in ``values``. Raises ResultsError when the
        results file cannot be read."""
        for header, cells in _lines(self.results):
            yield _outcome(header, cells, self.dry_run)

    def to_pandas(self) -> pandas.DataFrame:
        """The results as a DataFrame indexed by ``row``: the contract's columns
        typed (``status`` categorical over every status, ``http_status``
        nullable Int64, ``attempts`` int64, ``sent_at`` datetime64 UTC, NaT
        when not sent), then ``payload`` (a dict, dry run) and the input's
        columns as text. Needs pandas: ``pip install 'bulksend[pandas]'``
        (ImportError otherwise). Raises ResultsError when the file cannot be read."""
        pd = _import_pandas()
        header: list[str] = list(COLUMNS)
        rows: list[list[str]] = []
        for header_seen, cells in _lines(self.results):
            header = list(header_seen)
            rows.append(cells + [""] * (len(header) - len(cells)))
        width = len(COLUMNS) + (1 if self.dry_run and header[len(COLUMNS):][:1] == ["payload"] else 0)
        column = {name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)}
        index = pd.Index([int(v) for v in column["row"]], name="row", dtype="int64")

        def text(name: str) -> Any:
            return pd.Series(column[name], index=index, dtype=str)

        contract = pd.DataFrame({
            "key": text("key"),
            "status": pd.Series(pd.Categorical(column["status"], categories=list(STATUSES)), index=index),
            "request_id": text("request_id"),
            "portal_url": text("portal_url"),
            "contact_id": text("contact_id"),
            "http_status": pd.Series([int(v) if v else None for v in column["http_status"]], index=index,
                                     dtype="Int64"),
            "attempts": pd.Series([int(v or 0) for v in column["attempts"]], index=index, dtype="int64"),
            "error": text("error"),
            "sent_at": pd.to_datetime(text("sent_at"), utc=True, format="ISO8601", errors="coerce"),
        }, index=index)
        if width > len(COLUMNS):
            contract["payload"] = [json.loads(r[len(COLUMNS)]) if r[len(COLUMNS)] else None for r in rows]
        inputs = pd.DataFrame([r[width:] for r in rows], columns=header[width:], index=contract.index,
                              dtype=str)
        return pd.concat([contract, inputs], axis=1)


def _import_pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install 'bulksend[pandas]'") from None
    return pandas


def _lines(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(header, cells) of each line of a results CSV, cells as written before neutralising."""
    try:
        for header, cells in _results_lines(path):
            yield list(header), [unneutralise(c) for c in cells]
    except csv.Error:
        raise ResultsError(f"{path}: cannot be read as a results file") from None


def _outcome(header: list[str], cells: list[str], dry_run: bool) -> Outcome:
    cells = cells + [""] * (len(header) - len(cells))
    get = dict(zip(COLUMNS, cells, strict=False))
    first = len(COLUMNS)
    payload = None
    if dry_run and header[first:first + 1] == ["payload"]:
        payload = json.loads(cells[first]) if cells[first] else None
        first += 1
    return Outcome(
        row=int(get["row"]), key=get["key"], status=get["status"], request_id=get["request_id"],
        portal_url=get["portal_url"], contact_id=get["contact_id"],
        http_status=int(get["http_status"]) if get["http_status"] else None,
        attempts=int(get["attempts"] or 0), error=get["error"], sent_at=get["sent_at"],
        payload=payload, values=dict(zip(header[first:], cells[first:], strict=False)),
    )


@dataclass(frozen=True)
class Validation:
    """What ``validate`` found; nothing was sent.

    Attributes:
        total: input rows (blank rows not counted).
        counts: rows by status: ``ready`` (valid), ``invalid``, ``duplicate``.
        problems: the first invalid or duplicate rows (at most ``max_problems``),
            each with ``row``, ``status``, ``error`` and the input's ``values``.
        read: what was read (format, encoding, delimiter, header row), then
            one line per kind of thing left out (hidden rows, blank rows,
            columns without a name).
        warnings: rows worth a second look (a due date years ahead), and
            typed DataFrame columns.
        notes: what to know besides problems (the due date's time zone).
        previews: the first valid rows (at most ``preview``), each with its
            ``payload``: the POST /request body as it will be sent.
        guesses: each choice made for the person, with its evidence (the
            sheet, the delimiter, the date order, the email column; issue 24).
    """

    total: int
    counts: dict[str, int]
    problems: list[Outcome]
    read: list[str]
    warnings: list[str]
    notes: list[str]
    previews: list[Outcome] = field(default_factory=list)
    guesses: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> ExitStatus:
        """0 every row valid, 1 some invalid or duplicate (as ``bulksend validate``)."""
        bad = self.counts[INVALID] + self.counts[DUPLICATE]
        return ExitStatus.OK if bad == 0 else ExitStatus.ROWS_NOT_SENT

    @property
    def ok(self) -> bool:
        """Every row is valid."""
        return self.exit_status == ExitStatus.OK
