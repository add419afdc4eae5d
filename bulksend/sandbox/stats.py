"""What the sandbox counts: each /v1 call by endpoint and outcome, and the peak concurrency."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from bulksend.sandbox.config import CREATED_FATES, NOTHING_CREATED_FATES

__all__ = ["CallStats"]

_POST_KINDS: Final = {"/v1/request": "post_request", "/v1/requests": "post_requests"}
# Every outcome a POST is counted under (present in stats even when 0): the HTTP
# status of a normal answer, or the fate's name for a fault.
_OUTCOMES: Final = (
    "200",
    "400",
    "401",
    "404",
    "429",
    "500",
    "503",
    *(fate for fate in NOTHING_CREATED_FATES + CREATED_FATES if not fate.isdigit()),
)


class CallStats:
    """Counters of /v1 calls: POST /request(s) by outcome, GETs and others by status."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every counter back to 0."""
        self._posts: dict[str, Counter[str]] = {kind: Counter() for kind in _POST_KINDS.values()}
        self._gets: Counter[str] = Counter()
        self._others: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0

    @staticmethod
    def creates(method: str, path: str) -> bool:
        """Whether a call is a POST /request or POST /requests (the calls that meet fates)."""
        return method == "POST" and path in _POST_KINDS

    def counter(self, method: str, path: str) -> Counter[str]:
        """The counter a call's outcome goes to."""
        if self.creates(method, path):
            return self._posts[_POST_KINDS[path]]
        return self._gets if method == "GET" else self._others

    def enter(self) -> None:
        """A call is inside the server (for ``max_in_flight``)."""
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight

    def leave(self) -> None:
        """A call has left the server."""
        self._in_flight -= 1

    def copy(self, created: int) -> dict[str, Any]:
        """The stats as ``Sandbox.stats`` documents them; ``created``: requests created so far."""
        return {
            "post_request": _with_all_outcomes(self._posts["post_request"]),
            "post_requests": _with_all_outcomes(self._posts["post_requests"]),
            "get": dict(self._gets),
            "gets": sum(self._gets.values()),
            "other": dict(self._others),
            "created": created,
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
        }


def _with_all_outcomes(counts: Counter[str]) -> dict[str, int]:
    # Every documented outcome present (0 when it never happened), then any other status.
    return {outcome: counts.get(outcome, 0) for outcome in _OUTCOMES} | dict(counts)
