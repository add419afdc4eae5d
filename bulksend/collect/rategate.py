"""The rate gate: one schedule for every request of a run, and how it learns the
server's limit from 429s.

Two parts. :class:`Schedule` is a small GCRA ("virtual scheduling", the
algorithm aiometer's ``RateLimitMeter`` uses) whose rate may change at any
moment; it never sleeps and takes the time as an argument, so it is tested with
numbers alone. :class:`RateGate` puts every worker through one schedule, pauses
them all on a 429 (Retry-After, RFC 9110 §10.2.3 and RFC 6585 §4), and moves the
rate: down once per storm of 429s, back up while answers are good.

aiolimiter is not used here: it has no public way to change its rate at run
time (its issue #98), and writing its private attributes left parked waiters on
the old timer.

Every run has an overall patience with 429s (issue 27): a server that answers
429 with ``Retry-After: 0`` forever never asks for a pause long enough to be a
quota (``max_pause``), and the rate it drives the gate down to keeps a run
going for as long as it lasts. When no request has been accepted for
``patience`` seconds since the first 429 after the last one that was, not
counting the pauses the server asked for (each within ``max_pause``: a job
that waits out a quota on purpose is not cut short), ``throttled`` raises
``PatienceError`` (exit 3: rerun to resume), as stamina caps a retry loop's
total time as well as its tries.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from bulksend.common.errors import AbortError
from bulksend.common.progress import Progress

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

__all__ = ["PATIENCE", "Clock", "PatienceError", "RateGate", "Schedule", "Sleep"]

PATIENCE = 120.0  # seconds: the default overall patience with 429s (--patience)


class PatienceError(AbortError):
    """The API accepted nothing for longer than the run's patience while it
    answered 429 (rate limited): the run stops (exit 3); a rerun resumes."""


class Schedule:
    """When the next request may leave, at ``rate`` requests per second.

    GCRA, virtual scheduling: ``next_at`` is the theoretical time of the next
    departure and each departure moves it on by ``1/rate``. A departure later
    than its slot (a late timer, a busy event loop) is made up by the following
    ones for up to ``slack`` seconds, so a schedule at R really sends R a second;
    an idle schedule therefore lets at most ``1 + slack*rate`` requests go at
    once. ``slack`` 0 spaces every departure at least ``1/rate`` apart, for a
    server that allows no burst.

    Times are seconds on any monotonic clock; the caller passes ``now``.
    """

    __slots__ = ("interval", "next_at", "slack")

    def __init__(self, rate: float, *, slack: float, now: float) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive finite number, not {rate!r}")
        self.interval = 1.0 / rate
        self.slack = max(0.0, slack)
        self.next_at = now

    @property
    def rate(self) -> float:
        """Requests per second."""
        return 1.0 / self.interval

    def take(self, now: float) -> bool:
        """Claim a departure at ``now`` if the schedule allows one; else claim nothing."""
        slot = self.next_at
        if slot > now:
            return False
        self.next_at = max(slot, now - self.slack) + self.interval
        return True

    def reserve(self, now: float) -> float:
        """Claim the next free departure and return its time (``now`` at the earliest).

        A claim made before :meth:`restart` is void: its holder must reserve again."""
        slot = max(self.next_at, now - self.slack)
        self.next_at = slot + self.interval
        return max(slot, now)

    def restart(self, rate: float, at: float) -> None:
        """A new rate from ``at`` on (a time >= now): the first departure is due
        ``1/rate`` after it, and every earlier claim is void."""
        self.interval = 1.0 / rate
        self.next_at = at + self.interval


class RateGate:
    """One gate for every request of the run: a :class:`Schedule` whose rate
    adapts to the server's limit, and a pause that a 429 imposes on every worker.

    ``ceiling`` is ``--rate`` in requests per second (None or <= 0: none) and is
    never exceeded. The server's limit L is unknown; every 429 costs a whole
    Retry-After pause, so the gate learns L from as few storms as it can:

    * ``hi``: the lowest rate that was refused, the pace really in flight (the
      gate's rate, or with no rate set the pace measured since sending resumed,
      never one that included start-up or a pause);
    * ``lo``: the highest rate that held: sent at for ``hold`` seconds with the
      workers keeping up (so the server really saw it) and no 429.

    The first storm with nothing held yet cuts to an estimate of L from the
    answers: the requests accepted since sending started or resumed, over that
    time plus a 0.1 s burst the server may have had in store. Later storms go
    back to ``lo``. While hi is more than 5 % above lo, each rate that holds is
    followed by a step towards hi (at most x1.5, geometric middle of lo and hi),
    held for a time that is shorter the larger the step (a large overshoot empties
    a server's burst quickly). Settled, the gate stays at lo and tries 3 % more
    every ``PROBE_AFTER`` seconds, so over a long run it finds a raised limit.

    Only answers to requests sent after the last change count, so the burst of
    429s in flight when the gate cuts cuts it once, and that storm logs one pause
    line. 503s slow the gate only when they are a fifth of recent answers or
    more, and it goes back to the rate it had as soon as they fall below that.
    """

    BURST_GUESS = 0.1  # seconds of requests a server's bucket may hold
    SETTLED = 1.05  # hi/rate at which the search stops
    STEP = 2.0  # largest step up from a rate that held
    HOLD_MIN = 0.2  # shortest hold, seconds
    HELD = 0.5  # seconds at a rate before a 429 that make it a rate that held
    PROBE_AFTER = 60.0  # seconds settled before trying a little more
    RECHECK = 0.05  # longest single sleep of a parked waiter (sees rate changes)
    MIN_RATE = 0.05
    WINDOW = 2.0  # seconds of answers the 503 share and paces look at
    MARGIN = 0.97  # of an estimated limit, for the next rate
    JITTER_CUT = 0.9  # of a rate that held and then was refused
    SETTLE_GAP = 1.25  # hi/lo below which a storm ends the search
    TINY_BURST_CUT = 0.25  # of the pace refused within its first 2 requests
    PROVEN = 0.9  # lo/rate at which a rate has held and the next step may come

    def __init__(
        self,
        ceiling: float | None,
        *,
        progress: Progress,
        max_pause: float = 60.0,
        patience: float = PATIENCE,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.ceiling = ceiling if ceiling and ceiling > 0 else math.inf
        self.rate = self.ceiling
        self.progress = progress
        self.max_pause = max_pause
        self.patience = patience
        # Since the first 429 after the last accepted request (None: none
        # since): when it came, the pauses asked since (seconds), 429s since.
        self._refused_since: float | None = None
        self._asked = 0.0
        self._refusals = 0
        self._last_retry_after: float | None = None
        self.clock = clock
        self.sleep = sleep
        now = clock()
        self.paused_until = -math.inf
        self.changed_at = now  # when the current rate (or the last pause's end) took effect
        self.lo = 0.0
        self.hi = math.inf
        self.storms = 0
        self._generation = 0  # bumped by every change: parked claims are void
        self._granted = 0  # departures since changed_at
        self._hold = 1.0
        # The server's burst B, in requests: an upper estimate once a storm
        # showed it (see _cut), else None (BURST_GUESS seconds of the rate).
        self.burst: float | None = None
        # Whether the server's bucket is believed full at changed_at: after a
        # pause, or when the rate before the change had held.
        self._full = False
        # ~20 ms of catch-up absorbs event-loop timer lateness (a gate at R
        # really sends R/s); none once a 429 showed the server may mind.
        self._catch_up = 0.02
        self._before_503: float | None = None  # the rate a 503 cut came from
        # Recent answers, (sent, status) pairs, status 200 for any 2xx; bounded,
        # a run without trouble would otherwise keep one per row.
        self._answers: deque[tuple[float, int]] = deque(maxlen=4096)
        self._reported = self.rate
        self.schedule: Schedule | None = None
        if math.isfinite(self.rate):
            # The first departure is 1/rate after the gate opens: a request made
            # just before (the preflight, the check) may have taken the server's
            # last token, and a server with no burst refuses anything sooner.
            self.schedule = Schedule(self.rate, slack=self._catch_up, now=now)
            self.schedule.restart(self.rate, now)

    # -- departures ---------------------------------------------------------

    def open_now(self) -> float | None:
        """The time, when a request may leave at once (no pause, a free slot):
        what :meth:`acquire` would return without suspending, for no coroutine.
        The slot is taken. Else None: await :meth:`acquire`."""
        now = self.clock()
        if now < self.paused_until:
            return None
        schedule = self.schedule
        if schedule is None:
            return now
        if schedule.take(now):
            self._granted += 1
            return now
        return None

    async def acquire(self) -> float:
        """Wait for a slot; returns the time (on ``clock``) the request may leave.

        A parked waiter wakes at least every ``RECHECK`` seconds, so a rate
        raised while it waits takes effect at once; a change voids its claim.
        Raises ``PatienceError`` once a run of 429s has spent the patience
        (a rate driven down by them parks a waiter for long: it stops here)."""
        while True:
            now = self.clock()
            self._check_patience(now)
            if now < self.paused_until:
                await self.sleep(self.paused_until - now)
                continue
            schedule = self.schedule
            if schedule is None:
                return now
            generation = self._generation
            slot = schedule.reserve(now)
            while slot > now and generation == self._generation:
                await self.sleep(min(slot - now, self.RECHECK))
                now = self.clock()
                self._check_patience(now)
            if generation == self._generation and now >= self.paused_until:
                self._granted += 1
                return now

    def _set(self, rate: float, now: float, *, start: float | None = None) -> None:
        """The rate from ``start`` (default now) on; resets what measures a hold."""
        rate = max(self.MIN_RATE, min(self.ceiling, rate))
        start = now if start is None else start
        self.rate = rate
        self.changed_at = start
        self._granted = 0
        self._generation += 1
        self._full = False
        if math.isinf(rate):
            self.schedule = None
        elif self.schedule is None:
            self.schedule = Schedule(rate, slack=self._catch_up, now=start)
        else:
            self.schedule.restart(rate, start)
        reported = self._reported
        if math.isinf(reported) != math.isinf(rate) or abs(rate - reported) > 0.01 * reported:
            self._reported = rate
            self.progress.rate(rate)

    # -- answers ------------------------------------------------------------

    def _window(self, until: float) -> tuple[int, int, float]:
        """The answers to requests sent from the last change to ``until``:
        (accepted, all, seconds from the first of them to ``until``)."""
        sents = [(sent, status) for sent, status in self._answers if self.changed_at <= sent <= until]
        if not sents:
            return 0, 0, 0.0
        accepted = sum(1 for _, status in sents if status == 200)
        return accepted, len(sents), until - min(sent for sent, _ in sents)

    def success(self, sent: float) -> None:
        """A 2xx to a request that left at ``sent``: a rate that holds moves up."""
        self._answers.append((sent, 200))
        self._refused_since = None  # accepted: the patience starts again at the next 429
        if sent < self.changed_at or self.rate >= self.ceiling:
            return
        now = self.clock()
        if now - self.changed_at < self._hold:
            return
        if self._before_503 is not None:
            if self._share_503(now) < 0.2:
                back, self._before_503 = self._before_503, None
                self._set(back, now)
            return
        held = now - self.changed_at
        if self._granted < 0.8 * self.rate * held:
            return  # the workers did not keep up: the server never saw this rate
        # A rate r above the limit L empties a burst of B requests in B/(r-L)
        # seconds: r held that long with no 429 proves L >= r - B/held.
        self.lo = max(self.lo, self.rate - self._burst() / held)
        if self.lo < self.rate * self.PROVEN:
            return  # not proven yet: the server's burst may still be paying for it
        if self.hi <= self.rate * self.SETTLED:
            if held >= self.PROBE_AFTER:
                self.hi = max(self.hi, self.rate * self.SETTLED)  # the limit may have moved
                self._step(min(self.rate * 1.03, self.ceiling), now)
            return
        self._step(min(self.rate * self.STEP, math.sqrt(self.rate * self.hi), self.ceiling), now)

    def _burst(self) -> float:
        """The server's burst B in requests: learned (an upper estimate), or
        BURST_GUESS seconds of the current rate."""
        return self.burst if self.burst is not None else self.BURST_GUESS * self.rate

    def _step(self, rate: float, now: float) -> None:
        step = rate - self.rate
        # A rate that is ``step`` above the limit empties a burst of B requests
        # in B/step seconds: hold that long before calling it safe. The bucket
        # is full now: the rate so far held.
        self._hold = min(2.0, max(self.HOLD_MIN, self._burst() / max(step, 1e-6)))
        self._set(rate, now)
        self._full = True

    def throttled(self, sent: float, retry_after: float | None) -> float:
        """A 429 to a request that left at ``sent``: pause every worker for
        Retry-After (None: 1 s; capped at ``max_pause``, at least 50 ms) and, once
        per storm, cut the rate. Returns the pause in seconds."""
        now = self.clock()
        pause = max(0.05, min(self.max_pause, retry_after if retry_after is not None else 1.0))
        self._answers.append((sent, 429))
        if self._refused_since is None:
            self._refused_since, self._asked, self._refusals = now, 0.0, 0
        self._refusals += 1
        self._last_retry_after = retry_after
        self._check_patience(now)
        new_storm = sent >= self.changed_at and now >= self.paused_until
        until = max(self.paused_until, now + pause)
        self._asked += max(0.0, until - max(self.paused_until, now))  # a pause the server asks for
        if sent >= self.changed_at:
            self._cut(sent, now, until)
        elif until > self.paused_until:  # an answer of the last storm: honour its Retry-After
            self.paused_until = until
            self._generation += 1
            if self.schedule is not None:
                self.schedule.restart(self.rate, until)
        if new_storm:
            self.storms += 1
            self.progress.event(
                "pause", f"server said 429: pausing all workers {pause:.1f}s", seconds=pause,
                rate=round(self.rate, 2),
            )
        return pause

    def _check_patience(self, now: float) -> None:
        """``PatienceError`` when the 429s since the last accepted request have
        lasted longer than the patience, the pauses they asked for apart."""
        if self._refused_since is None or now - self._refused_since - self._asked <= self.patience:
            return
        retry_after = self._last_retry_after
        said = "no Retry-After" if retry_after is None else f"Retry-After {retry_after:g}s"
        raise PatienceError(
            f"the API accepted no request for {now - self._refused_since:.0f}s and answered 429 (rate "
            f"limited, {said}) {self._refusals} times: stopped after --patience {self.patience:g}s",
            hint="rerun the same command later: it resumes; or pass --patience SECONDS to wait longer")

    def _cut(self, sent: float, now: float, until: float) -> None:
        """The cut of one storm; the new rate starts when the pause ends."""
        accepted, sent_n, elapsed = self._window(sent)
        # The pace really in flight: measured over a quarter second or more
        # (fewer is noise), never above the gate's own rate.
        measured = (sent_n - 1) / elapsed if sent_n >= 2 and elapsed > 0 else math.inf
        flight = min(self.rate, measured) if elapsed >= 0.25 or math.isinf(self.rate) else self.rate
        self._before_503 = None
        # Refused before anything was accepted: the server's bucket was spent
        # before this run (the preflight, another client). No pace was refused
        # yet: pause, and keep the rate.
        fresh = accepted == 0 and self.storms == 0
        new = self.rate if fresh else self._estimate(accepted, elapsed, flight)
        # The server may allow no burst at all: from now on no catch-up,
        # every departure at least 1/rate after the one before.
        self._catch_up = 0.0
        if self.schedule is not None:
            self.schedule.slack = 0.0
        self.paused_until = until
        self._set(new, now, start=until)
        # Long enough for the server's burst to have paid for no more than
        # 1 - PROVEN of the rate (see success).
        self._hold = min(2.0, max(self.HOLD_MIN, self._burst() / ((1 - self.PROVEN) * new)))
        self._full = until - now >= 0.5  # a pause refills any bucket of half a second

    def _estimate(self, accepted: int, elapsed: float, flight: float) -> float:
        """The rate after a storm: ``accepted`` requests went through in the
        ``elapsed`` seconds from the last change to the refused one, at the
        pace ``flight``. Moves hi, lo and the burst; returns the new rate.

        From a full bucket of B, a limit R lets B + R*elapsed requests through
        before the first refusal: accepted + 1 > B + R*elapsed >= accepted.
        With B known, that gives R; with R >= lo, it bounds B."""
        refused = self.rate
        self.hi = min(self.hi, flight)
        if self.lo >= self.hi:
            # A rate that held was refused: timing noise (a server without
            # burst refuses any two requests that arrive closer than 1/R), or
            # the limit fell. Leave room for the noise.
            self.lo = self.hi = min(self.hi, refused)
            self.lo *= self.JITTER_CUT
            return self.lo
        full = self._full and elapsed > 0
        if full and self.burst is not None and accepted > self.burst:
            # The lower end: R >= (accepted - B)/elapsed, near enough.
            estimate = (accepted - self.burst) / elapsed
        else:
            # The server's burst unknown: BURST_GUESS seconds of its limit.
            estimate = max(accepted, 1) / (elapsed + self.BURST_GUESS)
        if elapsed <= 0:
            # A flood (every request at once): the bucket let ``accepted`` through.
            self.burst = max(1.0, accepted) if self.burst is None else self.burst
        else:
            # B + R*elapsed < accepted + 1 with R > lo >= 0, and a bucket holds
            # whole requests: B <= ceil(accepted + 1 - lo*elapsed) - 1.
            bound = max(1.0, math.ceil(accepted + 1 - self.lo * elapsed) - 1.0)
            self.burst = bound if self.burst is None else min(self.burst, bound)
        if self.lo > 0 and self.hi <= self.lo * self.SETTLE_GAP:
            # Close enough: another storm costs more than the difference.
            self.hi = self.lo * self.SETTLED
            return self.lo
        new = max(self.lo, estimate * self.MARGIN)
        if elapsed >= self.HELD:
            # Refused after it held a while: most likely timing noise near the
            # limit (what a refusal within the first requests cannot be).
            new = max(new, refused * self.JITTER_CUT)
        if math.isfinite(self.hi):
            # Two answers or fewer say more about a burst than about a pace.
            floor = self.hi * self.TINY_BURST_CUT if accepted < 3 else self.hi / 64
            new = min(self.hi * self.MARGIN, max(floor, new))
        return new

    def _share_503(self, now: float) -> float:
        recent = [status for sent, status in self._answers if sent >= now - self.WINDOW]
        return recent.count(503) / len(recent) if recent else 0.0

    def unavailable(self, sent: float) -> None:
        """A 503 to a request that left at ``sent``. When 503s are a fifth of the
        answers of the last ``WINDOW`` seconds or more, the server is struggling:
        the rate drops by a fifth (once per ``WINDOW``), and goes back up once
        the share is under a fifth again."""
        self._answers.append((sent, 503))
        now = self.clock()
        if not math.isfinite(self.rate) or sent < self.changed_at or now - self.changed_at < self.WINDOW:
            return
        if self._share_503(now) < 0.2:
            return
        if self._before_503 is None:
            self._before_503 = self.rate
        self._hold = self.WINDOW
        self._set(self.rate * 0.8, now)
