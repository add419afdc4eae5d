"""The command line: parse options, build one RunConfig, run the core, map
exceptions to one-line messages and exit statuses. Heavy imports (pandas,
aiohttp) happen inside the commands, so ``bulksend --help`` starts fast."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from bulksend.common.errors import BulksendError, ExitStatus, UsageError
from bulksend.common.version import __version__

DEFAULT_API_URL = "https://api.usecollect.com/v1"

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(error: BulksendError) -> NoReturn:
    from bulksend.cli.problems import SeveralErrors

    fail_all(error.errors if isinstance(error, SeveralErrors) else [error])


def fail_all(errors: list[BulksendError]) -> NoReturn:
    """Report every error (each its line(s) and hint) and exit with the first's
    status. A mapping with several problems is printed one problem per line,
    each with its line number (issue 15)."""
    from bulksend.common.errors import MappingError

    for error in errors:
        if isinstance(error, MappingError) and len(error.problems) > 1:
            click.echo(f"bulksend: error: {error.path}: {len(error.problems)} problems:", err=True)
            for problem in error.problems:
                click.echo(f"  {problem}", err=True)
        else:
            click.echo(f"bulksend: error: {error.message}", err=True)
        if error.hint:
            click.echo(f"hint: {error.hint}", err=True)
    sys.exit(int(errors[0].exit_status))


def parse_rate(text: str) -> float | None:
    """``10/s``, ``600/min``, ``36000/h``, ``10`` (per second), ``none`` (no ceiling)."""
    t = text.strip().lower()
    if t in ("none", "off", "unlimited", "0"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?", t)
    if not m:
        raise UsageError(
            f"--rate {text!r}: not a rate", hint="write it like 10/s, 600/min or 36000/h"
        )
    value = float(m.group(1))
    per = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
    rate = value / per.get(m.group(2) or "s", 1)
    if rate <= 0:
        return None
    return rate


# A host name as RFC 1123 writes it (letters, digits, hyphens; dot-separated
# labels), and underscores, which some internal names use. Anything else in
# the host (a backslash, a percent sign, non-ASCII) is read differently by
# different URL parsers: refused, not guessed at.
_HOST = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?")


def check_api_url(url: str) -> str:
    """The --api-url value, or UsageError (exit 2). Refused: anything but
    http(s); a user name or password (``user@host``); a host that is not a
    plain host name or IP address (urlsplit and aiohttp's parser must agree
    on it, issue 11); a bad port; a query or fragment; plain http to a host
    that is not loopback (it would carry the key unencrypted)."""
    hint = f"the Collect API is {DEFAULT_API_URL}; a local sandbox is http://127.0.0.1:PORT/v1"

    def bad(why: str) -> UsageError:
        return UsageError(f"--api-url {url!r}: {why}", hint=hint)

    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise bad("holds a space, a backslash or a control character")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        raise bad("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise bad("not an http(s) URL")
    if "@" in parts.netloc:
        raise bad("holds a user name or password (before @); the key comes from COLLECT_API_KEY "
                  "or --api-key-file")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    host = parts.hostname or ""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
    if ip is None and ("[" in parts.netloc or not _HOST.fullmatch(host)):
        raise bad(f"{host or 'the host'!r} is not a host name or IP address")
    if parts.query or parts.fragment:
        raise bad("holds a query (?) or fragment (#); give the API's base URL only")
    if parts.scheme == "http" and not (host == "localhost" or (ip is not None and ip.is_loopback)):
        raise UsageError(
            f"--api-url {url!r}: plain http would send the API key unencrypted",
            hint="use https://, or http:// only to a loopback sandbox (127.0.0.1, localhost)",
        )
    return url


_KEY_FILE_MAX = 4096  # bytes: far more than a key; a bigger file is the wrong file


def _key_problem(key: str) -> str | None:
    """Why ``key`` (already stripped) cannot be an API key; None when it can."""
    if not key:
        return "is empty"
    lines = key.splitlines()
    if len(lines) > 1:
        return (f"holds {len(lines)} lines; it must hold only the key"
                + (" (not NAME=value)" if "=" in lines[0] else ""))
    if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.+", key):  # an environment file's line
        return "holds NAME=value; it must hold only the key"
    for i, char in enumerate(key, start=1):
        if not (" " < char < "\x7f"):
            return f"holds a space, a control or a non-ASCII character (character {i}); keys are plain ASCII"
    return None


def read_api_key(api_key_file: str | None) -> str:
    """The API key from ``api_key_file`` (UTF-8 text, a BOM and surrounding
    blank space allowed) or from COLLECT_API_KEY. UsageError (exit 2) when it
    cannot be read or cannot be a key: empty, not UTF-8, binary, several lines,
    a space or non-ASCII character inside. The key is never put in a message."""
    if api_key_file:
        try:
            with open(api_key_file, "rb") as handle:
                data = handle.read(_KEY_FILE_MAX + 1)
        except OSError as exc:
            raise UsageError(f"{api_key_file}: cannot read the API key file: {exc.strerror}") from exc
        hint = "the file must hold only the key, from the bottom of your Collect profile page"
        if len(data) > _KEY_FILE_MAX:
            raise UsageError(f"{api_key_file}: the API key file is over {_KEY_FILE_MAX} bytes; "
                             "it is not a key file", hint=hint)
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{api_key_file}: the API key file is not UTF-8 text "
                             f"(byte {exc.start + 1}); a binary file?", hint=hint) from None
        problem = _key_problem(text.strip())
        if problem:
            raise UsageError(f"{api_key_file}: the API key file {problem}", hint=hint)
        return text.strip()
    key = os.environ.get("COLLECT_API_KEY", "").strip()
    if not key:
        raise UsageError(
            "no API key: set COLLECT_API_KEY or pass --api-key-file FILE",
            hint="the key is at the bottom of your profile page in the Collect app; without one, "
            "`bulksend send ... --sandbox` rehearses the whole run and `--dry-run` checks every row",
        )
    problem = _key_problem(key)
    if problem:
        raise UsageError(f"COLLECT_API_KEY {problem}",
                         hint="set it to the key alone, from the bottom of your Collect profile page")
    return key


def check_outputs(contacts: str, mapping: str, api_key_file: str | None, results: Path,
                  summary_json: str | None) -> None:
    """Every file a send writes (the results, its journal and side files, the
    --summary-json) against every file it reads (contacts, mapping, key file)
    and each other, by device and inode (issue 11). UsageError (exit 2)."""
    from bulksend.store.results import check_outputs_apart
    from bulksend.store.runlock import side_files

    outputs: list[tuple[str, Path | str]] = [("the --results file", results)]
    outputs += [(f"the --results file's {what.removeprefix('its ')}", path)
                for what, path in side_files(results)]
    if summary_json:
        outputs.append(("--summary-json", summary_json))
        # Checked before anything is sent: a monitor that reads this file would
        # otherwise go on reading a stale one after a run that could not write it.
        folder = Path(summary_json).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UsageError(f"{summary_json}: --summary-json cannot be written there "
                             f"({folder} is not a folder this user can write)",
                             hint="pass a path in a folder that exists and is writable")
    inputs: list[tuple[str, Path | str]] = [("the contacts file", contacts), ("the mapping", mapping)]
    if api_key_file:
        inputs.append(("--api-key-file", api_key_file))
    check_outputs_apart(outputs, inputs)


def refuse_key_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--api-key is refused: a key on the command line is visible to every user "
            "of this machine (ps, shell history). Set COLLECT_API_KEY or use --api-key-file FILE."
        )


def input_options(f: Any) -> Any:
    f = click.option("--include-hidden", is_flag=True,
                     help="Read rows hidden in an .xlsx sheet (e.g. by a filter) like any other; "
                     "by default they are left out, each recorded invalid with the reason.")(f)
    f = click.option("--header-row", type=click.IntRange(1), metavar="N",
                     help="Row holding the column names (1 = first row); rows above it are not "
                     "read. Default: the first non-blank row.")(f)
    f = click.option("--delimiter", metavar="CHAR",
                     help="CSV delimiter; detected among , ; tab | when omitted.")(f)
    f = click.option("--encoding", metavar="NAME",
                     help="Text encoding; UTF-8 (with or without BOM), UTF-16, Windows-1252 "
                     "(and Latin-1), Mac Roman and other code pages are detected when omitted; "
                     "a file no candidate reads cleanly is refused.")(f)
    f = click.option("--sheet", metavar="NAME|N",
                     help="Spreadsheet sheet, by name or 1-based number (default: the first).")(f)
    f = click.option("--mapping", "-m", required=True, metavar="MAPPING.yaml",
                     type=click.Path(dir_okay=True), help="YAML mapping of columns to request fields.")(f)
    return f


def api_options(f: Any) -> Any:
    """Where the API is and how the key is given (send and reconcile)."""
    f = click.option("--api-key", hidden=True, expose_value=False, callback=refuse_key_option)(f)
    f = click.option("--api-key-file", metavar="FILE",
                     help="Read the API key from FILE instead of COLLECT_API_KEY.")(f)
    f = click.option("--api-url", envvar="COLLECT_API_URL", default=DEFAULT_API_URL, show_default=True,
                     help="API base URL (env COLLECT_API_URL).")(f)
    return f


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="bulksend")
def cli() -> None:
    """Send Collect document requests to every contact in a spreadsheet.

    \b
    Start here:
      bulksend demo                                   # sandbox + samples, end to end
      bulksend init contacts.csv                      # a mapping written for your file
      bulksend send contacts.csv -m mapping.yaml --sandbox   # rehearse, no key needed
      bulksend validate contacts.csv -m mapping.yaml  # check everything, send nothing
      bulksend send contacts.csv -m mapping.yaml      # send; rerun the same to resume
      bulksend report contacts-results.csv            # what happened, what to rerun
      bulksend reconcile contacts-results.csv         # settle unknown rows, send nothing

    The API key is read from COLLECT_API_KEY or --api-key-file, never from the
    command line. Exit status: 0 all sent, 1 some rows not sent, 2 usage or input
    error (nothing sent), 3 aborted (resumable), 130 interrupted (resumable).
    """


@cli.command(context_settings=CONTEXT)
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
         encoding: str | None, delimiter: str | None, header_row: int | None, api_url: str,
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
    from bulksend.tasks.init import fetch_catalogue, init_mapping
    from bulksend.tasks.scaffold import InitConfig

    try:
        key = ""
        if campaign and (api_key_file or os.environ.get("COLLECT_API_KEY", "").strip()):
            key = read_api_key(api_key_file)
        config = InitConfig(contacts=contacts, output=Path(output), force=force, campaign=campaign,
                            api_url=check_api_url(api_url) if key else api_url, api_key=key,
                            sheet=_sheet(sheet), encoding=encoding, delimiter=delimiter,
                            header_row=header_row)
        _text, lines = init_mapping(config, fetch_catalogue)
    except BulksendError as exc:
        fail(exc)
    click.echo("\n".join(lines))


@cli.command(context_settings=CONTEXT)
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
@click.option("--skip-existing", "existing", flag_value="skip",
              help="Rows new to the results file whose contact already has a request in the campaign "
              "(sent from the app, or by a run with another results file) are recorded sent with "
              "that request, not sent again. Default: such rows stop the run before sending (exit 2).")
@click.option("--send-anyway", "existing", flag_value="send",
              help="Send without checking the campaign's existing requests first.")
@click.option("--dry-run", is_flag=True,
              help="Map and validate every row, write each payload in the results, send nothing.")
@click.option("--limit", type=click.IntRange(0), metavar="N",
              help="Send at most N rows this run (a canary); rerun without it for the rest.")
@click.option("--only-failed", is_flag=True, help="Resend only rows recorded failed.")
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
         api_url: str, api_key_file: str | None,
         rate: str, concurrency: int, max_attempts: int, timeout: float, dry_run: bool,
         max_pause: float, existing: str | None,
         limit: int | None, only_failed: bool, batch: bool, no_progress: bool, log_format: str,
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

    Before the first POST, rows this results file has never sent are checked
    against their campaign's requests: a contact that already has one stops the
    run (exit 2) unless --skip-existing or --send-anyway says what to do.
    """
    from bulksend.cli.problems import input_errors, together
    from bulksend.common.display import make_progress
    from bulksend.sending.run import resolve_results, send_file
    from bulksend.settings import RunConfig

    rehearsal = None
    try:
        if sandbox:
            _refuse_beside_sandbox(contacts, api_key_file=api_key_file, dry_run=dry_run)
            from bulksend.tasks.rehearsal import (
                rehearsal_results,  # only here: a real send need not import it
            )
        target = (rehearsal_results(contacts, results) if sandbox
                  else resolve_results(contacts, results, dry_run))
        # First, and with no summary written on failure: it may be the input.
        check_outputs(contacts, mapping, api_key_file, target, summary_json)
    except BulksendError as exc:
        fail(exc)
    results_for_summary = str(target)
    try:
        config = RunConfig(
            contacts=contacts, mapping=mapping, results=target, sheet=_sheet(sheet), encoding=encoding,
            delimiter=delimiter, header_row=header_row, include_hidden=include_hidden,
        )
        # Every reason not to start, at once: the API URL, the key, the input and mapping.
        url, key, errors = ("", "", []) if sandbox else _api_access(api_url, api_key_file,
                                                                     need_key=not dry_run)
        if errors:
            raise together([*input_errors(config), *errors])
        config = dataclasses.replace(
            config,
            api_url=url,
            api_key=key,
            rate=parse_rate(rate),
            concurrency=concurrency,
            max_attempts=max_attempts,
            timeout=timeout,
            max_pause=max_pause,
            existing=existing or "stop",
            dry_run=dry_run,
            limit=limit,
            only_failed=only_failed,
            batch=batch,
        )
        progress = make_progress(log_format=log_format, no_progress=no_progress, verbose=verbose)
        try:
            if sandbox:
                from bulksend.tasks.rehearsal import rehearse

                summary, rehearsal = rehearse(config, progress)
            else:
                summary = send_file(config, progress)
        finally:
            progress.close()
    except BulksendError as exc:
        if summary_json:
            # The same keys as a finished run's summary, so a monitor reads one shape.
            from bulksend.common.outcome import Summary

            stopped = Summary(results=Path(results_for_summary), dry_run=dry_run, aborted=exc)
            _write_json(summary_json, {**stopped.as_dict(), "error": exc.message})
        fail(exc)
    if summary_json:
        _write_json(summary_json, summary.as_dict())
    _print_summary(summary, contacts=contacts, argv=sys.argv)
    if rehearsal is not None:
        from bulksend.tasks.rehearsal import closing_lines

        click.echo("\n".join(["", *closing_lines(rehearsal, sys.argv, target, mapping)]))
    sys.exit(int(summary.exit_status))


