"""The ``bulksend`` program: the command group, its commands, and ``main``.

The commands live beside this module, by when a person uses them: send.py
(init, validate, send), after.py (report, reconcile, status, update) and
trial.py (demo, sandbox); shared.py holds their common options and the error
messages. Each command parses its options, calls its function in bulksend.api,
and turns the answer into output and an exit status. Heavy imports (the
engine, aiohttp, pandas) happen inside the commands, so ``bulksend --help``
starts fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

import click

from bulksend.cli.after import reconcile, report, status, update
from bulksend.cli.send import init, send, validate
from bulksend.cli.shared import CONTEXT
from bulksend.cli.trial import demo, sandbox
from bulksend.common.errors import ExitStatus
from bulksend.common.version import __version__


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


for _command in (init, validate, send, report, reconcile, status, update, demo, sandbox):
    cli.add_command(_command)


def main() -> None:
    """The program (``bulksend``, ``python -m bulksend``): the command, then a fast exit.

    Standard output and error first learn to write what their encoding cannot
    (a Windows console or a redirection in cp1252): an ASCII form, not a
    UnicodeEncodeError (common/display.py ``fit_console``; imported only then:
    ``bulksend --help`` stays fast)."""
    streams = (sys.stdout, sys.stderr)
    if any((getattr(s, "encoding", None) or "").lower() not in ("utf-8", "utf8") for s in streams):
        from bulksend.common.display import fit_console

        for stream in streams:
            fit_console(stream)
    try:
        cli.main(prog_name="bulksend", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("bulksend: interrupted", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            exit_at_once(done.code or 0)
        raise


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
    their data after the program ends). The same on Windows: ``os._exit``
    there too ends the process without flushing anything, so the flush comes
    first, and every write of click and tqdm is flushed as it is made."""
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
