"""The Python API, and the front door of the command line: ``bulksend.send``,
``validate``, ``status``, ``update``, ``reconcile``, ``report`` and ``init``.

Each ``bulksend`` command (bulksend/cli/) parses its options, calls the one
function here of the same name, and turns what it returns (or raises) into
output and an exit status; the checks of the API URL, the key, the rate and
the output paths are bulksend/settings.py's, the same for both. The same
engine, the same mapping, journal, results CSV, exactly-once guarantees and
resume. What the Python API adds is at the edges: contacts may be a path, an
iterable of dicts or a pandas DataFrame (reading/frames.py); the mapping may be
a path or a dict in the YAML file's shape; the outcome is a ``Run`` object
(api/answers.py).

No function prints to standard output or exits. Problems that stop a run
before anything is sent raise a ``BulksendError`` (its ``exit_status`` is what
the command line exits with); a run that went returns an object whose
``exit_status`` says how it ended. The progress bar (``tqdm.auto``: a widget in
Jupyter) and the run's messages (the ``logging`` logger ``"bulksend"``) go to
standard error.

Inside a running event loop (a Jupyter cell), the engine, which runs its own
loops with ``asyncio.run``, runs in a worker thread and the call blocks until
the run is over (api/running.py); interrupting the kernel
(``KeyboardInterrupt``) stops a send as Ctrl-C stops the command: no new rows,
requests in flight waited for; a second interrupt stops at once. Signal
handlers are installed only when called from the main thread with no loop
running.

Importing this module loads neither the engine nor aiohttp nor pandas: each
function imports what it runs.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from bulksend.api.answers import Run, Validation
from bulksend.api.arguments import (
    check_callable,
    check_flags,
    check_numbers,
    check_paths,
    check_progress,
    check_sheet,
    check_texts,
)
from bulksend.api.notify import Ending
from bulksend.api.running import blocking, progress_for
from bulksend.api.sources import Source, contacts_source, exclude_paths, mapping_source
from bulksend.common.errors import BulksendError, UsageError
from bulksend.common.outcome import DUPLICATE, INVALID, READY, Outcome, Summary
from bulksend.common.progress import NullProgress, Progress
from bulksend.settings import (
    DEFAULT_API_URL,
    ApiAccess,
    InputSettings,
    Mode,
    Pace,
    RunConfig,
    api_access,
    check_api_url,
    check_outputs,
    parse_rate,
    read_api_key,
    together,
)

if TYPE_CHECKING:
    import pandas

    from bulksend.sending.plan import SendPlan
    from bulksend.tasks.rehearsal import Rehearsal
    from bulksend.tasks.status import StatusRun
    from bulksend.tasks.update import Plan, UpdateRun

__all__ = ["Contacts", "MappingSource", "init", "reconcile", "report", "results_path", "send", "status",
           "update", "validate"]

#: A path (``str`` or ``os.PathLike``; ``"-"`` is standard input), an iterable
#: of dicts (column name -> cell), or a pandas DataFrame.
Contacts: TypeAlias = "str | os.PathLike[str] | Iterable[MappingABC[str, Any]] | pandas.DataFrame"
#: A path to a YAML mapping file, or a dict in that file's shape.
MappingSource: TypeAlias = "str | os.PathLike[str] | MappingABC[str, Any]"




# --- send --------------------------------------------------------------------------


def send(contacts: Contacts, mapping: MappingSource, *, results: str | os.PathLike[str],
         api_key: str | None = None, api_url: str | None = None, api_key_file: str | None = None,
         rate: float | str | None = "10/s", concurrency: int = 8, max_attempts: int = 5,
         timeout: float = 30.0, max_pause: float = 60.0, patience: float = 120.0, existing: str = "stop",
         dry_run: bool = False, limit: int | None = None, only_failed: bool = False, batch: bool = False,
         sheet: str | int | None = None, encoding: str | None = None, delimiter: str | None = None,
         header_row: int | None = None, include_hidden: bool = False, progress: bool | Progress = True,
         sandbox: bool = False, all_problems: bool = False, where: str | None = None,
         exclude: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
         notify: str | None = None, confirm: Callable[[SendPlan], bool] | None = None) -> Run:
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
        api_key, api_key_file: the Collect API key, or a file holding it;
            neither: ``COLLECT_API_KEY``. Not needed for a dry run. Never printed.
        api_url: the API's base URL; None: ``COLLECT_API_URL``, else the last send's
            on ``results``, else ``https://api.usecollect.com/v1``; http only to loopback.
        rate: a ceiling on requests per second: a number, or text such as
            ``"10/s"``, ``"600/min"``; None: no ceiling. Adapts down on 429.
        concurrency, max_attempts, timeout: requests in flight at once (1 to 256); POSTs per row
            on 5xx or connection errors (1 to 100); seconds to wait for one answer (0.1 to 600).
        max_pause, patience: seconds: the longest pause a 429's Retry-After may impose, and
            of 429s with nothing accepted (those pauses apart); beyond either, ``exit_status`` 3.
        existing: rows new to ``results`` whose contact already has a request
            in the campaign: ``"stop"`` (raise before sending), ``"skip"``
            (recorded sent with that request) or ``"send"`` (no check).
        dry_run, limit, only_failed, batch, sheet, encoding, delimiter,
            header_row, include_hidden: as the options of the same names.
        where, exclude: as ``--where`` and ``--exclude``: ``"Country=FR,BE"``
            sends only rows whose column holds one of the values (the others are
            recorded ``filtered``); a do-not-contact list's path, or several
            (their contacts are recorded ``excluded``). Sent by a later call without.
        notify: a URL the summary (``Run.summary.as_dict()``) is POSTed to when the call
            ends, however it ends (api/notify.py); a failure is a ``NotifyWarning``.
        confirm: ``f(plan) -> bool``, shown a real send's plan (sending/plan.py) before
            its first POST; False: ``DeclinedError``, nothing sent. The API never asks.
        progress: True: a ``tqdm.auto`` bar on standard error and the messages logged to
            ``"bulksend"``; False: the messages only; or a ``Progress`` (common/progress.py).
        sandbox: rehearse (``--sandbox``): nothing reaches Collect; see results_path.
        all_problems: raise every reason not to start found together, as the
            command line reports them (``settings.SeveralErrors``); False: the first.

    Returns:
        The ``Run``: counts, exit status, the results path, the rows' outcomes.

    Raises:
        BulksendError: nothing was sent (its ``exit_status``): ``UsageError``, ``InputError``,
            ``MappingError``, ``ResultsError``, ``LockedError``, ``AuthError``,
            ``AbortError``, ``ExistingError`` (see ``existing``), ``DeclinedError``.
        TypeError: ``contacts`` or ``mapping`` is of none of the kinds above.
        KeyboardInterrupt: interrupted before the sending started.
    """
    with Ending(notify, os.fspath(results), dry_run=dry_run) as ending:
        source = contacts_source(contacts, sheet=sheet, encoding=encoding, delimiter=delimiter,
                                 header_row=header_row, include_hidden=include_hidden)
        mode = Mode(dry_run=dry_run, limit=limit, only_failed=only_failed, batch=batch, where=where,
                    exclude=exclude_paths(exclude))
        config = _send_config(source, mapping_source(mapping), results, sandbox=sandbox, mode=mode,
                              concurrency=concurrency, max_attempts=max_attempts, timeout=timeout,
                              max_pause=max_pause, patience=patience, existing=existing, confirm=confirm)
        config = _with_access(config, api_url=api_url, api_key=api_key, api_key_file=api_key_file, rate=rate,
                              sandbox=sandbox, all_problems=all_problems)
        warned = _before_sending(config, source, api_key_file)
        summary, rehearsal = _sending(config, progress_for(progress), sandbox=sandbox, confirm=confirm)
        ending.run = Run(summary, tuple(warned), rehearsal)
    return ending.run


