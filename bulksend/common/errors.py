"""The run's exceptions and exit statuses.

A row that fails is data (an ``Outcome``), never an exception. Exceptions are
for the run as a whole: options, input file, mapping, results file, auth. The
CLI turns each into one line on standard error and the exit status it carries.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Exit statuses, as PRODUCT.md defines them."""

    OK = 0  # every row sent (or already sent)
    ROWS_NOT_SENT = 1  # run finished; some rows failed/invalid/duplicate/unknown; or a send declined
    USAGE = 2  # usage, mapping or input error: nothing was sent
    ABORTED = 3  # wrong key, outage: resumable
    INTERRUPTED = 130  # Ctrl-C / SIGTERM: resumable


class BulksendError(Exception):
    """An error that ends the run with a one-line message and an exit status."""

    exit_status: ExitStatus = ExitStatus.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(BulksendError):
    """A bad option value or combination."""


class InputError(BulksendError):
    """The contacts file cannot be read as a table (message names file and row)."""


class MappingError(BulksendError):
    """One or more problems in the mapping file, reported together."""

    def __init__(self, path: str, problems: list[str], *, hint: str | None = None) -> None:
        self.path = path
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"{path}: {self.problems[0]}"
        else:
            listed = "; ".join(self.problems)
            message = f"{path}: {len(self.problems)} problems: {listed}"
        super().__init__(message, hint=hint)


class ResultsError(BulksendError):
    """The results file or its journal cannot be used."""


class LockedError(BulksendError):
    """Another run is using the same results file."""


class AuthError(BulksendError):
    """The API key was refused (401)."""

    exit_status = ExitStatus.ABORTED


class AbortError(BulksendError):
    """The run stopped early but can be resumed (outage, preflight failure)."""

    exit_status = ExitStatus.ABORTED


class DeclinedError(BulksendError):
    """A real send's confirmation was answered no (issue 28): nothing was sent."""

    exit_status = ExitStatus.ROWS_NOT_SENT
