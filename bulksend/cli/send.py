"""The way to a send: ``init`` (a mapping written for a file), ``validate``
(every row checked, nothing sent) and ``send`` (or its rehearsal, --sandbox).
Each calls its function in bulksend.api and turns the answer into output and
an exit status; the engine is imported only when a command runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bulksend.cli.shared import CONTEXT, Command, api_options, fail, input_options, sheet_value
from bulksend.common.errors import BulksendError, DeclinedError, ExitStatus, UsageError
from bulksend.settings import check_outputs

if TYPE_CHECKING:
    from bulksend.sending.plan import SendPlan


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("contacts", metavar="CONTACTS")
@click.option("--campaign", metavar="ID",
              help="The campaign to send; with an API key its documents and forms are listed by name.")
@click.option("--output", "-o", default="mapping.yaml", show_default=True, metavar="MAPPING.yaml",
              help="Where to write the mapping.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--sheet", metavar="NAME|N", help="Spreadsheet sheet, by name or 1-based number.")
@click.option("--encoding", metavar="NAME", help="Text encoding (detected when omitted).")
@click.option("--delimiter", metavar="CHAR", help="CSV delimiter (detected when omitted).")
@click.option("--header-row", type=click.IntRange(1), metavar="N",
              help="Row holding the column names (default: the first non-blank row).")
@api_options
def init(contacts: str, campaign: str | None, output: str, force: bool, sheet: str | None,
         encoding: str | None, delimiter: str | None, header_row: int | None, api_url: str | None,
         api_key_file: str | None) -> None:
    """Write a commented mapping for CONTACTS, its columns matched for you.

    Headers in English, French, German, Spanish and Italian are matched to the
    contact's email, names and company, the items and the due date; the email
    is also found by content; every other column goes under contact.data with
    a camelCase key; dates get their format. The mapping passes validate on
    CONTACTS. Never overwrites a file without --force.

    \b
    Examples:
      bulksend init contacts.csv
      bulksend init export.xlsx --sheet Clients --campaign xvr69EYLKXvTkfYuk -o clients.yaml
      bulksend validate contacts.csv -m mapping.yaml --preview 3   # then
      bulksend send contacts.csv -m mapping.yaml --sandbox          # and rehearse
    """
    from bulksend import api

    try:
        _text, lines = api.init(contacts, output=output, force=force, campaign=campaign, api_url=api_url,
                                api_key_file=api_key_file, sheet=sheet_value(sheet), encoding=encoding,
                                delimiter=delimiter, header_row=header_row)
    except BulksendError as exc:
        fail(exc)
    click.echo("\n".join(lines))


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("contacts", metavar="CONTACTS")
@input_options
@click.option("--show", type=click.IntRange(0), default=10, show_default=True,
              help="How many problem rows to print.")
@click.option("--preview", type=click.IntRange(0), default=0, metavar="N",
              help="Print the first N valid requests as they will be sent, readably.")
def validate(contacts: str, mapping: str, sheet: str | None, encoding: str | None,
             delimiter: str | None, header_row: int | None, include_hidden: bool, show: int,
             preview: int) -> None:
    """Check CONTACTS against the mapping; no network, no API key needed.

    Prints what was read (format, encoding, delimiter, header row, sheet, rows
    and columns left out), with --preview N the first N requests as they will
    be sent, a summary and the first problems; exit 0 when every row is valid,
    1 otherwise, 2 when the file or the mapping cannot be used.

    \b
    Examples:
      bulksend validate contacts.csv -m mapping.yaml
      bulksend validate contacts.csv -m mapping.yaml --preview 3
    """
    from bulksend import api
    from bulksend.common.outcome import DUPLICATE, INVALID, READY

    try:
        checked = api.validate(contacts, mapping, sheet=sheet_value(sheet), encoding=encoding,
                               delimiter=delimiter, header_row=header_row, include_hidden=include_hidden,
                               max_problems=show, preview=preview)
    except BulksendError as exc:
        fail(exc)
    c = checked.counts
    if checked.read:
        click.echo(f"read {checked.read[0]}")
        for guess in checked.guesses:
            click.echo(f"  guessed: {guess}")
        for note in checked.read[1:]:
            click.echo(f"  left out: {note}")
    if checked.previews:
        from bulksend.cli.preview import preview_lines

        for number, shown in enumerate(checked.previews, start=1):
            assert shown.payload is not None  # api.validate keeps only rows with one
            click.echo("\n".join(["", *preview_lines(shown.payload, row=shown.row, number=number)]))
        click.echo("")
    click.echo(f"{contacts}: {checked.total} rows: {c[READY]} valid, {c[INVALID]} invalid, "
               f"{c[DUPLICATE]} duplicate")
    for problem in checked.problems:
        click.echo(f"{contacts}: row {problem.row}: {problem.status}: {problem.error}")
    hidden = c[INVALID] + c[DUPLICATE] - len(checked.problems)
    if hidden > 0:
        click.echo(f"... and {hidden} more (--show N to list more, or send --dry-run for all)")
    for warning in checked.warnings:
        click.echo(f"{contacts}: warning: {warning}")
    for note in checked.notes:
        click.echo(f"{mapping}: {note}")
    sys.exit(int(checked.exit_status))


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("contacts", metavar="CONTACTS")
@input_options
@click.option("--results", "-o", metavar="RESULTS.csv",
              help="Results CSV; also the resume point. Default: CONTACTS-results.csv in the "
              "current folder. Pass a fixed name for nightly runs over dated exports.")
@api_options
@click.option("--rate", default="10/s", show_default=True,
              help="Ceiling on requests per second (10/s, 600/min, none); the rate adapts "
              "down on 429 and recovers.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests in flight at once.")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=5, show_default=True,
              help="POSTs per row on 5xx or connection errors before it is failed.")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for one answer; a lost answer makes the row unknown "
              "(looked up, never blindly resent).")
@click.option("--max-pause", type=click.FloatRange(0.1, 7 * 86400), default=60.0, show_default=True,
              metavar="SECONDS",
              help="Longest pause a 429's Retry-After may impose; a longer one (a quota) stops the run "
              "with exit 3 and the time to rerun. A nightly job may pass e.g. 3600 to wait instead.")
@click.option("--patience", type=click.FloatRange(0, 7 * 86400), default=120.0, show_default=True,
              metavar="SECONDS",
              help="How long the run goes on while the API accepts nothing and answers 429 (the pauses "
              "it asks for, up to --max-pause, not counted); then it stops with exit 3: rerun to resume.")
@click.option("--skip-existing", "skip_existing", is_flag=True,
              help="Rows this results file has not sent whose key already matches a request in the "
              "campaign (sent from the app, or by a run with another results file) are recorded sent "
              "with that request (the oldest), not sent again. Default: such rows stop the run before "
              "sending (exit 2).")
@click.option("--send-anyway", "send_anyway", is_flag=True,
              help="Send without checking the campaign's existing requests first.")
@click.option("--dry-run", is_flag=True,
              help="Map and validate every row, write each payload in the results, send nothing.")
@click.option("--limit", type=click.IntRange(0), metavar="N",
              help="Send at most N rows this run (a canary); rerun without it for the rest.")
@click.option("--only-failed", is_flag=True, help="Resend only rows recorded failed.")
@click.option("--where", metavar="COLUMN=VALUE[,VALUE…]",
              help="Send only the rows whose COLUMN holds one of the values (ignoring case), e.g. "
              "Country=FR or Country=FR,BE: update --where's grammar. The others are recorded filtered "
              "and sent by a later run without --where, each contact once.")
@click.option("--exclude", metavar="FILE", multiple=True,
              help="A do-not-contact list: a CSV (or sheet) with an email column, or one address a line. "
              "Rows whose contact's email is on it (compared ignoring case, as the key compares emails) are "
              "recorded excluded, naming the file, and never sent while the list is given. Repeatable; a "
              "mapping may name lists too (exclude: FILE).")
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask before sending. On a terminal a real send shows how many requests it will "
              "create, in which campaigns, and which rows it skips, then asks; it never asks when standard "
              "input is not a terminal (cron, CI), nor for --dry-run or --sandbox.")
@click.option("--notify", metavar="URL",
              help="When the run ends, however it ends, POST the summary JSON (the --summary-json document, "
              "never the key) to URL: a health check or chat webhook. 10 s timeout, one retry; a failure "
              "is a warning, never another exit status.")
@click.option("--batch", is_flag=True,
              help="Group rows that share campaign and options into POST /requests (50 a call).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per line on standard error.")
@click.option("--summary-json", metavar="FILE", help="Write the run's totals and exit code to FILE.")
@click.option("--verbose", "-v", is_flag=True, help="Show every retry and look-up.")
@click.option("--sandbox", is_flag=True,
              help="Rehearse: the whole run against an in-process sandbox on 127.0.0.1 (no key, no "
              "network); results in CONTACTS-sandbox-results.csv, which a real send never reads.")
def send(contacts: str, mapping: str, sheet: str | None, encoding: str | None,
         delimiter: str | None, header_row: int | None, include_hidden: bool, results: str | None,
         api_url: str | None, api_key_file: str | None,
         rate: str, concurrency: int, max_attempts: int, timeout: float, dry_run: bool,
         max_pause: float, patience: float, skip_existing: bool, send_anyway: bool,
         limit: int | None, only_failed: bool, where: str | None, exclude: tuple[str, ...], yes: bool,
         notify: str | None, batch: bool, no_progress: bool, log_format: str,
         summary_json: str | None, verbose: bool, sandbox: bool) -> None:
    """Send one Collect request per valid row of CONTACTS.

    CONTACTS is a .csv/.tsv/.xlsx/.xls/.ods file, or - for CSV on standard input.
    Rerunning the same command resumes: rows already sent are skipped without any
    API call, unknown rows are looked up first, failed rows are retried, new rows
    are sent.

    \b
    Examples:
      export COLLECT_API_KEY=...            # from your Collect profile page
      bulksend send contacts.csv -m mapping.yaml --dry-run
      bulksend send contacts.csv -m mapping.yaml --limit 5      # canary
      bulksend send contacts.csv -m mapping.yaml --rate 600/min
      bulksend send export.xlsx --sheet Clients -m mapping.yaml -o clients-results.csv
      bulksend send contacts.csv -m mapping.yaml --only-failed
      bulksend send contacts.csv -m mapping.yaml --skip-existing   # some were sent from the app
      bulksend send contacts.csv -m mapping.yaml --sandbox   # rehearse: no key, nothing leaves
      bulksend send contacts.csv -m mapping.yaml --where Country=FR --exclude unsubscribed.csv

    Before the first POST, rows this results file has never sent are checked
    against their campaign's requests: a contact that already has one stops the
    run (exit 2) unless --skip-existing or --send-anyway says what to do. Then,
    on a terminal, a real send asks (--yes does not); no: nothing sent, exit 1.
    """
    from bulksend import api
    from bulksend.api.notify import check_url, stopped_document
    from bulksend.common.display import make_progress

    ending = _Ending(summary_json)
    target: str | Path = results or ""  # until the results file is known
    try:
        ending.url = check_url(notify) if notify is not None else None
        existing = _existing_choice(skip_existing=skip_existing, send_anyway=send_anyway)
        if sandbox:
            _refuse_beside_sandbox(contacts, api_key_file=api_key_file, dry_run=dry_run)
        target = api.results_path(contacts, results, dry_run=dry_run, sandbox=sandbox)
        # First, and with no summary written on failure: it may be the input.
        check_outputs(target, contacts=contacts, mapping=mapping, api_key_file=api_key_file,
                      summary_json=summary_json, results_name="the --results file")
    except BulksendError as exc:
        ending.notify(stopped_document(exc, results=target, dry_run=dry_run))  # no summary file: see above
        fail(exc)
    asks = not (yes or dry_run or sandbox) and sys.stdin is not None and sys.stdin.isatty()
    _sigterm_interrupts(when=ending.url is not None)
    try:
        # Every reason not to start, at once (all_problems): the API URL, the key, the input and mapping.
        run = api.send(
            contacts, mapping, results=target, api_url=api_url, api_key_file=api_key_file, rate=rate,
            concurrency=concurrency, max_attempts=max_attempts, timeout=timeout, max_pause=max_pause,
            patience=patience, existing=existing, dry_run=dry_run, limit=limit, only_failed=only_failed,
            where=where, exclude=exclude, confirm=_ask if asks else None,
            batch=batch, sheet=sheet_value(sheet), encoding=encoding, delimiter=delimiter,
            header_row=header_row, include_hidden=include_hidden, sandbox=sandbox, all_problems=True,
            progress=make_progress(log_format=log_format, no_progress=no_progress, verbose=verbose),
        )
    except (BulksendError, KeyboardInterrupt) as exc:
        # The same keys as a finished run's summary, so a monitor reads one shape.
        ending.ended(stopped_document(exc, results=target, dry_run=dry_run))
        _stopped(exc)
    ending.write(document := run.summary.as_dict())
    shown_argv = _without_secrets(sys.argv)
    _print_summary(run.summary, argv=shown_argv)
    if run.rehearsal is not None:
        from bulksend.tasks.rehearsal import closing_lines

        click.echo("\n".join(["", *closing_lines(run.rehearsal, shown_argv, target, mapping)]))
    ending.notify(document)  # last: it may wait on the network
    sys.exit(int(run.exit_status))


def _stopped(error: BulksendError | KeyboardInterrupt) -> NoReturn:
    """Say how a send that raised ended, and exit with its status."""
    if isinstance(error, KeyboardInterrupt):  # as main() says it (click would say "Aborted!", exit 1)
        click.echo("bulksend: interrupted", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))
    if isinstance(error, DeclinedError):  # an answer, not an error: as update's "nothing changed"
        click.echo(error.message)
        sys.exit(int(error.exit_status))
    fail(error)


class _Ending:
    """Where the run's summary document goes when ``send`` ends: --summary-json
    (``summary_json``), then --notify (``url``, set once checked; api/notify.py),
    each a warning on standard error when it cannot be."""

    def __init__(self, summary_json: str | None) -> None:
        self.summary_json = summary_json
        self.url: str | None = None

    def ended(self, document: dict[str, Any]) -> None:
        self.write(document)
        self.notify(document)

    def write(self, document: dict[str, Any]) -> None:
        if self.summary_json:
            _write_json(self.summary_json, document)

    def notify(self, document: dict[str, Any]) -> None:
        if self.url is None:
            return
        from bulksend.api.notify import post_summary

        problem = post_summary(self.url, document)
        if problem is not None:
            click.echo(f"bulksend: warning: {problem}", err=True)


def _ask(plan: SendPlan) -> bool:
    """The question on a terminal (issue 28): the plan, then yes or no (no by default; end of input: no)."""
    for line in plan.lines():
        click.echo(line, err=True)
    try:
        return click.confirm("send them?", default=False, err=True)
    except click.Abort:  # Ctrl-D or Ctrl-C at the question: nothing is sent
        click.echo("", err=True)
        return False


def _sigterm_interrupts(*, when: bool) -> None:
    """With --notify (``when``): a SIGTERM before the sending starts (systemd
    stopping a job during its checks) ends the run as Ctrl-C does, a
    KeyboardInterrupt, so that the notification still goes; the sending phase
    has its own handling (sending/stop.py). Only from the main thread, over the default."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if when and threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def _existing_choice(*, skip_existing: bool, send_anyway: bool) -> str:
    """What to do with rows whose request exists already: "stop" (neither
    flag), "skip" or "send". UsageError (exit 2, nothing sent) for both: they
    contradict each other, and no order of the two may decide (issue 23, case 6)."""
    if skip_existing and send_anyway:
        raise UsageError("--skip-existing and --send-anyway contradict each other: nothing was sent",
                         hint="--skip-existing records the existing request as the row's; "
                              "--send-anyway sends a new one: pass one of them")
    return "skip" if skip_existing else "send" if send_anyway else "stop"