def results_path(contacts: str, results: str | None = None, *, dry_run: bool = False,
                 sandbox: bool = False) -> Path:
    """The results CSV ``bulksend send CONTACTS`` writes: ``results`` when
    given, else ``CONTACTS-results.csv`` in the current folder
    (``CONTACTS-dry-run.csv`` for a dry run, ``CONTACTS-sandbox-results.csv``
    for a rehearsal; ``stdin`` for ``-``). UsageError for a rehearsal's
    ``results`` without "sandbox" in its name, so no one takes it for real sends."""
    if sandbox:
        from bulksend.tasks.rehearsal import rehearsal_results

        return rehearsal_results(contacts, results)
    from bulksend.sending.run import resolve_results

    return resolve_results(contacts, results, dry_run)


def _send_config(source: Source, mapped: tuple[str, dict[str, Any] | None],
                 results: str | os.PathLike[str], *, sandbox: bool, concurrency: int, max_attempts: int,
                 timeout: float, max_pause: float, patience: float, existing: str, mode: Mode,
                 confirm: object = None) -> RunConfig:
    """send's settings but the API's URL, key and rate, each checked (UsageError;
    TypeError for ``where`` or ``confirm`` of another kind); a rehearsal's
    ``results`` as results_path checks it. ``mode``: which rows and how (its
    ``existing`` set here)."""
    check_flags(dry_run=mode.dry_run, only_failed=mode.only_failed, batch=mode.batch, sandbox=sandbox)
    check_texts(existing=existing)
    check_paths(results=results)
    check_numbers(concurrency=(concurrency, 1, 256), max_attempts=(max_attempts, 1, 100),
                   timeout=(timeout, 0.1, 600), max_pause=(max_pause, 0.1, 7 * 86400),
                   patience=(patience, 0, 7 * 86400),
                   limit=(mode.limit, 0, None), header_row=(source.reading.get("header_row"), 1, None))
    if existing not in ("stop", "skip", "send"):
        raise UsageError(f"existing={existing!r}: must be 'stop', 'skip' or 'send'")
    if sandbox and mode.dry_run:
        raise UsageError("sandbox=True cannot go with dry_run=True: a rehearsal sends, to its own sandbox")
    if mode.where is not None and not isinstance(mode.where, str):
        raise TypeError(f"where: expected text such as 'Country=FR', not {type(mode.where).__name__}")
    if confirm is not None and not callable(confirm):
        raise TypeError(f"confirm: expected a function of the plan, not {type(confirm).__name__}")
    path = os.fspath(results)
    target = results_path(source.name, path, sandbox=True) if sandbox else Path(path)
    return _input_config(source, mapped, target, api=ApiAccess(timeout=timeout),
                         pace=Pace(concurrency=concurrency, max_attempts=max_attempts, max_pause=max_pause,
                                   patience=patience),
                         mode=replace(mode, existing=existing))


