"""All problems at once (issue 15): a run that cannot start says every reason it
found, not the first one. A missing API key is reported with the mapping's and
the input's problems, so a person fixes them in one round, not two."""

from __future__ import annotations

from bulksend.common.errors import BulksendError
from bulksend.sending.run import open_input
from bulksend.settings import RunConfig

__all__ = ["SeveralErrors", "input_errors", "together"]


class SeveralErrors(BulksendError):
    """Independent errors found together; ``errors`` in the order found. The
    exit status is the first error's; the CLI prints each with its hint."""

    def __init__(self, errors: list[BulksendError]) -> None:
        super().__init__(" / ".join(error.message for error in errors))
        self.errors = list(errors)
        self.exit_status = errors[0].exit_status


def input_errors(config: RunConfig) -> list[BulksendError]:
    """The error that stops ``config``'s input or mapping from being used (file
    unreadable, mapping problems, …), as a list of at most one; nothing is sent
    and no results file is touched. Reads the header, not the rows."""
    try:
        table, _mapping = open_input(config.input)
    except BulksendError as exc:
        return [exc]
    table.close()
    return []


def together(errors: list[BulksendError]) -> BulksendError:
    """One error to raise for ``errors`` (not empty): itself when alone."""
    return errors[0] if len(errors) == 1 else SeveralErrors(errors)