def _refuse_beside_sandbox(contacts: str, *, api_key_file: str | None, dry_run: bool) -> None:
    """--sandbox runs against its own sandbox, with its own key: UsageError for
    --api-url on the command line (COLLECT_API_URL is ignored), --api-key-file
    and --dry-run; and for standard input, which it would read twice (once to
    learn the campaigns the sandbox must stand in for)."""
    if contacts == "-":
        raise UsageError("--sandbox reads CONTACTS twice, and standard input can be read once",
                         hint="save it to a file and pass its name")
    source = click.get_current_context().get_parameter_source("api_url")
    given = [name for name, on in (
        ("--api-url", source is click.core.ParameterSource.COMMANDLINE),
        ("--api-key-file", api_key_file is not None), ("--dry-run", dry_run)) if on]
    if given:
        raise UsageError(f"--sandbox cannot go with {' or '.join(given)}: a rehearsal sends to its own "
                         "sandbox on 127.0.0.1, with its own key",
                         hint="drop --sandbox to send for real, or drop " + " and ".join(given))


def _write_json(path: str, data: dict[str, Any]) -> None:
    """--summary-json: ``data`` written to ``path``; a warning (no exit) when it cannot be."""
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        click.echo(f"bulksend: warning: {path}: cannot write the summary: {exc.strerror}", err=True)