def _input_config(source: Source, mapped: tuple[str, dict[str, Any] | None], results: Path,
                  **options: Any) -> RunConfig:
    """The run's settings but the API's URL, key and rate: the contacts and
    how they are read, the mapping (mapping_source), the results file, and
    ``options`` (RunConfig's other groups: api, pace, mode)."""
    map_name, map_doc = mapped
    return RunConfig(InputSettings(source.name, map_name, open_rows=source.open, mapping_doc=map_doc,
                                   **source.reading),
                     results=results, **options)


def _with_access(config: RunConfig, *, api_url: str | None, api_key: str | None,
                 api_key_file: str | None, rate: float | str | None, sandbox: bool,
                 all_problems: bool) -> RunConfig:
    """``config`` with its API URL, key and rate, checked (settings.py). A
    rehearsal has neither URL nor key here: its own sandbox gives them. A URL
    or key that cannot be used raises the first error; with ``all_problems``,
    the contacts' and mapping's problems first, then the URL's and the key's,
    together (issue 15)."""
    check_flags(all_problems=all_problems)
    check_texts(api_key=api_key, api_url=api_url)
    check_paths(api_key_file=api_key_file, optional=("api_key_file",))
    url = key = ""
    if not sandbox:
        if api_url is None and not os.environ.get("COLLECT_API_URL"):
            from bulksend.tasks.remembered import remembered

            api_url = remembered(config.results).api_url  # a resume sends where the rows were sent
        url, key, errors = api_access(api_url, api_key=api_key, api_key_file=api_key_file,
                                      need_key=not config.mode.dry_run)
        if errors:
            raise together([*_input_errors(config), *errors]) if all_problems else errors[0]
    return replace(config, api=replace(config.api, url=url, key=key),
                   pace=replace(config.pace, rate=parse_rate(rate)))


def _before_sending(config: RunConfig, source: Source, api_key_file: str | None) -> list[str]:
    """The last checks before the engine starts: the files written apart from
    the files read (UsageError), then the typed DataFrame columns warned (as
    _warn_typed, which is called from here: the warning points at send's caller)."""
    check_outputs(config.results, contacts=source.path, api_key_file=api_key_file,
                  mapping=None if config.input.mapping_doc is not None else config.input.mapping)
    return _warn_typed(config, source.frame, stacklevel=4)


