"""Where every row's outcome goes: the one writer of a run's results.

Each row ends here exactly once, whatever stopped the run: its outcome is
committed to the journal (when it came from the API), written to the results
CSV, counted in the summary and the checkpoint tracker, and shown as progress.

A full disk stops the run (issue 27: the counts must add up all the same).
The first failure to write the results file is raised, as it ends the run;
after it, and once the journal is broken, the rows the stopping run still
hands over are counted and shown but not written again: the summary says how
many lines the file holds (``Recorder.unwritten``), and a rerun writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bulksend.common.errors import BulksendError
from bulksend.common.outcome import FAILED, SENT, UNKNOWN, Outcome

if TYPE_CHECKING:
    from bulksend.common.outcome import Summary
    from bulksend.common.progress import Progress
    from bulksend.sending.sender import Job
    from bulksend.store.checkpoints import Tracker
    from bulksend.store.journal import Journal
    from bulksend.store.results import ResultsWriter

# The count of the rows a stopped run never read (a full disk broke the journal
# before the feeder reached them): they keep what earlier runs recorded.
NOT_REACHED = "not-reached"


@dataclass
class Recorder:
    """The end of every row's path (one per run; it owns no file, it feeds them)."""

    journal: Journal
    writer: ResultsWriter
    summary: Summary
    tracker: Tracker
    progress: Progress
    dry_run: bool = False
    unwritten: int = 0  # rows counted whose line could not be written (a full disk)
    _write_failed: bool = False

    def finish(self, outcome: Outcome, *, carried: bool = False) -> None:
        """The row's last word in this run. ``carried``: its status comes from
        the journal (no API call was made), so the journal is not written."""
        if outcome.key and outcome.status in (SENT, FAILED, UNKNOWN) and not (carried or self.dry_run):
            self.journal.record(outcome)
        try:
            self._write(outcome)
        finally:
            self.summary.note(outcome)
            self.tracker.note(outcome)
            self.progress.outcome(outcome)

    def _write(self, outcome: Outcome) -> None:
        """The row's line; the first failure is raised (it ends the run), the
        later ones only counted."""
        if self._write_failed:
            self.unwritten += 1
            return
        try:
            self.writer.write(outcome)
        except BulksendError:
            self._write_failed = True
            self.unwritten += 1
            raise

    def unattempted(self, job: Job) -> None:
        """A queued row the run stopped before sending: its earlier status stands."""
        if job.marked and job.outcome.key:
            job.marked = False
            try:
                self.journal.restore(job.outcome.key, job.previous)
            except BulksendError:
                # A broken journal (a full disk; the run is stopping for it):
                # the mark stays, and the next run looks the row up first.
                if self.journal.broken is None:
                    raise
        self.finish(job.outcome, carried=True)

    def stopped(self, job: Job) -> None:
        """A row the run stopped with while a worker had it: unknown if its POST
        was on the wire; what its answers said if it had any; else untouched."""
        o = job.outcome
        if job.posting:
            o.status = UNKNOWN
            o.error = "stopped while in flight; it is looked up before any resend"
        elif job.attempts_before < 0 or (o.attempts == job.attempts_before and o.status != UNKNOWN):
            self.unattempted(job)
            return
        elif o.status not in (SENT, FAILED, UNKNOWN):
            o.status = FAILED  # every answer it had this run said "not created"
        self.finish(o)