def _without_secrets(argv: list[str]) -> list[str]:
    """``argv`` as a printed command may repeat it: a --notify URL as its scheme
    and host only (a webhook's path is its secret), an --api-url without user
    info. The person puts them back from their own command line or job file."""
    from bulksend.api.notify import shown
    from bulksend.settings import shown_url

    out: list[str] = []
    mask = {"--notify": shown, "--api-url": shown_url}
    pending = None
    for arg in argv:
        name, eq, value = arg.partition("=")
        if pending is not None:
            out.append(pending(arg))
            pending = None
        elif name in mask and eq:
            out.append(f"{name}={mask[name](value)}")
        else:
            out.append(arg)
            pending = mask.get(arg)
    return out


def _rerun_command(argv: list[str], *, drop: tuple[str, ...] = ("--limit",),
                   add: str = "", flags: tuple[str, ...] = ("--dry-run",)) -> str:
    """The command line ``argv`` to run again: without ``drop``'s options (each
    with its value), without ``flags``, plus ``add``."""
    import shlex

    args = ["bulksend"]
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in drop:
            skip = True
            continue
        if any(arg.startswith(d + "=") for d in drop) or arg in flags:
            continue
        args.append(arg)
    text = shlex.join(args)
    return f"{text} {add}".rstrip()