def _input_errors(config: RunConfig) -> list[BulksendError]:
    """The error that stops ``config``'s input or mapping from being used (file
    unreadable, mapping problems, …), as a list of at most one; nothing is sent
    and no results file is touched. Reads the header, not the rows."""
    from bulksend.sending.run import open_input

    try:
        table, _mapping = open_input(config.input)
    except BulksendError as exc:
        return [exc]
    table.close()
    return []


def _sending(config: RunConfig, reporter: Progress, *, sandbox: bool,
             confirm: Callable[[SendPlan], bool] | None = None) -> tuple[Summary, Rehearsal | None]:
    """The send itself (or the rehearsal, which asks nothing); the reporter is closed after it."""
    try:
        if sandbox:
            from bulksend.tasks.rehearsal import rehearse

            summary, rehearsal = blocking(lambda stop: rehearse(config, reporter, stop))
            return summary, rehearsal
        from bulksend.sending.run import send_file

        return blocking(lambda stop: send_file(config, reporter, stop, confirm)), None
    finally:
        reporter.close()


def _warn_typed(config: RunConfig, frame: Any, stacklevel: int = 3) -> list[str]:
    """Warn (TypedColumnWarning) for each DataFrame column pandas typed that the
    mapping sends as text; the mapping is checked here, before any thread starts.
    ``stacklevel``: the warning's, so that it points at the caller of send/validate."""
    if frame is None:
        return []
    from bulksend.reading.frames import TypedColumnWarning, typed_column_problems
    from bulksend.sending.run import open_input

    table, mapping = open_input(config.input)
    table.close()
    problems = typed_column_problems(frame, mapping.fed)
    for problem in problems:
        warnings.warn(problem, TypedColumnWarning, stacklevel=stacklevel)
    return problems


# --- validate ----------------------------------------------------------------------


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
    preview: int = 0,
) -> Validation:
    """Check every row against the mapping, as ``bulksend validate``: no network, no key.

    ``contacts``, ``mapping`` and the reading options are as for ``send``;
    ``max_problems`` bounds ``Validation.problems`` (the counts cover every
    row); ``preview``: how many of the first valid rows ``Validation.previews``
    holds, each with the request body as it will be sent (``--preview``).

    Raises:
        BulksendError: ``InputError``, ``MappingError``, ``UsageError``; nothing was read whole.
        TypeError: ``contacts`` or ``mapping`` is of none of the accepted kinds.
    """
    from bulksend.sending.run import validate_file

    source = contacts_source(contacts, sheet=sheet, encoding=encoding, delimiter=delimiter,
                              header_row=header_row, include_hidden=include_hidden)
    mapped = mapping_source(mapping)
    check_numbers(header_row=(header_row, 1, None), max_problems=(max_problems, 0, None),
                   preview=(preview, 0, None))
    config = _input_config(source, mapped, Path("-"))
    warned = _warn_typed(config, source.frame)
    problems: list[Outcome] = []
    previews: list[Outcome] = []

    class Keep(NullProgress):
        def outcome(self, outcome: Outcome) -> None:
            if outcome.status != READY and len(problems) < max_problems:
                problems.append(outcome)
            elif outcome.status == READY and len(previews) < preview and outcome.payload is not None:
                previews.append(outcome)

    summary = validate_file(config, Keep())
    return Validation(
        total=summary.total,
        counts={status: summary.counts[status] for status in (READY, INVALID, DUPLICATE)},
        problems=problems, read=list(summary.read), warnings=[*warned, *summary.warnings],
        notes=list(summary.notes), previews=previews, guesses=list(summary.guesses),
    )


# --- after a send: status, update, reconcile, report -------------------------------


