"""A run's session: its hold on the results file, from the lock to the checkpoints.

One run is the only writer of RESULTS.csv and the files beside it. Entered once
(``open_session``), the session, in this order:

1. peeks at the checkpoints the journal keeps, without the lock, and has the
   input read from the last one both files still match (store/checkpoints.py);
2. takes the lock (store/runlock.py) and opens the journal (store/journal.py);
3. checks which world the results file belongs to: real sends or a rehearsal
   (world.py);
4. makes sure the journal knows every row the CSV records, else seeds it from
   the CSV (store/results.py, issue 11), and keeps by key the columns status
   and update wrote there (store/tracked.py, issue 27); warns of a new record
   beside others;
5. keeps the mapping's digest (a rerun with another mapping is warned of) and
   what the commands after the send read: the API URL (a new one is warned
   of), how the mapping reads dueDate, the send's input (issue 27);
6. confirms the checkpoints it peeked at (another run may have ended in
   between: the input is then read again, whole) and forgets them until this
   run completes; tells its warnings.

Then the run sends: the session opens the results file for it
(``Session.open_results``; with the tracking columns when it had them) and,
at the end (``Session.end``), puts the file in row order and, after a complete
run over an unchanged input, lays new checkpoints. On leaving, after a run
that met every row, the journal's "look up every new row" mark goes. A dry
run's session holds a throwaway journal and nothing else: no lock, no world,
no seeding, no checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bulksend.common.errors import AbortError, BulksendError, UsageError
from bulksend.store import checkpoints
from bulksend.store.checkpoints import Chain, Tracker
from bulksend.store.journal import API_URL, LOOKUP_NEW, Journal
from bulksend.store.results import ResultsWriter, Seeded, journal_vouches, seed_journal_from_csv
from bulksend.store.runlock import RunLock, journal_path, remove_journal
from bulksend.store.tracked import has_tracking, tracking_cells
from bulksend.store.world import check_world

if TYPE_CHECKING:
    from bulksend.common.outcome import Summary
    from bulksend.common.progress import Progress
    from bulksend.mapping.compiled import Mapping
    from bulksend.reading.table import Mark, Table

# Reads the input from a mark (None: from its first row) before anything is
# sent, and returns how many rows it read (sending.run.check_pass).
Read = Callable[["Mark | None"], int]


class Session:
    """One run's journal, results file and checkpoints, held (see the module's
    docstring). ``resume``: the checkpoint chain the run starts from (None:
    the input's first row); ``tracker``: what the next checkpoints need."""

    def __init__(self, results: Path, table: Table, mapping: Mapping, summary: Summary,
                 progress: Progress, *, dry_run: bool) -> None:
        self.results = results
        self.table = table
        self.mapping = mapping
        self.summary = summary
        self.progress = progress
        self.dry_run = dry_run
        self.resume: Chain | None = None
        self.tracker = Tracker()
        self._journal: Journal | None = None
        self._writer: ResultsWriter | None = None
        self._input_stat = file_stat(table.path)  # before any read: a change after it voids new checkpoints

    @property
    def journal(self) -> Journal:
        assert self._journal is not None, "the session is not open"
        return self._journal

    @property
    def start(self) -> Mark | None:
        """Where the run starts reading the input (None: its first row)."""
        return self.resume.last.mark if self.resume is not None else None

    def open_results(self) -> ResultsWriter:
        """The results file, opened for this run's lines: after a resume, the
        lines of the rows it skips are kept as they are. A dry run's lines
        carry the payload. Raises ResultsError, or AbortError (a full disk)."""
        keep = self.resume.last.results_offset if self.resume is not None else 0
        # The tracking columns of status and update go on (issue 27): a kept
        # start of the file says whether it has them; a file written afresh
        # has them when the old one did, or when the journal kept some.
        track = not self.dry_run and (has_tracking(self.results) or (not keep and self.journal.has_tracked()))
        writer = ResultsWriter(self.results, self.journal, self.table.columns, with_payload=self.dry_run,
                               track=track)
        writer.open(keep=keep)
        self._writer = writer
        return writer

    def end(self, *, completed: bool, hard_stop: bool) -> None:
        """Close the results file after the sending. A hard stop (a second
        Ctrl-C, an abort) leaves it as it is: the journal holds every attempt
        and the next run resumes from it. Otherwise the file is put in row
        order and, when the run ``completed`` over an input that did not
        change, checkpoints are laid for the next run. A full disk while the
        file is finished is recorded in the summary as the run's abort."""
        assert self._writer is not None, "the results file is not open"
        writer = self._writer
        if hard_stop:
            with contextlib.suppress(AbortError):  # already said; the next run resumes from the journal
                self.journal.commit()
            writer.abandon()
            return
        skipped = self.resume.last.number if self.resume is not None else 0
        self.journal.checkpoint_behind()  # alongside the rewrite and the checkpoints' hashing
        try:
            ends = writer.finish(self.tracker.candidates(skipped, self.table.header_row))
        except AbortError as exc:  # a full disk: the journal has the outcomes; a rerun rewrites
            if self.summary.aborted is None:
                self.summary.aborted = exc
                self.progress.event("abort", str(exc))
            return
        unchanged = self._input_stat is not None and file_stat(self.table.path) == self._input_stat
        if completed and unchanged and not self.dry_run:
            self._lay_checkpoints(ends)

    def _confirm(self, stored: str | None, read: Read) -> None:
        """Under the lock: keep the checkpoints peeked at (``stored``) only if
        no run changed them since, then forget them until this run completes;
        count the rows they skip in the summary, and tell the warnings."""
        journal, summary = self.journal, self.summary
        if journal.get_meta(checkpoints.META) != stored:  # another run ended in between
            self.resume = None
            summary.total = read(None)
        # Written again only at the end of a complete run: after a kill,
        # the next run reads everything.
        journal.delete_meta(checkpoints.META)
        journal.commit()
        if self.resume is not None:
            summary.total += self.resume.last.rows
            summary.counts.update(self.resume.last.counts)
            summary.examples = self.resume.examples_upto(self.resume.last.number)
        for warning in summary.warnings:
            self.progress.event("warning", warning)

    def _lay_checkpoints(self, ends: dict[int, int]) -> None:
        """After a complete run: checkpoints for the next one (store/checkpoints.py).
        Best effort: without them the next run reads every row, as it always could."""
        journal, resume = self.journal, self.resume
        try:
            chain = checkpoints.extend(resume, table=self.table, results=self.results,
                                       mapping_digest=self.mapping.digest, run_id=journal.run_id,
                                       tracker=self.tracker, results_offsets=ends,
                                       examples=self.summary.examples)
        except (OSError, BulksendError, ValueError, csv.Error):
            return
        if chain is None:
            return
        if resume is not None:
            journal.forget_stale(resume.base_run, resume.last.number)
        journal.set_meta(checkpoints.META, chain.to_json())
        journal.commit()


@contextlib.contextmanager
def open_session(results: Path, table: Table, mapping: Mapping, summary: Summary, progress: Progress,
                 *, read: Read, dry_run: bool = False, sandbox: bool = False,
                 remember: dict[str, str] | None = None) -> Iterator[Session]:
    """The run's session on ``results`` (see the module's docstring): ``read``
    reads the input (from the checkpoint found; again from its start when it
    no longer holds) and the rows it reads make ``summary.total``; warnings go
    to ``summary`` and ``progress``. ``sandbox``: the run is a rehearsal.
    ``remember``: journal meta the commands after the send read (the API URL,
    how the mapping reads dueDate, the send's input: store/journal.py); a
    changed API URL is warned of.

    Raises LockedError (another run holds the results file), UsageError (a
    results file of the other world), ResultsError (a link, not a journal,
    not a results file), AbortError (a full disk), and what ``read`` raises."""
    session = Session(results, table, mapping, summary, progress, dry_run=dry_run)
    stored = None if dry_run else checkpoints.peek(journal_path(results))
    session.resume = checkpoints.usable(stored, table, mapping.digest, results)
    summary.total = read(session.start)
    if dry_run:
        # A throwaway journal gives the dry run the same duplicate check.
        with tempfile.TemporaryDirectory(prefix="bulksend-") as tmp:
            session._journal = Journal(Path(tmp) / "dry-run.journal")
            try:
                yield session
            finally:
                session.journal.close()
        return
    lock = RunLock(results)
    lock.acquire()
    try:
        with _journal_of(results, mapping, summary, sandbox=sandbox, remember=remember or {}) as journal:
            session._journal = journal
            session._confirm(stored, read)
            yield session
            if journal.lookup_new and summary.aborted is None and not summary.interrupted:
                journal.delete_meta(LOOKUP_NEW)  # this run met every row: each is in the journal now
                journal.commit()
    finally:
        lock.release()


@contextlib.contextmanager
def _journal_of(results: Path, mapping: Mapping, summary: Summary, *, sandbox: bool,
                remember: dict[str, str]) -> Iterator[Journal]:
    """The journal of ``results`` (made when missing), of this run's world and
    knowing every row the CSV records and the tracking cells it holds, with
    the mapping's digest and ``remember`` kept; closed on leaving. A journal
    made here is removed again when the world or the seeding refuses it."""
    path = journal_path(results)
    fresh = not path.exists()
    journal = Journal(path)
    try:
        try:
            check_world(journal, results, sandbox, fresh)
        except UsageError:
            _discard(journal, results, fresh)
            raise
        # The journal must know every row the CSV records (issue 11: a
        # journal copied without its -wal, emptied, or an older copy).
        if results.exists() and not journal_vouches(journal, results):
            try:
                seeded = seed_journal_from_csv(journal, results)
            except BaseException:
                _discard(journal, results, fresh)
                raise
            if seeded.total:
                summary.warnings.append(_seeded_warning(path, results, seeded, fresh))
            # What status and update wrote since the last send: kept by key,
            # the rewritten file carries it again (issue 27).
            journal.keep_tracked(tracking_cells(results))
        elif fresh:
            summary.warnings += _beside_others(results, path)
        previous = journal.get_meta("mapping_digest")
        if previous is not None and previous != mapping.digest:
            summary.warnings.append(
                f"{mapping.path} changed since the last run on {results.name}; "
                "rows already sent are matched by key and not sent again"
            )
        journal.set_meta("mapping_digest", mapping.digest)
        _remember(journal, results, summary, remember, rehearsal=sandbox)
        journal.commit()
        yield journal
    finally:
        journal.close()


def _remember(journal: Journal, results: Path, summary: Summary, remember: dict[str, str], *,
              rehearsal: bool) -> None:
    """Keep ``remember`` in the journal's meta; warn when the API URL changes:
    the rows recorded sent were sent to the one before (issue 27). Not for a
    rehearsal: its sandbox is a new one, on a new port, every run."""
    before = journal.get_meta(API_URL)
    now = remember.get(API_URL)
    if before and now and before != now and not rehearsal:
        summary.warnings.append(
            f"{results.name} records sends to {before}; this run sends to {now}: rows recorded sent are "
            f"not sent again here, and status, update and reconcile read {now} from now on")
    for name, value in remember.items():
        journal.set_meta(name, value)


def _discard(journal: Journal, results: Path, fresh: bool) -> None:
    journal.close()
    if fresh:
        remove_journal(results)


def _beside_others(results: Path, path: Path) -> list[str]:
    """A new record beside other records: likely a dated export run without
    a fixed --results, which would send everyone again."""
    others = sorted(p.name.removesuffix(".journal") for p in results.parent.glob("*.journal") if p != path)
    if not others:
        return []
    return [f"{results} is a new record, so nothing in it counts as sent yet; this "
            f"folder also holds {', '.join(others[:3])}{', …' if len(others) > 3 else ''}. "
            "To resume one of those, pass it as --results"]


def _seeded_warning(path: Path, results: Path, seeded: Seeded, fresh: bool) -> str:
    what = "was missing" if fresh else (
        f"knew fewer rows than {results.name} (a copy without its -wal file, or an older one?)")
    return (f"{path.name} {what}: took {seeded.total} rows from {results.name} ({seeded.sent} sent, "
            f"{seeded.unknown} unknown, {seeded.failed} failed); unknown rows, and rows the journal never "
            f"met, are looked up before they are sent. Keep {results.name} with {path.name}, "
            f"{path.name}-wal and {path.name}-shm")


def file_stat(path: str | None) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns) of the file at ``path``; None when there is
    none (standard input, rows in memory) or it cannot be read."""
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
