"""After a send: ``report`` (what the results say), ``reconcile`` (unknown rows
settled), ``status`` (where each request stands now) and ``update`` (many
requests changed at once). Each calls its function in bulksend.api and turns
the answer into output and an exit status."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from bulksend.cli.shared import CONTEXT, Command, api_options, fail
from bulksend.common.errors import BulksendError, ExitStatus, UsageError


def wait_options(f: Any) -> Any:
    """How long a command waits on a rate-limited API (status, update, reconcile), as send does."""
    f = click.option("--patience", type=click.FloatRange(0, 7 * 86400), default=120.0, show_default=True,
                     metavar="SECONDS",
                     help="How long to go on while the API accepts nothing and answers 429 (the pauses "
                     "it asks for, up to --max-pause, not counted); then stop with exit 3.")(f)
    f = click.option("--max-pause", type=click.FloatRange(0.1, 7 * 86400), default=60.0, show_default=True,
                     metavar="SECONDS",
                     help="Longest pause a 429's Retry-After may impose; a longer one (a quota) stops "
                     "with exit 3 and the time to rerun.")(f)
    return f


@click.command(cls=Command, context_settings=CONTEXT)
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
    from bulksend import api

    try:
        click.echo(api.report(results, examples=examples))
    except BulksendError as exc:
        fail(exc)


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("results", metavar="RESULTS.csv")
@api_options
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for one answer.")
@wait_options
def reconcile(results: str, api_url: str | None, api_key_file: str | None, timeout: float, max_pause: float,
              patience: float) -> None:
    """Settle the unknown rows of RESULTS.csv by looking them up; sends nothing.

    An unknown row's POST may have reached the server but its answer was lost.
    Found: it becomes sent, with the server's request id. Not found: it becomes
    failed, and the next send sends it. (send does this by itself on a rerun.)

    \b
    Example:
      bulksend reconcile contacts-results.csv
    """
    from bulksend import api

    try:
        counts = api.reconcile(results, api_url=api_url, api_key_file=api_key_file, timeout=timeout,
                               max_pause=max_pause, patience=patience, progress=_notes())
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


def _notes() -> Any:
    """A Progress that shows only the warnings (reconcile's other events stay quiet)."""
    from bulksend.common.progress import NullProgress

    class Notes(NullProgress):
        def event(self, kind: str, message: str, **fields: Any) -> None:
            if kind == "warning":
                click.echo(f"bulksend: warning: {message}", err=True)

    return Notes()


def _status_names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    """``--fail-on due,error``: request statuses (list spelling; ``canceled`` is read as ``cancelled``)."""
    from bulksend.collect.statuses import list_status

    if not value:
        return []
    try:
        return [list_status(name, param="--fail-on") for name in value.split(",") if name.strip()]
    except BulksendError as exc:
        fail(exc)


@click.command(cls=Command, context_settings=CONTEXT)
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
@wait_options
def status(results: str, api_url: str | None, api_key_file: str | None, output: str | None,
           fail_on: list[str], as_json: bool, rate: str, timeout: float, max_pause: float,
           patience: float) -> None:
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
    from bulksend import api
    from bulksend.common.display import make_progress
    from bulksend.tasks.status import bar_for, summary_json, summary_lines

    try:
        run = api.status(results, api_url=api_url, api_key_file=api_key_file, output=output or None,
                         rate=rate, timeout=timeout, max_pause=max_pause, patience=patience,
                         progress=make_progress(log_format="text", no_progress=True, verbose=False))
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


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("results", metavar="RESULTS.csv")
@click.option("--where", metavar="status=NAME,...",
              help="Rows whose request_status (as `bulksend status` last read it) is one of these.")
@click.option("--rows", "row_numbers", metavar="12,40-55",
              help="Rows by number, as the row column shows them.")
@click.option("--all", "every", is_flag=True, help="Every sent row.")
@click.option("--status", "new_status", metavar="NAME",
              help="New status: pending, completed, waiting, canceled (or cancelled), archived, custom:NAME.")
@click.option("--due-date", metavar="DATE",
              help="New due date, read as the send's mapping reads dueDate (its format, else ISO 8601: "
              "2026-12-31); a day ends at 23:59 in that mapping's timezone, else the team's. Not past.")
@click.option("--assign", metavar="USER", help="Assign to a team member (user id or email); unset clears it.")
@click.option("--send-completion-message/--no-send-completion-message", default=None,
              help="Send the completion message when the status becomes completed.")
@click.option("--send-rejection-message/--no-send-rejection-message", default=None,
              help="Send the rejection message when it returns to pending with an element rejected.")
@click.option("--send-reopen-message/--no-send-reopen-message", default=None,
              help="Send the reopen message when the status returns to pending.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (scripts).")
@click.option("--again", is_flag=True,
              help="Make the change even on rows an earlier run made it on, or may have (its PATCH "
              "left, its answer was lost, and the request does not show it now).")
@api_options
@click.option("--rate", default="10/s", show_default=True, help="Ceiling on calls per second.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Calls in flight at once.")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for one answer.")
@wait_options
def update(results: str, where: str | None, row_numbers: str | None, every: bool, new_status: str | None,
           due_date: str | None, assign: str | None, send_completion_message: bool | None,
           send_rejection_message: bool | None, send_reopen_message: bool | None, yes: bool,
           again: bool, api_url: str | None, api_key_file: str | None, rate: str, concurrency: int,
           timeout: float, max_pause: float, patience: float) -> None:
    """Change many sent requests of RESULTS.csv at once (PATCH /request).

    Shows what will change and asks first (--yes for scripts). Each request is
    read before its PATCH: one of another contact, or one that shows the change
    already, is not changed. Each change is journaled (RESULTS.csv.updates):
    rerunning the same command after a kill finishes the rest and never makes a
    change twice; one that may have been applied is not sent again unless
    --again. Outcomes go into the results' last_update and updated_at columns.

    \b
    Examples:
      bulksend update contacts-results.csv --where status=pending --due-date 2026-12-31
      bulksend update contacts-results.csv --rows 12,40-55 --status canceled
      bulksend update contacts-results.csv --where status=error --status pending --send-reopen-message
      bulksend update contacts-results.csv --all --assign owner@example.com --yes
    """
    from bulksend import api
    from bulksend.common.display import make_progress
    from bulksend.tasks.update import plan_lines, run_lines

    confirmed: list[bool] = []

    def ask(plan: Any) -> bool:
        """Show the plan, then ask (--yes: do not); no question when there is nothing to change."""
        click.echo("\n".join(plan_lines(plan)))
        if not plan.todo:
            click.echo("nothing to change")
            return False
        confirmed.append(_confirm(yes))
        return confirmed[-1]

    try:
        run = api.update(
            results, where=where, rows=row_numbers, every=every, status=new_status, due_date=due_date,
            assign=assign, send_completion_message=send_completion_message,
            send_rejection_message=send_rejection_message, send_reopen_message=send_reopen_message,
            again=again, api_url=api_url, api_key_file=api_key_file, rate=rate, concurrency=concurrency,
            timeout=timeout, max_pause=max_pause, patience=patience, confirm=ask,
            progress=make_progress(log_format="text", no_progress=True, verbose=False))
    except BulksendError as exc:
        fail(exc)
    if not run.plan.todo:
        sys.exit(0)
    if not confirmed[-1]:
        sys.exit(int(ExitStatus.ROWS_NOT_SENT))
    click.echo("\n".join(run_lines(run)))
    if run.aborted is not None:
        fail(run.aborted)
    if run.interrupted:
        sys.exit(int(ExitStatus.INTERRUPTED))
    sys.exit(0 if run.counts["done"] == len(run.plan.todo) else int(ExitStatus.ROWS_NOT_SENT))


def _confirm(yes: bool) -> bool:
    """Ask before changing anything; True to go on. No answer (end of input)
    is no: UsageError. An answer no: "nothing changed", False."""
    if yes:
        return True
    try:
        confirmed = click.confirm("Make these changes?", default=False)
    except click.Abort:
        raise UsageError("not confirmed (no answer): nothing changed",
                         hint="pass --yes to change without asking (scripts)") from None
    if not confirmed:
        click.echo("nothing changed")
    return confirmed