def status(
    results: str | os.PathLike[str],
    *,
    api_key: str | None = None,
    api_url: str | None = None,
    api_key_file: str | None = None,
    rate: float | str | None = "10/s",
    timeout: float = 30.0,
    max_pause: float = 60.0,
    patience: float = 120.0,
    output: str | os.PathLike[str] | None = None,
    progress: bool | Progress = False,
) -> StatusRun:
    """Read where every sent request of a results CSV stands now, as ``bulksend status``.

    Lists each campaign's requests 100 a call (collect-api.md §7, never one
    call per row) and writes ``request_status``, ``due_date`` and
    ``status_read_at`` into ``results`` (or into ``output``, a new file).
    ``api_url``: None reads where the send sent (``results`` remembers it:
    tasks/remembered.py) unless COLLECT_API_URL says otherwise; another URL
    than the send's is warned of. ``api_key``, ``api_key_file``, ``rate``,
    ``timeout``, ``max_pause``, ``patience`` and ``progress`` as for ``send``.

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
            read, a quota, no patience left: nothing written).
    """
    from bulksend.tasks.status import track_file

    check_progress(progress)
    check_texts(api_key=api_key, api_url=api_url)
    check_paths(results=results, output=output, api_key_file=api_key_file,
                optional=("output", "api_key_file"))
    check_numbers(timeout=(timeout, 0.1, 600), max_pause=(max_pause, 0.1, 7 * 86400),
                   patience=(patience, 0, 7 * 86400))
    path = Path(os.fspath(results))
    url, key, note = _after_access("status", path, api_url, api_key, api_key_file)
    per_second = parse_rate(rate)
    reporter = progress_for(progress)
    try:
        if note:
            reporter.event("warning", note)
        return blocking(lambda stop: track_file(
            path, api_url=url, api_key=key, timeout=timeout, rate=per_second, progress=reporter,
            output=None if output is None else Path(os.fspath(output)), stop=stop, max_pause=max_pause,
            patience=patience))
    finally:
        reporter.close()


def _access(api_url: str | None, api_key: str | None, api_key_file: str | None) -> tuple[str, str]:
    """The checked API URL and key (settings.api_access); its first error raised."""
    url, key, errors = api_access(api_url, api_key=api_key, api_key_file=api_key_file)
    if errors:
        raise errors[0]
    return url, key


def _after_access(command: str, results: Path, api_url: str | None, api_key: str | None,
                  api_key_file: str | None) -> tuple[str, str, str | None]:
    """A command after the send: the API URL (``api_url``, else COLLECT_API_URL,
    else the one the send used, else the default: tasks/remembered.py) and key,
    checked, and a note when the URL is not the send's. UsageError, first of
    all for a rehearsal's results (its requests lived in its own sandbox)."""
    from bulksend.store.world import refuse_rehearsal
    from bulksend.tasks.remembered import api_url_for

    refuse_rehearsal(results, command)
    chosen, note = api_url_for(results, api_url)
    url, key = _access(chosen, api_key, api_key_file)
    return url, key, note


