"""The Python API: ``bulksend.send`` and ``bulksend.validate`` for scripts and notebooks.

The same engine as the command line (which is a thin shell over these two
functions): the same mapping, journal, results CSV, exactly-once guarantees
and resume. What the API adds is at the edges: contacts may be a path, an
iterable of dicts or a pandas DataFrame (frames.py); the mapping may be a path
or a dict in the YAML file's shape; the outcome is a ``Run`` object.

Neither function prints to standard output or exits. Problems that stop a
run before anything is sent raise a ``BulksendError`` (its ``exit_status`` is
what the command line exits with); a run that went returns a ``Run`` whose
``exit_status`` says how it ended. The progress bar (``tqdm.auto``: a widget
in Jupyter) and the run's messages (the ``logging`` logger ``"bulksend"``) go
to standard error.

Inside a running event loop (a Jupyter cell), the engine, which runs its own
loops with ``asyncio.run``, runs in a worker thread and the call blocks until
the run is over; interrupting the kernel (``KeyboardInterrupt``) stops it as
Ctrl-C stops the command: no new rows, requests in flight waited for; a
second interrupt stops at once. Signal handlers are installed only when
called from the main thread with no loop running.

The checks of ``api_url``, the key and ``rate`` live in cli.py, beside the
options they check; they are imported from there when a function is called.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from bulksend.common.errors import BulksendError, ExitStatus, ResultsError, UsageError
from bulksend.common.outcome import DUPLICATE, INVALID, READY, STATUSES, Outcome, Summary
from bulksend.common.progress import NullProgress, Progress
from bulksend.reading.table import Table
from bulksend.sending.run import open_input, send_file, validate_file
from bulksend.sending.stop import StopRequest
from bulksend.settings import ApiAccess, InputSettings, Mode, Pace, RunConfig
from bulksend.store.results import COLUMNS, _results_lines, check_outputs_apart, unneutralise
from bulksend.store.runlock import side_files

if TYPE_CHECKING:
    import pandas

    from bulksend.tasks.status import StatusRun

__all__ = ["Contacts", "MappingSource", "Run", "Validation", "send", "status", "validate"]

#: A path (``str`` or ``os.PathLike``; ``"-"`` is standard input), an iterable
#: of dicts (column name -> cell), or a pandas DataFrame.
Contacts: TypeAlias = "str | os.PathLike[str] | Iterable[MappingABC[str, Any]] | pandas.DataFrame"
#: A path to a YAML mapping file, or a dict in that file's shape.
MappingSource: TypeAlias = "str | os.PathLike[str] | MappingABC[str, Any]"

MAPPING_DICT_NAME = "<mapping dict>"  # how messages name a mapping given as a dict

logger = logging.getLogger("bulksend")
_T = TypeVar("_T")


# --- send --------------------------------------------------------------------------


def send(
    contacts: Contacts,
    mapping: MappingSource,
    *,
    results: str | os.PathLike[str],
    api_key: str | None = None,
    api_url: str | None = None,
    rate: float | str | None = "10/s",
    concurrency: int = 8,
    max_attempts: int = 5,
    timeout: float = 30.0,
    max_pause: float = 60.0,
    existing: str = "stop",
    dry_run: bool = False,
    limit: int | None = None,
    only_failed: bool = False,
    batch: bool = False,
    sheet: str | int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    header_row: int | None = None,
    include_hidden: bool = False,
    progress: bool | Progress = True,
) -> Run:
    """Send one Collect request (POST /v1/request, collect-api.md §4) per valid contact.

    Exactly what ``bulksend send`` does (PRODUCT.md): rows already sent by an
    earlier run with the same ``results`` are skipped without an API call,
    ``unknown`` rows are looked up first (collect-api.md §6), failed rows are
    retried. Call it again with the same arguments to resume.

    Args:
        contacts: a path (.csv/.tsv/.xlsx/.xls/.ods, ``"-"`` for standard
            input); an iterable of dicts, column name -> cell (read once, held
            in memory; None is an empty cell; numbers, booleans and dates are
            written as a spreadsheet shows them); or a pandas DataFrame (its
            index is not read; a column pandas typed that the mapping sends as
            text gets a ``TypedColumnWarning``). Row 2 of the results is the
            first contact, as in a spreadsheet whose row 1 holds the names.
        mapping: a YAML mapping file's path, or a dict in its shape.
        results: the results CSV, also the resume point (its journal sits beside it).
        api_key: the Collect API key; None: the environment variable
            ``COLLECT_API_KEY``. Not needed for a dry run. Never printed or written.
        api_url: the API's base URL; None: ``COLLECT_API_URL``, else
            ``https://api.usecollect.com/v1``. Plain http only to loopback.
        rate: a ceiling on requests per second: a number, or text such as
            ``"10/s"``, ``"600/min"``; None: no ceiling. Adapts down on 429.
        concurrency: requests in flight at once, 1 to 256.
        max_attempts: POSTs per row on 5xx or connection errors, 1 to 100.
        timeout: seconds to wait for one answer (0.1 to 600).
        max_pause: longest pause in seconds a 429's Retry-After may impose;
            a longer one ends the run (``exit_status`` 3).
        existing: rows new to ``results`` whose contact already has a request
            in the campaign: ``"stop"`` (raise before sending), ``"skip"``
            (recorded sent with that request) or ``"send"`` (no check).
        dry_run: map and validate every row and write the payloads; send nothing.
        limit: send at most this many rows this run (a canary).
        only_failed: resend only rows recorded ``failed``.
        batch: group rows into POST /requests calls (50 a call).
        sheet, encoding, delimiter, header_row, include_hidden: how a file is
            read, as the options of the same names (files only).
        progress: True: a ``tqdm.auto`` bar on standard error (a widget in
            Jupyter) and the run's messages logged to the ``"bulksend"``
            logger; False: the messages only; or a ``bulksend.common.progress.Progress``
            that receives everything. It is closed when the run ends.

    Returns:
        The ``Run``: counts, exit status, the results path, the rows' outcomes.

    Raises:
        BulksendError: nothing was sent. ``UsageError`` (bad argument,
            missing key), ``InputError`` (contacts cannot be read whole),
            ``MappingError`` (every problem of the mapping), ``ResultsError``,
            ``LockedError`` (another run uses ``results``), ``AuthError``
            (key refused), ``AbortError`` (API unreachable before sending),
            ``ExistingError`` (see ``existing``). ``exit_status`` on each.
        TypeError: ``contacts`` or ``mapping`` is of none of the kinds above.
        KeyboardInterrupt: interrupted before the sending started.
    """
    from bulksend.cli import commands as checks  # check_api_url, read_api_key, parse_rate (module doc)

    source = _contacts_source(contacts, sheet=sheet, encoding=encoding, delimiter=delimiter,
                              header_row=header_row, include_hidden=include_hidden)
    map_name, map_doc = _mapping_source(mapping)
    _check_numbers(concurrency=(concurrency, 1, 256), max_attempts=(max_attempts, 1, 100),
                   timeout=(timeout, 0.1, 600), max_pause=(max_pause, 0.1, 7 * 86400),
                   limit=(limit, 0, None), header_row=(header_row, 1, None))
    if existing not in ("stop", "skip", "send"):
        raise UsageError(f"existing={existing!r}: must be 'stop', 'skip' or 'send'")
    url = checks.check_api_url(api_url or os.environ.get("COLLECT_API_URL") or checks.DEFAULT_API_URL)
    config = RunConfig(
        InputSettings(source.name, map_name, sheet=sheet, encoding=encoding, delimiter=delimiter,
                      header_row=header_row, include_hidden=include_hidden, open_rows=source.open,
                      mapping_doc=map_doc),
        results=Path(os.fspath(results)),
        api=ApiAccess(url, "" if dry_run else _api_key(api_key), timeout=timeout),
        pace=Pace(rate=checks.parse_rate(rate) if isinstance(rate, str) else _rate(rate),
                  concurrency=concurrency, max_attempts=max_attempts, max_pause=max_pause),
        mode=Mode(dry_run=dry_run, limit=limit, only_failed=only_failed, batch=batch, existing=existing),
    )
    _check_apart(config, source.path, None if map_doc is not None else map_name)
    warned = _warn_typed(config, source.frame)
    reporter = _reporter(progress)
    try:
        summary = _blocking(lambda stop: send_file(config, reporter, stop))
    finally:
        reporter.close()
    return Run(summary, tuple(warned))


@dataclass(frozen=True)
class _Source:
    name: str  # the contacts' name in messages: the path, or <rows> / <DataFrame>
    path: str | None = None  # the file read, if one is
    open: Callable[[], Table] | None = None  # opens an in-memory table
    frame: Any = None  # the DataFrame, if one was given


def _contacts_source(contacts: object, **file_options: object) -> _Source:
    from bulksend.reading import frames

    if isinstance(contacts, str | os.PathLike):
        path = os.fspath(contacts)
        if not isinstance(path, str):
            raise TypeError("contacts: a path must be text, not bytes")
        return _Source(path, path)
    given = [name for name, value in file_options.items() if value not in (None, False)]
    if given:
        raise UsageError(f"{', '.join(given)}: apply to a contacts file only, not to contacts in memory")
    if frames.is_dataframe(contacts):
        return _Source(frames.FRAME_NAME, open=lambda: frames.table_from_frame(contacts), frame=contacts)
    if isinstance(contacts, MappingABC | bytes | bytearray) or not isinstance(contacts, Iterable):
        raise TypeError(f"contacts: expected a path, a list of dicts or a pandas DataFrame, "
                        f"not {type(contacts).__name__}")
    records = list(contacts)  # read once: the engine reads the rows twice (check, then send)
    return _Source(frames.RECORDS_NAME, open=lambda: frames.table_from_records(records))


def _mapping_source(mapping: object) -> tuple[str, dict[str, Any] | None]:
    if isinstance(mapping, str | os.PathLike):
        path = os.fspath(mapping)
        if not isinstance(path, str):
            raise TypeError("mapping: a path must be text, not bytes")
        return path, None
    if isinstance(mapping, MappingABC):
        return MAPPING_DICT_NAME, dict(mapping)
    raise TypeError(f"mapping: expected a path or a dict in the mapping file's shape, "
                    f"not {type(mapping).__name__}")


def _check_numbers(**ranges: tuple[float | None, float, float | None]) -> None:
    """UsageError for the first argument outside its range (None: no value given, or no upper bound)."""
    for name, (value, low, high) in ranges.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low or (
                high is not None and value > high):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise UsageError(f"{name}={value!r}: must be a number {bound}")


def _rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != rate:
        raise UsageError(f"rate={rate!r}: not a rate",
                         hint="give requests per second (10), '600/min' or None")
    return float(rate) if rate > 0 else None


def _api_key(api_key: str | None) -> str:
    from bulksend.cli import commands as checks

    if api_key is None:
        return checks.read_api_key(None)  # COLLECT_API_KEY
    key = api_key.strip()
    problem = checks._key_problem(key)
    if problem:
        raise UsageError(f"api_key {problem}",
                         hint="give the key alone, from the bottom of your Collect profile page")
    return key


def _check_apart(config: RunConfig, contacts_path: str | None, mapping_path: str | None) -> None:
    """The results file and its side files are none of the files read (UsageError)."""
    outputs: list[tuple[str, Path | str]] = [("the results file", config.results)]
    outputs += [(f"the results file's {what.removeprefix('its ')}", path)
                for what, path in side_files(config.results)]
    inputs: list[tuple[str, Path | str]] = []
    if contacts_path is not None:
        inputs.append(("the contacts file", contacts_path))
    if mapping_path is not None:
        inputs.append(("the mapping", mapping_path))
    check_outputs_apart(outputs, inputs)


def _warn_typed(config: RunConfig, frame: Any) -> list[str]:
    """Warn (TypedColumnWarning) for each DataFrame column pandas typed that the
    mapping sends as text; the mapping is checked here, before any thread starts."""
    if frame is None:
        return []
    from bulksend.reading.frames import TypedColumnWarning, typed_column_problems

    table, mapping = open_input(config.input)
    table.close()
    problems = typed_column_problems(frame, mapping.fed)
    for problem in problems:
        warnings.warn(problem, TypedColumnWarning, stacklevel=3)  # at the caller of send/validate
    return problems


def _blocking(work: Callable[[StopRequest | None], _T]) -> _T:
    """``work(stop)`` here; or, under a running event loop (Jupyter), in a
    worker thread with loops of its own, this thread waiting for it. A
    KeyboardInterrupt while waiting asks the run to stop (``stop``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work(None)
    stop = StopRequest()
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work(stop)))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    thread = threading.Thread(target=run, name="bulksend-send")
    thread.start()
    # An Event, not Thread.join: a join cut by KeyboardInterrupt may leave the
    # thread marked as stopped while it still runs.
    while True:
        try:
            done.wait()
            break
        except KeyboardInterrupt:
            stop.request("KeyboardInterrupt")
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


