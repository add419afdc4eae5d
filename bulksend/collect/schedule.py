"""When the next request may leave: the rate gate's schedule (GCRA, virtual
scheduling, with the least gap between departures as they really happen).

It never sleeps and takes the time as an argument, so it is tested with numbers
alone; :class:`bulksend.collect.rategate.RateGate` moves it.
"""

from __future__ import annotations

import math

__all__ = ["Schedule"]


class Schedule:
    """When the next request may leave, at ``rate`` requests per second.

    GCRA, virtual scheduling: ``next_at`` is the theoretical time of the next
    departure and each departure moves it on by ``1/rate``. A departure later
    than its slot (a late timer, a busy event loop) is made up by the following
    ones for up to ``slack`` seconds, so a schedule at R really sends R a second;
    an idle schedule therefore lets at most ``1 + slack*rate`` requests go at
    once. ``gap`` is the least time between two departures as they really
    happen (``last`` is the latest): a server with no burst refuses a request
    that comes sooner than 1/R after the one before, and waiters woken late by
    the event loop would otherwise leave together. With ``wait_answers``, at
    most ``in_flight`` requests are out unanswered (a later one waits up to two
    intervals, at least a quarter second, for an answer): a server that stalls reads the requests queued
    meanwhile at once, and refuses those its bucket cannot hold.

    Times are seconds on any monotonic clock; the caller passes ``now``.
    """

    __slots__ = ("after", "gap", "in_flight", "interval", "last", "next_at", "slack", "unanswered",
                 "wait_answers")

    def __init__(self, rate: float, *, slack: float, now: float, gap: float = 0.0) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive finite number, not {rate!r}")
        self.interval = 1.0 / rate
        self.slack = max(0.0, slack)
        self.next_at = now
        self.gap = gap
        self.last = -math.inf
        self.after = -math.inf  # see :meth:`answered`
        self.wait_answers = False
        self.in_flight = 1
        # Departures not answered yet, oldest first (a dict keeps the order);
        # one whose answer never comes ages out after ``patience()`` seconds.
        self.unanswered: dict[float, None] = {}

    @property
    def rate(self) -> float:
        """Requests per second."""
        return 1.0 / self.interval

    def take(self, now: float) -> bool:
        """Claim a departure at ``now`` if the schedule allows one; else claim nothing."""
        slot = self.next_at
        if slot > now or self.ready(now) > 0.0:
            return False
        self.next_at = max(slot, now - self.slack) + self.interval
        self.depart(now)
        return True

    def reserve(self, now: float) -> float:
        """Claim the next free departure and return its time (``now`` at the earliest).

        The holder leaves once :meth:`ready` says 0, and calls :meth:`depart`.
        A claim made before :meth:`restart` is void: its holder must reserve again."""
        slot = max(self.next_at, now - self.slack)
        self.next_at = slot + self.interval
        return max(slot, now)

    def depart(self, now: float) -> None:
        """A request leaves at ``now``."""
        self.last = now
        if self.wait_answers:
            self.unanswered[now] = None

    def ready(self, now: float) -> float:
        """Seconds until a departure keeps ``gap`` after the last one, and
        ``after`` (0: now); with ``in_flight`` requests unanswered, until the
        oldest is ``patience()`` seconds old."""
        wait = max(0.0, self.last + self.gap - now, self.after - now)
        unanswered = self.unanswered
        if self.wait_answers and unanswered:
            aged = now - self.patience()
            while unanswered and (oldest := next(iter(unanswered))) <= aged:
                del unanswered[oldest]
            if len(unanswered) >= self.in_flight:
                wait = max(wait, next(iter(unanswered)) + self.patience() - now)
        return wait

    def patience(self) -> float:
        """How long a departure waits for an answer: two intervals, and at
        least a quarter second (a server stalled that long reads what was
        sent meanwhile at once)."""
        return max(2 * self.interval, 0.25)

    def waiting_for_answers(self) -> bool:
        """Whether a departure waits for an answer (not for its time)."""
        return self.wait_answers and len(self.unanswered) >= self.in_flight

    def answered(self, sent: float, delay: float) -> None:
        """The answer to the request that left at ``sent`` came, ``delay``
        seconds later than the quickest answers: the server may have counted
        it that much later (a busy or descheduled server stamps late), and a
        server with no burst counts the gap from its own stamp. Only the last
        departure's answer moves the next one."""
        self.unanswered.pop(sent, None)
        if sent != self.last:
            return
        if self.gap > 0.0 and delay > 0.0:
            self.after = max(self.after, sent + self.gap + delay)

    def restart(self, rate: float, at: float) -> None:
        """A new rate from ``at`` on (a time >= now): the first departure is due
        ``1/rate`` after it, and every earlier claim is void."""
        self.interval = 1.0 / rate
        self.next_at = at + self.interval