def update(results: str | os.PathLike[str], *, where: str | None = None, rows: str | None = None,
           every: bool = False, status: str | None = None, due_date: str | None = None,
           assign: str | None = None, send_completion_message: bool | None = None,
           send_rejection_message: bool | None = None, send_reopen_message: bool | None = None,
           again: bool = False, api_key: str | None = None, api_url: str | None = None,
           api_key_file: str | None = None, rate: float | str | None = "10/s", concurrency: int = 4,
           timeout: float = 30.0, max_pause: float = 60.0, patience: float = 120.0,
           progress: bool | Progress = False, confirm: Callable[[Plan], bool] | None = None) -> UpdateRun:
    """Change many sent requests of a results CSV at once (PATCH /request,
    collect-api.md §7), as ``bulksend update``.

    Rows: ``where`` (``"status=pending,due"``: by the request_status
    ``bulksend status`` last read), ``rows`` (``"12,40-55"``) or ``every``
    sent row. The change: ``status`` (pending, completed, waiting, canceled,
    archived, custom:NAME), ``due_date`` (read as the mapping of the send read
    its dueDate: its format, else ISO 8601; a day is 23:59 that day and a
    time with no offset is read in that mapping's timezone, else the team's,
    from GET /team; it must be later than now),
    ``assign`` (a user id or email; ``"unset"`` clears it), and the
    ``send_*_message`` flags (None: not sent). Each change is journaled beside
    ``results``: calling again after a kill finishes the rest and never makes
    a change twice (``again``: make it even where an earlier run made it).
    ``confirm(plan)`` is called with the plan (``todo`` and ``made`` rows),
    under the results file's lock, before any change, also when there is
    nothing to do; nothing is changed unless it returns True (None: no
    question). ``api_url`` as for ``status``; ``api_key``,
    ``api_key_file``, ``rate``, ``timeout``, ``max_pause``, ``patience`` and
    ``progress`` as for ``send``; ``concurrency``: 1 to 64.

    Returns:
        A ``bulksend.tasks.update.UpdateRun``: ``plan``, ``entries`` (request
        id -> outcome), ``counts``, ``interrupted``, ``aborted`` (a refused
        key: the error); no entries when nothing was changed.

    Raises:
        BulksendError: ``UsageError`` (no rows chosen, no change, a bad
            status or date, the URL or key), ``ResultsError``, ``LockedError``,
            ``AbortError`` (the team's time zone a due date needs could not
            be read); nothing was changed.
    """
    from bulksend.tasks.remembered import read_due_date
    from bulksend.tasks.update import UpdateRun, apply_plan, plan_update, update_session

    check_progress(progress)
    check_texts(where=where, rows=rows, status=status, due_date=due_date, assign=assign, api_key=api_key,
                api_url=api_url)
    check_flags(every=every, again=again, send_completion_message=send_completion_message,
                send_rejection_message=send_rejection_message, send_reopen_message=send_reopen_message,
                optional=("send_completion_message", "send_rejection_message", "send_reopen_message"))
    check_paths(results=results, api_key_file=api_key_file, optional=("api_key_file",))
    check_callable("confirm", confirm)
    check_numbers(concurrency=(concurrency, 1, 64), timeout=(timeout, 0.1, 600),
                   max_pause=(max_pause, 0.1, 7 * 86400), patience=(patience, 0, 7 * 86400))
    path = Path(os.fspath(results))
    due = read_due_date(path, due_date) if due_date is not None else None
    change, selection = _update_request(
        where=where, rows=rows, every=every, status=status, due_date=due.text if due else None,
        assign=assign, flags={"sendCompletionMessage": send_completion_message,
                              "sendRejectionMessage": send_rejection_message,
                              "sendReopenMessage": send_reopen_message})
    url, key, note = _after_access("update", path, api_url, api_key, api_key_file)
    per_second = parse_rate(rate)
    reporter = progress_for(progress)
    try:
        if note:
            reporter.event("warning", note)
        if due is not None:
            change = replace(change, due_date=_due_instant(due, url, key, timeout))
        with update_session(path) as journal:
            plan = plan_update(path, journal, change, selection, again=again)
            asked = confirm(plan) if confirm is not None else True
            if not plan.todo or not asked:
                return UpdateRun(plan)
            return blocking(lambda stop: apply_plan(
                plan, journal, api_url=url, api_key=key, timeout=timeout, rate=per_second,
                concurrency=concurrency, progress=reporter, stop=stop, max_pause=max_pause,
                patience=patience))
    finally:
        reporter.close()


def _due_instant(due: Any, url: str, key: str, timeout: float) -> str:
    """``--due-date`` (a tasks.remembered.DueInput) as the instant to send; GET
    /team first when it is read in the team's zone. UsageError, AbortError."""
    from bulksend.tasks.remembered import resolve_due, team_zone

    zone = None
    if due.needs_team_zone:
        zone = blocking(lambda _stop: team_zone(api_url=url, api_key=key, timeout=timeout))
    instant: str = resolve_due(due, team_zone=zone)
    return instant


def _update_request(*, where: str | None, rows: str | None, every: bool, status: str | None,
                    due_date: str | None, assign: str | None, flags: dict[str, bool | None]) -> Any:
    """update's (Change, Selection), checked: the change first, then the rows. UsageError."""
    from bulksend.mapping.where import status_where
    from bulksend.tasks.update import Selection, build_change, parse_rows

    change = build_change(status=status, due_date=due_date, assign=assign, flags=flags)
    if not (where or rows or every):
        raise UsageError("which rows? nothing chosen",
                         hint="pass --where status=pending, --rows 12,40-55 or --all")
    selection = Selection(statuses=status_where(where) if where else None,
                          rows=parse_rows(rows) if rows else None, every=every)
    return change, selection