# --- progress ----------------------------------------------------------------------

# Events a person need not see unless they ask for them (logging.DEBUG).
_QUIET_EVENTS = frozenset({"retry", "reconciled"})
_LOUD_EVENTS = frozenset({"warning", "abort", "interrupt", "pause"})


class _Reporter(NullProgress):
    """The API's Progress: a tqdm.auto bar (optional) and the ``bulksend`` logger."""

    def __init__(self, bar: bool) -> None:
        self.want_bar = bar
        self.bar: Any = None
        self.counts: Counter[str] = Counter()

    def start(self, total: int) -> None:
        if self.want_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="row", desc="bulksend", mininterval=0.2, smoothing=0.1)

    def outcome(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if self.bar is not None:
            self.bar.update(1)

    def carried(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)
        if self.bar is not None:
            self.bar.update(sum(counts.values()))

    def event(self, kind: str, message: str, **fields: Any) -> None:
        level = (logging.DEBUG if kind in _QUIET_EVENTS
                 else logging.WARNING if kind in _LOUD_EVENTS else logging.INFO)
        logger.log(level, "%s: %s", kind, message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix({s: n for s, n in self.counts.items() if n}, refresh=False)
            self.bar.close()


def _reporter(progress: bool | Progress) -> Progress:
    if isinstance(progress, bool):
        return _Reporter(progress)
    return progress


# --- the run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a ``send`` did. The rows themselves are in the results CSV, which
    iterating the run (or ``to_pandas()``) reads as it is now.

    Attributes:
        summary: the engine's own summary (bulksend.sending.run.Summary), as the
            command line prints it.
        warnings: what was warned before the run (typed DataFrame columns).
    """

    summary: Summary
    warnings: tuple[str, ...] = ()

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
        duplicate, unknown, ready (a dry run, or rows not reached)."""
        return {status: self.summary.counts[status] for status in STATUSES}

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


# --- validate ----------------------------------------------------------------------


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
    """

    total: int
    counts: dict[str, int]
    problems: list[Outcome]
    read: list[str]
    warnings: list[str]
    notes: list[str]

    @property
    def exit_status(self) -> ExitStatus:
        """0 every row valid, 1 some invalid or duplicate (as ``bulksend validate``)."""
        bad = self.counts[INVALID] + self.counts[DUPLICATE]
        return ExitStatus.OK if bad == 0 else ExitStatus.ROWS_NOT_SENT

    @property
    def ok(self) -> bool:
        """Every row is valid."""
        return self.exit_status == ExitStatus.OK


def validate(
    contacts: Contacts,
    mapping: MappingSource,
    *,
    sheet: str | int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    header_row: int | None = None,
    include_hidden: bool = False,
    max_problems: int = 100,
) -> Validation:
    """Check every row against the mapping, as ``bulksend validate``: no network, no key.

    ``contacts``, ``mapping`` and the reading options are as for ``send``;
    ``max_problems`` bounds ``Validation.problems`` (the counts cover every row).

    Raises:
        BulksendError: ``InputError``, ``MappingError``, ``UsageError``; nothing was read whole.
        TypeError: ``contacts`` or ``mapping`` is of none of the accepted kinds.
    """
    source = _contacts_source(contacts, sheet=sheet, encoding=encoding, delimiter=delimiter,
                              header_row=header_row, include_hidden=include_hidden)
    map_name, map_doc = _mapping_source(mapping)
    _check_numbers(header_row=(header_row, 1, None), max_problems=(max_problems, 0, None))
    config = RunConfig(InputSettings(source.name, map_name, sheet=sheet, encoding=encoding,
                                     delimiter=delimiter, header_row=header_row,
                                     include_hidden=include_hidden, open_rows=source.open,
                                     mapping_doc=map_doc),
                       results=Path("-"))
    warned = _warn_typed(config, source.frame)
    problems: list[Outcome] = []

    class Keep(NullProgress):
        def outcome(self, outcome: Outcome) -> None:
            if outcome.status != READY and len(problems) < max_problems:
                problems.append(outcome)

    summary = validate_file(config, Keep())
    return Validation(
        total=summary.total,
        counts={status: summary.counts[status] for status in (READY, INVALID, DUPLICATE)},
        problems=problems, read=list(summary.read), warnings=[*warned, *summary.warnings],
        notes=list(summary.notes),
    )


# --- status ------------------------------------------------------------------------


def status(
    results: str | os.PathLike[str],
    *,
    api_key: str | None = None,
    api_url: str | None = None,
    rate: float | str | None = "10/s",
    timeout: float = 30.0,
    output: str | os.PathLike[str] | None = None,
    progress: bool | Progress = False,
) -> StatusRun:
    """Read where every sent request of a results CSV stands now, as ``bulksend status``.

    Lists each campaign's requests 100 a call (collect-api.md §7, never one
    call per row) and writes ``request_status``, ``due_date`` and
    ``status_read_at`` into ``results`` (or into ``output``, a new file).
    ``api_key``, ``api_url``, ``rate``, ``timeout`` and ``progress`` as for ``send``.

    Returns:
        A ``bulksend.tasks.status.StatusRun``: ``rows`` (one ``Tracked`` per sent
        row: ``row``, ``key``, ``request_id``, ``status`` in the list spelling
        of §7, ``""`` when it could not be read; ``due_date``), ``counts`` by
        status, ``overdue`` rows, ``with_status(name)``, ``calls`` made,
        ``read_at`` (UTC ISO 8601) and ``output`` (the file written).

    Raises:
        BulksendError: ``ResultsError`` (not a results file, or ``output`` not
            ours to write), ``LockedError`` (a run uses it), ``UsageError``,
            ``AuthError`` (key refused), ``AbortError`` (a listing could not be
            read: nothing written).
    """
    from bulksend.cli import commands as checks
    from bulksend.tasks.status import track_file

    _check_numbers(timeout=(timeout, 0.1, 600))
    url = checks.check_api_url(api_url or os.environ.get("COLLECT_API_URL") or checks.DEFAULT_API_URL)
    key = _api_key(api_key)
    per_second = checks.parse_rate(rate) if isinstance(rate, str) else _rate(rate)
    reporter = _reporter(progress)
    try:
        return _blocking(lambda stop: track_file(
            Path(os.fspath(results)), api_url=url, api_key=key, timeout=timeout, rate=per_second,
            progress=reporter, output=None if output is None else Path(os.fspath(output))))
    finally:
        reporter.close()
