"""How the core reports progress without printing.

The core calls a ``Progress``; the CLI supplies one that draws a tqdm bar, writes
periodic lines or JSON events, and tests supply ``RecordingProgress``.
"""

from __future__ import annotations

from typing import Any, Protocol

from bulksend.common.outcome import Outcome


class Progress(Protocol):
    def start(self, total: int) -> None:
        """The run begins: ``total`` input rows."""

    def outcome(self, outcome: Outcome) -> None:
        """A row's outcome is known (and recorded)."""

    def carried(self, counts: dict[str, int]) -> None:
        """Rows settled by earlier runs and skipped unread (see store/checkpoints.py), by status."""

    def event(self, kind: str, message: str, **fields: Any) -> None:
        """Something a person may want to know: a retry, a pause, a warning."""

    def rate(self, per_second: float) -> None:
        """The rate gate's current setting changed."""

    def close(self) -> None:
        """The run is over."""


class NullProgress:
    def start(self, total: int) -> None:
        pass

    def outcome(self, outcome: Outcome) -> None:
        pass

    def carried(self, counts: dict[str, int]) -> None:
        pass

    def event(self, kind: str, message: str, **fields: Any) -> None:
        pass

    def rate(self, per_second: float) -> None:
        pass

    def close(self) -> None:
        pass


class RecordingProgress(NullProgress):
    """Keeps everything it is told; for tests and for summaries."""

    def __init__(self) -> None:
        self.total = 0
        self.outcomes: list[Outcome] = []
        self.carried_counts: dict[str, int] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.rates: list[float] = []

    def start(self, total: int) -> None:
        self.total = total

    def outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def carried(self, counts: dict[str, int]) -> None:
        self.carried_counts = dict(counts)

    def event(self, kind: str, message: str, **fields: Any) -> None:
        self.events.append((kind, message, fields))

    def rate(self, per_second: float) -> None:
        self.rates.append(per_second)