def reconcile(results: str | os.PathLike[str], *, api_key: str | None = None, api_url: str | None = None,
              api_key_file: str | None = None, timeout: float = 30.0, max_pause: float = 60.0,
              patience: float = 120.0, progress: bool | Progress = False) -> Counter[str]:
    """Settle the ``unknown`` rows of a results CSV by looking each up
    (collect-api.md §6), as ``bulksend reconcile``; sends nothing. Found: the
    row becomes ``sent`` with the server's request id; not found: ``failed``
    (the next send sends it). ``api_url`` as for ``status``; ``api_key``,
    ``api_key_file``, ``timeout``, ``max_pause``, ``patience`` and
    ``progress`` as for ``send``.

    Returns:
        The unknown rows looked up, by the status they have now: ``sent``,
        ``failed``, ``unknown`` (still; empty when there were none).

    Raises:
        BulksendError: ``ResultsError`` (no such results file), ``LockedError``,
            ``UsageError`` (the URL or key), ``AuthError``, ``AbortError``.
    """
    from bulksend.tasks.reconcile import reconcile_file

    check_progress(progress)
    check_texts(api_key=api_key, api_url=api_url)
    check_paths(results=results, api_key_file=api_key_file, optional=("api_key_file",))
    check_numbers(timeout=(timeout, 0.1, 600), max_pause=(max_pause, 0.1, 7 * 86400),
                   patience=(patience, 0, 7 * 86400))
    path = Path(os.fspath(results))
    url, key, note = _after_access("reconcile", path, api_url, api_key, api_key_file)
    reporter = progress_for(progress)
    try:
        if note:
            reporter.event("warning", note)
        return blocking(lambda _stop: reconcile_file(path, api_url=url, api_key=key, timeout=timeout,
                                                      progress=reporter, max_pause=max_pause,
                                                      patience=patience))
    finally:
        reporter.close()


def report(results: str | os.PathLike[str], *, examples: int = 3) -> str:
    """What a results CSV says, as ``bulksend report`` prints it: the rows by
    status, the errors grouped by reason (``examples`` rows shown for each)
    and the command to rerun what failed. Reads the file only. Raises
    ``ResultsError`` when it cannot be read as a results file."""
    from bulksend.tasks.report import report_text

    check_paths(results=results)
    check_numbers(examples=(examples, 0, None))
    return report_text(Path(os.fspath(results)), examples=examples)


# --- before a send: init -----------------------------------------------------------


def init(contacts: str, *, output: str | os.PathLike[str] = "mapping.yaml", force: bool = False,
         campaign: str | None = None, api_key: str | None = None, api_url: str | None = None,
         api_key_file: str | None = None, sheet: str | int | None = None, encoding: str | None = None,
         delimiter: str | None = None, header_row: int | None = None) -> tuple[str, list[str]]:
    """Write a commented mapping for the ``contacts`` file to ``output``, its
    columns matched (headers in five languages, the email also by content,
    dates with their format), as ``bulksend init``; never overwrites a file
    unless ``force``. With a ``campaign`` and a key (``api_key``,
    ``api_key_file`` or ``COLLECT_API_KEY``), the campaign's documents and
    forms are listed by name (GET /campaigns/{id}, collect-api.md §6). The
    reading options as for ``send``.

    Returns:
        The mapping's text, as written, and what to tell the person (lines).

    Raises:
        BulksendError: ``InputError`` (the file cannot be read), ``UsageError``
            (the output exists or cannot be written, an unknown campaign, the
            key refused, the URL or key unusable); nothing was written.
    """
    from bulksend.tasks.init import check_campaign, fetch_catalogue, init_mapping
    from bulksend.tasks.scaffold import InitConfig

    check_paths(contacts=contacts, output=output, api_key_file=api_key_file, optional=("api_key_file",))
    check_flags(force=force)
    check_texts(campaign=campaign, api_key=api_key, api_url=api_url, encoding=encoding, delimiter=delimiter)
    check_sheet(sheet)
    check_numbers(header_row=(header_row, 1, None))
    if campaign is not None:
        check_campaign(campaign)
    key = ""
    if campaign and (api_key is not None or api_key_file or os.environ.get("COLLECT_API_KEY", "").strip()):
        key = read_api_key(api_key_file, given=api_key)
    config = InitConfig(contacts=contacts, output=Path(os.fspath(output)), force=force, campaign=campaign,
                        api_url=check_api_url(api_url) if key else DEFAULT_API_URL,  # used with a key only
                        api_key=key, sheet=sheet, encoding=encoding, delimiter=delimiter,
                        header_row=header_row)
    return blocking(lambda _stop: init_mapping(config, fetch_catalogue))