def exit_at_once(status: int) -> NoReturn:
    """``sys.exit(status)`` without the interpreter's teardown: freeing every
    object of every module (aiohttp's among them) costs 50-100 ms of CPU for
    nothing once a run is over (issue 18). Only ``main``, the program's entry
    point, calls it, after the command has returned: every file of the run is
    closed by then (journal, results, summary), and a program that calls the
    commands itself (click's ``CliRunner``, ``cli.main(standalone_mode=False)``)
    keeps its process. The atexit handlers still run and the standard streams
    are flushed. The ordinary exit when a thread of ours is still running (it
    waits for it) or a profiler or tracer is on (cProfile and coverage write
    their data after the program ends)."""
    import atexit
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if sys.getprofile() is not None or sys.gettrace() is not None or any(
            t.is_alive() and not t.daemon for t in others):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(status)


def _api_access(api_url: str, api_key_file: str | None, *,
                need_key: bool) -> tuple[str, str, list[BulksendError]]:
    """The checked API URL and key, and every error met finding them (both
    are looked at, so a bad URL does not hide a missing key)."""
    errors: list[BulksendError] = []
    url = key = ""
    try:
        url = check_api_url(api_url)
    except BulksendError as exc:
        errors.append(exc)
    if need_key:
        try:
            key = read_api_key(api_key_file)
        except BulksendError as exc:
            errors.append(exc)
    return url, key, errors


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


