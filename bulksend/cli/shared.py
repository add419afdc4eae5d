"""What the commands share: the options several take, the value of --sheet, and
how a BulksendError becomes its message(s) on standard error and the exit
status (fail). Imports nothing heavy: ``bulksend --help`` reads these."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from bulksend.common.errors import BulksendError
from bulksend.settings import DEFAULT_API_URL

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(error: BulksendError) -> NoReturn:
    """Report ``error`` (each of several, settings.SeveralErrors) and exit with its status."""
    from bulksend.settings import SeveralErrors

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


def refuse_key_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The hidden --api-key: refused whenever given (click.UsageError, exit 2)."""
    if value is not None:
        raise click.UsageError(
            "--api-key is refused: a key on the command line is visible to every user "
            "of this machine (ps, shell history). Set COLLECT_API_KEY or use --api-key-file FILE."
        )


def input_options(f: Any) -> Any:
    """The mapping and how CONTACTS is read (send and validate)."""
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
                     help="Spreadsheet sheet, by name or 1-based number (default: the tab active when the "
                          "file was saved; else the only visible sheet with data).")(f)
    f = click.option("--mapping", "-m", required=True, metavar="MAPPING.yaml",
                     type=click.Path(dir_okay=True), help="YAML mapping of columns to request fields.")(f)
    return f


def api_options(f: Any) -> Any:
    """Where the API is and how the key is given (send, status, update and reconcile)."""
    f = click.option("--api-key", hidden=True, expose_value=False, callback=refuse_key_option)(f)
    f = click.option("--api-key-file", metavar="FILE",
                     help="Read the API key from FILE instead of COLLECT_API_KEY.")(f)
    # No default here: a run on an existing results file uses the API its send
    # used (tasks/remembered.py, issue 27), else DEFAULT_API_URL (settings.py).
    f = click.option("--api-url", envvar="COLLECT_API_URL", metavar="URL",
                     help="API base URL (env COLLECT_API_URL). Default: where the results file's "
                     f"requests were sent, if it has any; else {DEFAULT_API_URL}.")(f)
    return f


def sheet_value(sheet: str | None) -> str | int | None:
    """--sheet NAME|N: a 1-based sheet number when all digits, else the sheet's name."""
    if sheet is None:
        return None
    return int(sheet) if sheet.isdigit() else sheet


class Command(click.Command):
    """A bulksend command whose row selections may be given once: click keeps
    the last of ``--where City=Paris --where Country=BE`` silently, which sends
    (or changes) rows the person meant to leave out; here it is a usage error
    (exit 2) naming the option. Other options keep click's rule, the last one
    given wins (scripts add an override at the end)."""

    ONCE = frozenset({"where", "row_numbers"})  # send --where; update --where, --rows

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        once: dict[str, str] = {}
        for param in self.params:
            if isinstance(param, click.Option) and param.name in self.ONCE:
                once.update({opt: str(param.name) for opt in param.opts})
        seen: dict[str, str] = {}
        for token in args:
            if token == "--":
                break
            opt = token.split("=", 1)[0] if token.startswith("--") else token
            name = once.get(opt)
            if name is None:
                continue
            if name in seen:
                raise click.UsageError(f"{seen[name]} is given twice: give it once", ctx=ctx)
            seen[name] = opt
        return super().parse_args(ctx, args)
