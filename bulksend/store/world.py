"""Which world a results file belongs to: real sends, or a sandbox rehearsal (issue 15).

A rehearsal's results must never be taken for real sends: its file has
"sandbox" in its name and its journal is marked (``world`` = ``sandbox``).
A run of the other kind is refused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from bulksend.common.errors import UsageError
from bulksend.store.journal import Journal
from bulksend.store.runlock import journal_path, not_plain_error, output_problem

MARK: Final = "sandbox"  # in every rehearsal results file's name


def is_rehearsal_name(path: Path) -> bool:
    """Whether a results file's name marks it as a rehearsal's ("sandbox" in it, any case)."""
    return MARK in path.name.lower()


def world_mismatch(results: Path, *, rehearsal: bool) -> UsageError:
    """The error for a results file used by the other kind of run (run._check_world)."""
    if rehearsal:
        return UsageError(
            f"{results}: holds real sends; a rehearsal (--sandbox) must not add to them",
            hint="drop --results: --sandbox writes CONTACTS-sandbox-results.csv",
        )
    return UsageError(
        f"{results}: holds a sandbox rehearsal, not real sends; a real send would take its "
        "rows as sent and skip them",
        hint="send for real with another --results (the default is CONTACTS-results.csv)",
    )


def check_world(journal: Journal, results: Path, sandbox: bool, fresh: bool) -> None:
    """A results file is either a rehearsal's (--sandbox) or real sends', for
    good: its journal says which ("world" meta; none: real, as before issue 15).
    UsageError when this run is the other kind (``sandbox``: this run is a
    rehearsal)."""
    recorded = journal.get_meta("world") or ("" if fresh else "api")
    if fresh and results.exists() and is_rehearsal_name(results):
        recorded = "sandbox"  # a rehearsal's CSV without its journal: still a rehearsal's
    world = "sandbox" if sandbox else "api"
    if recorded and recorded != world:
        raise world_mismatch(results, rehearsal=sandbox)
    if recorded != world:
        journal.set_meta("world", world)


def refuse_rehearsal(results: Path, command: str) -> None:
    """``status``, ``update`` and ``reconcile`` work on real sends only (issue 23,
    case 5): a rehearsal's request ids belong to its own sandbox, and the same
    ids may name other contacts' requests elsewhere. UsageError (exit 2) when
    ``results`` is a rehearsal's: its journal says so (read only; no run is
    counted), or, without a journal, its name does. ResultsError when the
    journal is not a plain file (a FIFO would never be opened: issue 25)."""
    path = journal_path(results)
    kind = output_problem(path)
    if kind is not None:
        raise not_plain_error(path, "results file's journal", kind)
    world = ""
    if path.exists():
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT value FROM meta WHERE name='world'").fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            row = None
        world = str(row[0]) if row else "api"
    if world == "sandbox" or (not world and is_rehearsal_name(results)):
        raise UsageError(
            f"{results}: holds a sandbox rehearsal, not real sends; `bulksend {command}` reads and "
            "changes real requests only: nothing was read or changed",
            hint="pass the results file of a real send (the default is CONTACTS-results.csv)",
        )