def _sheet(sheet: str | None) -> str | int | None:
    if sheet is None:
        return None
    return int(sheet) if sheet.isdigit() else sheet


def _write_json(path: str, data: dict[str, Any]) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        click.echo(f"bulksend: warning: {path}: cannot write the summary: {exc.strerror}", err=True)


def _rerun_command(argv: list[str], *, drop: tuple[str, ...] = ("--limit",),
                   add: str = "") -> str:
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
        if any(arg.startswith(d + "=") for d in drop) or arg == "--dry-run":
            continue
        args.append(arg)
    text = shlex.join(args)
    return f"{text} {add}".rstrip()


def _print_summary(summary: Any, *, contacts: str, argv: list[str]) -> None:
    from bulksend.common.outcome import DUPLICATE, FAILED, INVALID, READY, SENT, UNKNOWN

    c = summary.counts
    out = click.echo
    what = "dry run" if summary.dry_run else "run"
    verb = "stopped" if summary.interrupted or summary.aborted else "finished"
    out(f"\n{what} {verb} in {summary.elapsed:.1f}s: {summary.total} rows, {summary.posts} POSTs")
    labels = [
        (SENT, "sent"), (READY, "ready (not sent)"), (FAILED, "failed"), (UNKNOWN, "unknown"),
        (INVALID, "invalid (not sent)"), (DUPLICATE, "duplicate (not sent)"),
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
        out(f"to send the rest: {_rerun_command(argv)}")


@cli.command(context_settings=CONTEXT)
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
    from bulksend.common.outcome import DUPLICATE, INVALID, READY
    from bulksend.common.progress import RecordingProgress
    from bulksend.sending.run import validate_file
    from bulksend.settings import RunConfig

    problems: list[str] = []
    previews: list[tuple[int, dict[str, Any]]] = []

    class Collect(RecordingProgress):
        def outcome(self, outcome: Any) -> None:
            if outcome.status != READY and len(problems) < show:
                problems.append(f"{contacts}: row {outcome.row}: {outcome.status}: {outcome.error}")
            elif outcome.status == READY and len(previews) < preview and outcome.payload is not None:
                previews.append((outcome.row, outcome.payload))

    try:
        summary = validate_file(
            RunConfig(contacts=contacts, mapping=mapping, results=Path("-"), sheet=_sheet(sheet),
                      encoding=encoding, delimiter=delimiter, header_row=header_row,
                      include_hidden=include_hidden),
            Collect(),
        )
    except BulksendError as exc:
        fail(exc)
    c = summary.counts
    if summary.read:
        click.echo(f"read {summary.read[0]}")
        for guess in summary.guesses:
            click.echo(f"  guessed: {guess}")
        for note in summary.read[1:]:
            click.echo(f"  left out: {note}")
    if previews:
        from bulksend.cli.preview import preview_lines

        for number, (row, payload) in enumerate(previews, start=1):
            click.echo("\n".join(["", *preview_lines(payload, row=row, number=number)]))
        click.echo("")
    click.echo(f"{contacts}: {summary.total} rows: {c[READY]} valid, {c[INVALID]} invalid, "
               f"{c[DUPLICATE]} duplicate")
    for line in problems:
        click.echo(line)
    hidden = c[INVALID] + c[DUPLICATE] - len(problems)
    if hidden > 0:
        click.echo(f"... and {hidden} more (--show N to list more, or send --dry-run for all)")
    for warning in summary.warnings:
        click.echo(f"{contacts}: warning: {warning}")
    for note in summary.notes:
        click.echo(f"{mapping}: {note}")
    sys.exit(0 if c[INVALID] + c[DUPLICATE] == 0 else 1)


@cli.command(context_settings=CONTEXT)
@click.argument("results", metavar="RESULTS.csv")
@click.option("--examples", type=click.IntRange(0), default=3, show_default=True,
              help="Example rows shown per error reason.")
def report(results: str, examples: int) -> None:
    """Summarise a results CSV: counts by status, errors grouped by reason, and
    the command to rerun what failed.

    \b
    Example:
      bulksend report contacts-results.csv
    """
    from bulksend.tasks.report import report_text

    try:
        click.echo(report_text(Path(results), examples=examples))
    except BulksendError as exc:
        fail(exc)


@cli.command(context_settings=CONTEXT)
@click.argument("results", metavar="RESULTS.csv")
@api_options
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for one answer.")
def reconcile(results: str, api_url: str, api_key_file: str | None, timeout: float) -> None:
    """Settle the unknown rows of RESULTS.csv by looking them up; sends nothing.

    An unknown row's POST may have reached the server but its answer was lost.
    Found: it becomes sent, with the server's request id. Not found: it becomes
    failed, and the next send sends it. (send does this by itself on a rerun.)

    \b
    Example:
      bulksend reconcile contacts-results.csv
    """
    from bulksend.common.progress import NullProgress
    from bulksend.tasks.reconcile import reconcile_file

    try:
        counts = reconcile_file(Path(results), api_url=check_api_url(api_url),
                                api_key=read_api_key(api_key_file), timeout=timeout,
                                progress=NullProgress())
    except BulksendError as exc:
        fail(exc)
    total = sum(counts.values())
    if not total:
        click.echo(f"{results}: no unknown rows: nothing to settle")
        sys.exit(0)
    click.echo(f"{results}: {total} unknown rows looked up: {counts['sent']} found (sent), "
               f"{counts['failed']} not created (failed: the next send sends them), "
               f"{counts['unknown']} still unknown")
    sys.exit(0 if not counts["unknown"] else 1)


def _status_names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    """``--fail-on due,error``: request statuses (list spelling; ``canceled`` is read as ``cancelled``)."""
    from bulksend.collect.statuses import list_status

    if not value:
        return []
    try:
        return [list_status(name, param="--fail-on") for name in value.split(",") if name.strip()]
    except BulksendError as exc:
        fail(exc)


@cli.command(context_settings=CONTEXT)
@click.argument("results", metavar="RESULTS.csv")
@api_options
@click.option("--output", "-o", metavar="FILE",
              help="Write the results with the statuses to FILE instead of RESULTS.csv itself.")
@click.option("--fail-on", metavar="STATUS,...", callback=_status_names,
              help="Exit 1 when any request has one of these statuses (e.g. due,error), for a scheduler.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--rate", default="10/s", show_default=True, help="Ceiling on calls per second.")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for one answer.")
def status(results: str, api_url: str, api_key_file: str | None, output: str | None,
           fail_on: list[str], as_json: bool, rate: str, timeout: float) -> None:
    """Read the current status of every sent request of RESULTS.csv.

    Lists each campaign's requests 100 a call (never one call per row) and
    writes request_status, due_date and status_read_at into the results (after
    the contract's columns: send still resumes from it). Prints the counts by
    status, the overdue rows first, and the rows Collect could not send
    (status error) with the command that sends their message again.

    \b
    Examples:
      bulksend status contacts-results.csv
      bulksend status contacts-results.csv --fail-on due,error    # exit 1 if any
      bulksend status contacts-results.csv --json -o status-today.csv
    """
    from bulksend.common.display import make_progress
    from bulksend.tasks.status import bar_for, summary_json, summary_lines, track_file

    try:
        progress = make_progress(log_format="text", no_progress=True, verbose=False)
        try:
            run = track_file(Path(results), api_url=check_api_url(api_url),
                             api_key=read_api_key(api_key_file), timeout=timeout, rate=parse_rate(rate),
                             progress=progress, output=Path(output) if output else None)
        finally:
            progress.close()
    except BulksendError as exc:
        fail(exc)
    failing = sum(run.counts[name] for name in fail_on)
    if as_json:
        click.echo(json.dumps(summary_json(run) | {"failing": failing}, indent=2))
    else:
        click.echo("\n".join(summary_lines(run, bar=bar_for(sys.stdout))))
        if failing:
            click.echo(f"--fail-on {','.join(fail_on)}: {failing} requests: exit 1")
    sys.exit(int(ExitStatus.ROWS_NOT_SENT) if failing else 0)


@cli.command(context_settings=CONTEXT)
@click.argument("results", metavar="RESULTS.csv")
@click.option("--where", metavar="status=NAME,...",
              help="Rows whose request_status (as `bulksend status` last read it) is one of these.")
@click.option("--rows", "row_numbers", metavar="12,40-55",
              help="Rows by number, as the row column shows them.")
@click.option("--all", "every", is_flag=True, help="Every sent row.")
@click.option("--status", "new_status", metavar="NAME",
              help="New status: pending, completed, waiting, canceled (or cancelled), archived, custom:NAME.")
@click.option("--due-date", metavar="DATE", help="New due date, ISO 8601 (2026-12-31), today or later.")
@click.option("--assign", metavar="USER", help="Assign to a team member (user id or email); unset clears it.")
@click.option("--send-completion-message/--no-send-completion-message", default=None,
              help="Send the completion message when the status becomes completed.")
@click.option("--send-rejection-message/--no-send-rejection-message", default=None,
              help="Send the rejection message when it returns to pending with an element rejected.")
@click.option("--send-reopen-message/--no-send-reopen-message", default=None,
              help="Send the reopen message when the status returns to pending.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (scripts).")
@click.option("--again", is_flag=True,
              help="Make the change even on rows an earlier run already made it on.")
@api_options
@click.option("--rate", default="10/s", show_default=True, help="Ceiling on calls per second.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Calls in flight at once.")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for one answer.")
def update(results: str, where: str | None, row_numbers: str | None, every: bool, new_status: str | None,
           due_date: str | None, assign: str | None, send_completion_message: bool | None,
           send_rejection_message: bool | None, send_reopen_message: bool | None, yes: bool,
           again: bool, api_url: str, api_key_file: str | None, rate: str, concurrency: int,
           timeout: float) -> None:
    """Change many sent requests of RESULTS.csv at once (PATCH /request).

    Shows what will change and asks first (--yes for scripts). Each change is
    journaled (RESULTS.csv.updates): rerunning the same command after a kill
    finishes the rest and never makes a change twice. Outcomes go into the
    results' last_update and updated_at columns.

    \b
    Examples:
      bulksend update contacts-results.csv --where status=pending --due-date 2026-12-31
      bulksend update contacts-results.csv --rows 12,40-55 --status canceled
      bulksend update contacts-results.csv --where status=error --status pending --send-reopen-message
      bulksend update contacts-results.csv --all --assign owner@example.com --yes
    """
    from bulksend.tasks.update import Selection, build_change, parse_rows, parse_where, run_lines

    flags = {"sendCompletionMessage": send_completion_message,
             "sendRejectionMessage": send_rejection_message, "sendReopenMessage": send_reopen_message}
    try:
        change = build_change(status=new_status, due_date=due_date, assign=assign, flags=flags)
        if not (where or row_numbers or every):
            raise UsageError("which rows? nothing chosen",
                             hint="pass --where status=pending, --rows 12,40-55 or --all")
        selection = Selection(statuses=parse_where(where) if where else None,
                              rows=parse_rows(row_numbers) if row_numbers else None, every=every)
        run = _update(Path(results), change, selection, again=again, yes=yes, api_url=check_api_url(api_url),
                      api_key=read_api_key(api_key_file), rate=parse_rate(rate), concurrency=concurrency,
                      timeout=timeout)
    except BulksendError as exc:
        fail(exc)
    click.echo("\n".join(run_lines(run)))
    if run.aborted is not None:
        fail(run.aborted)
    if run.interrupted:
        sys.exit(int(ExitStatus.INTERRUPTED))
    sys.exit(0 if run.counts["done"] == len(run.plan.todo) else int(ExitStatus.ROWS_NOT_SENT))


def _update(results: Path, change: Any, selection: Any, *, again: bool, yes: bool, api_url: str,
            api_key: str, rate: float | None, concurrency: int, timeout: float) -> Any:
    """The plan, the question, the changes: under the results file's lock throughout."""
    from bulksend.common.display import make_progress
    from bulksend.tasks.update import apply_plan, plan_lines, plan_update, update_session

    with update_session(results) as journal:
        plan = plan_update(results, journal, change, selection, again=again)
        click.echo("\n".join(plan_lines(plan)))
        if not plan.todo:
            click.echo("nothing to change")
            sys.exit(0)
        _confirm(yes)
        progress = make_progress(log_format="text", no_progress=True, verbose=False)
        try:
            return apply_plan(plan, journal, api_url=api_url, api_key=api_key, timeout=timeout,
                              rate=rate, concurrency=concurrency, progress=progress)
        finally:
            progress.close()


def _confirm(yes: bool) -> None:
    """Ask before changing anything; no answer (end of input) is no."""
    if yes:
        return
    try:
        confirmed = click.confirm("Make these changes?", default=False)
    except click.Abort:
        raise UsageError("not confirmed (no answer): nothing changed",
                         hint="pass --yes to change without asking (scripts)") from None
    if not confirmed:
        click.echo("nothing changed")
        sys.exit(int(ExitStatus.ROWS_NOT_SENT))


def _parse_script(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """``--script ok,created-504,ambiguous``: the fates of the next POSTs, in order.

    The names are checked with the rest of the config (bulksend.sandbox.config_problems),
    so that this module need not import the sandbox (and aiohttp) for --help.
    """
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


_SANDBOX_EPILOG = """\b
Fates of a POST /request(s) (for --script; the rates draw them at random):
  ok            processed and answered 200 {request, errors: []}
  500           answered 500, nothing created
  503           answered 503 (down for maintenance), nothing created
  dropped       connection closed before processing: nothing created
  ambiguous     created, then the connection closed unanswered
  slow          created, answered after --slow-delay
  created-500   created, then answered 500 (JSON body)
  created-502   created, then answered 502 by a "gateway" (HTML body)
  created-504   created, then answered 504 by a "gateway" (HTML body)
  refused-200   200 {"request": null, "errors": [...]}, nothing created
  empty-200     created, answered 200 {}
  html-200      created, answered 200 with an HTML page
  warned-200    created, answered 200 {request, errors: [one message]}
  redirect-302  302 to --redirect-to, nothing created
  redirect-307  307 to --redirect-to, nothing created
  quota-429     429 with Retry-After: --quota-retry-after, nothing created
  401           401 (as if the key were revoked), nothing created
POST /requests meets the same fates ({"requests": [...]} in place of "request").

\b
--strict turns on, at once:
  --embedded-order oldest --case-sensitive-emails --created-5xx-rate 0.03
  --odd-200-rate 0.03 --fail-rate 0.03 --drop-rate 0.03 --ambiguous-rate 0.03
Options given beside --strict override it. Quotas, look-up faults, redirects and
slow answers stop or stall a run, so --strict leaves them to their own options.

\b
--preload FILE (JSON) adds contacts and requests that exist before any POST
(a lost journal, requests sent from the Collect app). They are visible to
every look-up and listing but are not among the requests created through
the API (/_sandbox/requests); a reset (POST /_sandbox/reset) reloads them:
  {"contacts": [{"email": "ann@example.com", "firstName": "Ann",
                 "_id"?, "lastName"?, "company"?, "data"?: {...}}],
   "requests": [{"campaignId": "xvr69EYLKXvTkfYuk",
                 "email": "ann@example.com"  (or "contactId": "..."),
                 "status"?: "pending|completed|due|waiting|archived|cancelled|error|<custom>",
                 "_id"?, "createdAt"?, "dueDate"?, "data"?: {...}}]}
Fields marked ? are optional; status defaults to pending, createdAt to now;
timestamps as "2022-07-04 07:20:06 UTC" or ISO 8601. A request's email names
a contact exactly as written (a new contact is made if there is none).
Campaigns: xvr69EYLKXvTkfYuk (Vehicle documents), zZCYitJRjp8n7XG5Q (Employee onboarding).

\b
PATCH /request (collect-api.md §7) takes status pending, completed, waiting,
canceled (this spelling; lists say cancelled), archived or the custom status
on-hold; GET /_sandbox/patches lists every PATCH it applied. --progress-rate R
moves open requests on by themselves, R steps per request per second.

\b
Change any fault while it runs:
  curl -X POST http://127.0.0.1:8080/_sandbox/faults -H 'Content-Type: application/json' \\
       -d '{"script": ["created-504", "ok"], "lookup_fault": null}'
"""


def _share_of_posts(flag: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A sandbox option: the share of POSTs (0 to 1) that meet a fault."""
    return click.option(flag, type=click.FloatRange(0, 1), default=0.0, show_default=True, help=help)


@cli.command(context_settings=CONTEXT, epilog=_SANDBOX_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port).")
@click.option("--api-key", "api_key", default="sandbox-key", show_default=True,
              help="The one key the sandbox accepts.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for ids and faults.")
@click.option("--strict", is_flag=True,
              help="Every documented-worst behaviour at rates a run still finishes under (see below).")
@click.option("--rate-limit", type=click.FloatRange(0, min_open=True), metavar="PER_SECOND",
              help="Token-bucket limit; beyond it: 429 with Retry-After.")
@click.option("--burst", type=click.IntRange(1), default=1, show_default=True,
              help="Token-bucket size.")
@click.option("--retry-after-format", type=click.Choice(["seconds", "http-date", "none"]),
              default="seconds", show_default=True)
@_share_of_posts("--fail-rate",
                  "Share of POSTs answered 500/503 (nothing created).")
@_share_of_posts("--unavailable-rate",
                  "Share of POSTs answered 503 alone (nothing created; --fail-rate mixes in 500s).")
@_share_of_posts("--drop-rate",
                  "Share of POSTs whose connection is dropped before processing.")
@_share_of_posts("--ambiguous-rate",
                  "Share of POSTs created, then the connection dropped.")
@_share_of_posts("--slow-rate",
                  "Share of POSTs created and answered only after --slow-delay.")
@click.option("--slow-delay", type=click.FloatRange(0), default=5.0, show_default=True)
@click.option("--latency", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds added to every answer.")
@_share_of_posts("--created-5xx-rate",
                  "Share of POSTs created, then answered 500, 502 or 504 (a 5xx is not 'not created').")
@_share_of_posts("--odd-200-rate",
                  "Share of POSTs answered refused-200, empty-200, html-200 or warned-200 (see below).")
@_share_of_posts("--redirect-rate",
                  "Share of POSTs answered 302/307 to --redirect-to, nothing created.")
@click.option("--redirect-to", metavar="BASE_URL", default="",
              help="Where redirects point, e.g. http://127.0.0.1:8081/v1 (Location: BASE_URL/request).")
@click.option("--script", metavar="FATE,...", callback=_parse_script,
              help="Fates of the first POSTs, in order, before the random ones (see below).")
@click.option("--embedded-order", type=click.Choice(["newest", "oldest"]), default="newest",
              show_default=True,
              help="Order of the (at most 50) requests in GET /contacts/{id}; oldest: a contact's "
                   "newest requests fall off beyond 50.")
@click.option("--case-sensitive-emails/--case-insensitive-emails", default=True, show_default=True,
              help="Match contacts by exact email (as GET /contacts?email= is documented), or ignoring case.")
@click.option("--quota-after", type=click.IntRange(0), metavar="N",
              help="After N requests created, every POST is answered 429 and creates nothing.")
@click.option("--quota-retry-after", type=click.FloatRange(0), default=3600.0, show_default=True,
              metavar="SECONDS", help="The Retry-After of the quota's 429.")
@click.option("--lookup-fault", type=click.Choice(["html", "object", "404", "500"]),
              help="Every GET /requests, /requests/{id}, /contacts, /contacts/{id} answers an HTML "
                   "page (200), a JSON object wrapping the data, a 404 or a 500.")
@click.option("--clock-skew", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Added to the server clock for createdAt (-600: 10 minutes behind).")
@click.option("--preload", metavar="FILE",
              help="JSON file of contacts and requests that exist before any POST (format below).")
@click.option("--progress-rate", type=click.FloatRange(0), default=0.0, show_default=True,
              metavar="PER_SECOND",
              help="Open requests move on by themselves (pending -> waiting, due, completed, error, "
                   "on-hold; waiting -> completed), this many steps per request per second.")
@click.pass_context
def sandbox(ctx: click.Context, /, host: str, port: int, strict: bool, **options: Any) -> None:
    """Run a local stand-in for the Collect API (for trials, tests and benchmarks).

    By default it answers as kindly as the docs allow; the options below (or
    --strict) make it behave every other way collect-api.md allows.

    \b
    Example:
      bulksend sandbox --port 8080 --rate-limit 20 --fail-rate 0.05
      bulksend sandbox --port 8080 --strict --preload existing.json
      # in another shell:
      COLLECT_API_KEY=sandbox-key bulksend send samples/contacts.csv \\
          -m mapping.example.yaml --api-url http://127.0.0.1:8080/v1
    """
    from bulksend.sandbox.config import SandboxConfig, config_problems
    from bulksend.sandbox.server import serve

    given = {name: value for name, value in options.items()
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    config = SandboxConfig.strict(**given) if strict else SandboxConfig(**given)
    problems = config_problems(config)
    if problems:
        fail(UsageError("sandbox: " + "; ".join(problems),
                        hint="see bulksend sandbox --help for each option and the --preload format"))

    def ready(url: str) -> None:
        profile = " (strict)" if strict else ""
        click.echo(f"sandbox{profile} listening on {url}  (key: set COLLECT_API_KEY to the --api-key value)")
        click.echo(f"inspect: {url.rsplit('/v1', 1)[0]}/_sandbox/requests   stop: Ctrl-C")

    try:
        serve(config, host, port, ready)
    except OSError as exc:
        fail(UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                        hint="pick another --port, or --port 0 for any free one"))


@cli.command(context_settings=CONTEXT)
@click.option("--results", "-o", default="demo-results.csv", show_default=True,
              help="Where the demo writes its results.")
def demo(results: str) -> None:
    """Run the whole pipeline on the bundled samples against an in-process sandbox.

    Needs no API key and no network: the sandbox runs on 127.0.0.1 with a mild
    rate limit and a few injected faults, and the results go to demo-results.csv.

    \b
    Example:
      bulksend demo && bulksend report demo-results.csv
    """
    from bulksend.tasks.demo import run_demo

    try:
        status = run_demo(Path(results))
    except BulksendError as exc:
        fail(exc)
    sys.exit(int(status))


def main() -> None:
    """The program (``bulksend``, ``python -m bulksend``): the command, then a fast exit."""
    try:
        cli.main(prog_name="bulksend", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("bulksend: interrupted", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            exit_at_once(done.code or 0)
        raise
