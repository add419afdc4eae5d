"""``bulksend demo``: the sandbox and the samples, end to end, with no key and
no network. It runs the real ``send`` path against an in-process sandbox that
has a mild rate limit and a few injected faults, so the person watching sees
retries, a pause and the broken sample rows handled."""

from __future__ import annotations

import csv
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from bulksend.common.errors import ExitStatus, InputError
from bulksend.common.outcome import DUPLICATE, FAILED, INVALID, SENT, UNKNOWN

DEMO_KEY = "demo-key"
# samples/contacts.csv writes its due dates (the Due column, dd/mm/yyyy) as if
# today were SAMPLES_TODAY: 1 to 28 days ahead. The demo moves them by the days
# since, so they are as far ahead on whatever day it runs (issue 17: a past due
# date is invalid, and the demo must not age).
SAMPLES_TODAY = date(2026, 11, 30)
DUE_COLUMN = "Due"
DUE_FORMAT = "%d/%m/%Y"


def find_samples() -> tuple[Path, Path]:
    """samples/ and mapping.example.yaml: beside the current folder or the package."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        contacts, mapping = root / "samples" / "contacts.csv", root / "mapping.example.yaml"
        if contacts.is_file() and mapping.is_file():
            return contacts, mapping
    raise InputError(
        "cannot find samples/contacts.csv and mapping.example.yaml",
        hint="run the demo from the bulksend repository folder (pip install -e .)",
    )


def write_demo_contacts(sample: Path, target: Path, today: date) -> None:
    """Copy the sample contacts (UTF-8 CSV) to `target` with each valid due date
    moved by ``today - SAMPLES_TODAY``; every other cell, a broken date (31/02)
    and a row with a cell too many included, is copied as it is.

    Raises InputError when the sample has no Due column."""
    shift = today - SAMPLES_TODAY
    with open(sample, encoding="utf-8", newline="") as src:
        rows = list(csv.reader(src))
    if not rows or DUE_COLUMN not in rows[0]:
        raise InputError(f"{sample}: no {DUE_COLUMN} column", hint="restore samples/contacts.csv")
    column = rows[0].index(DUE_COLUMN)
    for row in rows[1:]:
        if column < len(row):
            row[column] = _moved(row[column], shift)
    with open(target, "w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(rows)


def _moved(cell: str, shift: timedelta) -> str:
    try:
        day = datetime.strptime(cell, DUE_FORMAT).date()
    except ValueError:
        return cell  # broken on purpose: the demo shows it refused
    return (day + shift).strftime(DUE_FORMAT)


def run_demo(results: Path) -> ExitStatus:
    from bulksend.common.display import make_progress
    from bulksend.sandbox.config import SandboxConfig
    from bulksend.sandbox.server import running_sandbox
    from bulksend.sending.run import send_file
    from bulksend.settings import ApiAccess, InputSettings, Mode, Pace, RunConfig, check_output_path
    from bulksend.store.runlock import lock_path, remove_journal
    from bulksend.tasks.update import updates_path

    sample, mapping = find_samples()
    contacts = results.parent / "demo-contacts.csv"
    # Plain files only (issue 25): `demo -o /dev/null` must not unlink the device.
    check_output_path(results, "--results")
    check_output_path(contacts, "the demo's contacts file")
    # A demo always starts afresh: its results are not a record of real sends.
    results.unlink(missing_ok=True)
    lock_path(results).unlink(missing_ok=True)
    remove_journal(results)
    updates_path(results).unlink(missing_ok=True)
    write_demo_contacts(sample, contacts, date.today())

    # progress_rate: the requests move on by themselves, as clients upload, so
    # that `status` at the end has something to show (issue 14).
    faults = SandboxConfig(api_key=DEMO_KEY, seed=7, rate_limit=15.0, burst=3,
                           fail_rate=0.1, ambiguous_rate=0.05, latency=0.02, progress_rate=0.5)
    echo = click.echo
    with running_sandbox(faults) as sandbox:
        echo(f"sandbox: {sandbox.url}  (15 requests/s, 10% 5xx, 5% answers lost after creation)")
        echo(f"sending {contacts} (samples/{sample.name}, due dates moved to the coming weeks) with "
             f"{mapping.name} -> {results}\n")
        # Marked a rehearsal's (Mode.sandbox): its requests live in this sandbox
        # only, so status, update and a real send refuse the file (issue 27).
        config = RunConfig(InputSettings(str(contacts), str(mapping)), results=results,
                           api=ApiAccess(sandbox.url, DEMO_KEY, timeout=5.0),
                           pace=Pace(rate=50.0, concurrency=4), mode=Mode(sandbox=True))
        progress = make_progress(log_format="text", no_progress=False, verbose=True, stream=sys.stderr)
        try:
            summary = send_file(config, progress)
        finally:
            progress.close()
        created = sandbox.snapshot().created
        _remember_demo(results)
        _show_summary(summary, results, len(created))
        _show_status(results, sandbox.url)
    # Lines that can be followed (issues 15, 27): the demo's own sandbox has
    # stopped by now, and its requests with it.
    echo(f"\n{results} is the demo's record: its requests lived in the demo's sandbox, gone now, so "
         f"status and update refuse it; `bulksend report {results}` reads it")
    echo("\nnext, your own file, no key needed:\n  bulksend init CONTACTS.csv\n"
         "  bulksend send CONTACTS.csv -m mapping.yaml --sandbox")
    # The demo's own job is to show the pipeline: the broken rows are on purpose.
    return ExitStatus.OK if summary.counts[SENT] else ExitStatus.ROWS_NOT_SENT


def _show_summary(summary: Any, results: Path, created: int) -> None:
    echo = click.echo
    c = summary.counts
    echo(f"\ndemo finished in {summary.elapsed:.1f}s: {summary.total} rows, {summary.posts} POSTs")
    echo(f"  sent       {c[SENT]:>3}   (the sandbox holds {created} requests: one per sent row)")
    for status, why in ((INVALID, "never sent: fix the cell and rerun"),
                        (DUPLICATE, "never sent: same contact as an earlier row"),
                        (FAILED, "the API refused them"), (UNKNOWN, "to be looked up on rerun")):
        if c[status]:
            echo(f"  {status:<10} {c[status]:>3}   ({why})")
    echo("\nwhat happened to the broken rows:")
    for status in (INVALID, DUPLICATE, FAILED, UNKNOWN):
        for outcome in summary.examples.get(status, []):
            echo(f"  row {outcome.row:>2} {status:<9} {outcome.error}")
    echo(f"\nresults: {results}   (open it in a spreadsheet, or: bulksend report {results})")


def _show_status(results: Path, api_url: str) -> None:
    """After the send: where each request stands now, as `bulksend status` reads it."""
    from bulksend.common.progress import NullProgress
    from bulksend.tasks.status import bar_for, summary_lines, track_file

    echo = click.echo
    echo("\nclients are uploading (the sandbox moves requests on by itself); "
         "where each request stands now:\n")
    run = track_file(results, api_url=api_url, api_key=DEMO_KEY, timeout=5.0, rate=10.0,
                     progress=NullProgress(), rehearsal=True)
    echo("\n".join(summary_lines(run, bar=bar_for(sys.stdout), commands=False)))


def _remember_demo(results: Path) -> None:
    """Its journal remembers the demo made it: ``report`` says `bulksend demo`
    runs it again (its files and sandbox are the demo's own)."""
    import json

    from bulksend.store.journal import SEND_INPUT, Journal
    from bulksend.store.runlock import journal_path

    journal = Journal(journal_path(results))
    try:
        journal.set_meta(SEND_INPUT, json.dumps({"demo": True}))
        journal.commit()
    finally:
        journal.close()