def _print_summary(summary: Any, *, argv: list[str]) -> None:
    """A run's totals, its first problems, where the results are and how to resume (``argv``)."""
    from bulksend.common.outcome import DUPLICATE, EXCLUDED, FAILED, FILTERED, INVALID, READY, SENT, UNKNOWN
    from bulksend.sending.recorder import NOT_REACHED

    c = summary.counts
    out = click.echo
    what = "dry run" if summary.dry_run else "run"
    verb = "stopped" if summary.interrupted or summary.aborted else "finished"
    out(f"\n{what} {verb} in {summary.elapsed:.1f}s: {summary.total} rows, {summary.posts} POSTs")
    labels = [
        (SENT, "sent"), (READY, "ready (not sent)"), (FAILED, "failed"), (UNKNOWN, "unknown"),
        (INVALID, "invalid (not sent)"), (DUPLICATE, "duplicate (not sent)"),
        (FILTERED, "filtered (--where)"), (EXCLUDED, "excluded (--exclude)"),
        (NOT_REACHED, "not reached"),
    ]
    for status, label in labels:
        if c[status]:
            out(f"  {label:<22}{c[status]}")
    for status in (INVALID, DUPLICATE, FAILED, UNKNOWN):
        for o in summary.examples.get(status, [])[:3]:
            out(f"  row {o.row}: {status}: {o.error}")
    for note in summary.notes:
        out(f"  {note}")
    out(f"results: {summary.results}")
    if summary.aborted is not None:
        out(f"aborted: {summary.aborted}")
        if summary.aborted.hint:
            out(f"  hint: {summary.aborted.hint}")
    if summary.interrupted or summary.aborted is not None or c[FAILED] or c[UNKNOWN]:
        out(f"to resume: {_rerun_command(argv)}")
    elif c[READY] and not summary.dry_run:
        # Without --only-failed, which would never send them (issue 27).
        out(f"to send the rest: {_rerun_command(argv, flags=('--dry-run', '--only-failed'))}")
