"""The rate gate: one schedule for every request of a run, and how it learns the
server's limit from 429s.

Two parts. ``collect/schedule.py`` :class:`Schedule` is a small GCRA ("virtual
scheduling", the algorithm aiometer's ``RateLimitMeter`` uses) whose rate may
change at any moment; it never sleeps and takes the time as an argument, so it
is tested with numbers alone. :class:`RateGate` puts every worker through one schedule, pauses
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

from bulksend.collect.schedule import Schedule
from bulksend.common.errors import AbortError
from bulksend.common.progress import Progress

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

__all__ = ["PATIENCE", "Clock", "PatienceError", "RateGate", "Sleep"]

PATIENCE = 120.0  # seconds: the default overall patience with 429s (--patience)


class PatienceError(AbortError):
    """The API accepted nothing for longer than the run's patience while it
    answered 429 (rate limited): the run stops (exit 3); a rerun resumes."""


class RateGate:
    """One gate for every request of the run: a :class:`Schedule` whose rate
    adapts to the server's limit, and a pause that a 429 imposes on every worker.

    ``ceiling`` is ``--rate`` in requests per second (None or <= 0: none) and is
    never exceeded. The server is taken to be a token bucket (the usual rate
    limiter; collect-api.md §2 documents none): B requests of burst, refilled at
    L a second. Both are unknown, and every 429 storm costs a pause (Retry-After
    when the server gives one, honoured exactly; else the gate's own: the time
    its estimate says the bucket needs to refill), so the gate learns them from
    as few storms as it can:

    * ``burst``: B, from a storm's count of what got through (see
      :meth:`_learn_burst`);
    * ``lo``: a rate L is proven to be at least: a rate r sent at from a time
      the bucket was full, n requests accepted over ``span`` seconds, proves
      L >= (n - B)/span (each accepted request found a token);
    * ``hi``: the lowest rate that was refused, the pace really in flight, and
      after a storm the count: from a full bucket, n requests accepted in T
      seconds before the first refusal mean B + L*T < n + 1.

    The first storm with nothing known cuts to an estimate of L from the
    answers (accepted over the time plus a 0.1 s burst the server may hold).
    After a storm the gate counts, from each time it knows or may have had a
    full bucket (the end of a pause, each step up since), what got through, and
    takes the best-founded estimate L = (n - B)/T (:meth:`_measure`). While hi
    is more than 5 % above lo, each proven rate is followed by a step towards
    hi (at most x1.2): if it is above L, the next storm measures L over that
    step. Settled, the gate stays and tries 3 % more every ``PROBE_AFTER``
    seconds, so over a long run it finds a raised limit.

    While the burst may be 1 (nothing learned, or a storm showed it), every
    departure leaves at least 1/rate after the one before, as the server counts
    them; a refusal at a rate that held is timing noise, and costs 2 %, then 4 %, at most 8 %.

    Only answers to requests sent after the last change count, so the burst of
    429s in flight when the gate cuts cuts it once, and that storm logs one pause
    line. 503s slow the gate only when they are a fifth of recent answers or
    more, and it goes back to the rate it had as soon as they fall below that.
    """

    BURST_GUESS = 0.1  # seconds of requests a server's bucket may hold
    SETTLED = 1.05  # hi/rate at which the search stops
    FIRST_STEP = 0.1  # the first step up after a storm, a fraction of the rate; it doubles
    HOLD_MIN = 0.2  # shortest hold, seconds
    HELD = 0.5  # seconds at a rate before a 429 that make it a rate that held
    PROBE_AFTER = 60.0  # seconds settled before trying a little more
    RECHECK = 0.05  # longest single sleep of a parked waiter (sees rate changes)
    GAP_MARGIN = 0.03  # of 1/rate, between two departures at the rate given (see _gap)
    CATCH_UP = 0.02  # seconds of late departures made up, when the server has a burst
    ANSWER_POLL = 0.001  # seconds between looks for an awaited answer (see Schedule)
    SPIN = 0.0015  # seconds before a spaced departure that a waiter spins (see _nap)
    MIN_RATE = 0.05
    WINDOW = 2.0  # seconds of answers the 503 share and paces look at
    MARGIN = 0.97  # of an estimated limit, for the next rate
    MEASURED = 0.99  # of a measured limit (a count over MEASURE_MIN or more)
    MEASURE_MIN = 0.25  # seconds of counting that make a measure
    CLUSTER_GAP = 0.05  # seconds between departures that part the first storm's count (see _cluster)
    NOISE_CUT = 0.02  # the first cut for timing noise; it doubles with each
    SETTLE_GAP = 1.1  # hi/lo below which a storm ends the search
    TINY_BURST_CUT = 0.25  # of the pace refused within its first 2 requests
    PROVEN = 0.9  # lo/rate at which a rate has held and the next step may come
    QUICKEST_DRIFT = 0.0001  # s per answer the quickest round trip may rise (a slower route)
    OWN_PAUSE = (0.05, 1.0)  # the gate's own pause, when a 429 names none: bounds, seconds

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
        # A clock of the caller's own (a test's virtual time) does not move
        # while a waiter spins: it sleeps instead.
        self._spin = self.SPIN if clock is time.monotonic else 0.0
        now = clock()
        self.paused_until = -math.inf
        self.changed_at = now  # when the current rate (or the last pause's end) took effect
        self.lo = 0.0
        self.hi = math.inf
        self.storms = 0
        self._noise = 0  # refusals of a rate that held: timing noise
        # The next step up, a fraction of the rate: small after a storm (the
        # limit is likely near), doubling while steps hold (it is not).
        self._step_up = self.FIRST_STEP
        self._generation = 0  # bumped by every change: parked claims are void
        self._granted = 0  # departures since changed_at
        self._hold = 1.0
        # The server's burst B, in requests: an estimate once a storm showed
        # it (see _learn_burst), else None (BURST_GUESS seconds of the rate).
        self.burst: float | None = None
        # Whether ``burst`` was seen whole (a flood into a bucket known full);
        # else the bucket may have been partly spent (the preflight): one more.
        self._burst_exact = False
        # Whether the server's bucket is believed full at changed_at: after a
        # pause, or when the rate before the change was proven below L.
        self._full = False
        # Since the last pause: the times the bucket was or may have been full
        # (the pause's end, each step up): where a storm's count starts.
        self._starts: list[tuple[float, float]] = []  # (time, rate from then)
        self._before_503: float | None = None  # the rate a 503 cut came from
        # Recent answers, (sent, status) pairs, status 200 for any 2xx; bounded,
        # a run without trouble would otherwise keep one per row.
        self._answers: deque[tuple[float, int]] = deque(maxlen=4096)
        self._departures: deque[float] = deque(maxlen=4096)  # the times requests left
        # The quickest round trip lately, seconds: an answer slower than it was
        # held up somewhere, perhaps before the server counted it.
        self._quickest = math.inf
        self._reported = self.rate
        self.schedule: Schedule | None = None
        if math.isfinite(self.rate):
            # The first departure is 1/rate after the gate opens: a request made
            # just before (the preflight, the check) may have taken the server's
            # last token, and a server with no burst refuses anything sooner.
            self.schedule = Schedule(self.rate, slack=0.0, now=now, gap=self._gap(self.rate))
            self.schedule.restart(self.rate, now)

    # -- departures ---------------------------------------------------------

    def _spaced(self) -> bool:
        """Whether the server may allow no burst (B < 2): then departures keep
        a gap (see Schedule); else a late one is made up (``CATCH_UP``)."""
        burst = self.burst
        return burst is None or burst < (2.0 if self._burst_exact else 3.0)

    def _gap(self, rate: float) -> float:
        """The least time between two departures at ``rate``: 0 with a burst;
        else 1/rate, and at the rate the person gave ``GAP_MARGIN`` more (it
        may be the limit itself: a server stamps arrivals with its own noise,
        and a bucket refilled to 0.99996 of a token refuses). A rate the gate
        chose has its margin (``MEASURED``, ``MARGIN``)."""
        if not self._spaced():
            return 0.0
        return (1.0 + (self.GAP_MARGIN if rate >= self.ceiling else 0.0)) / rate

    def _slack(self, rate: float) -> float:
        """With a burst, ``CATCH_UP`` seconds of late departures are made up (a
        gate at R really sends R a second), never more than the server's bucket
        surely holds (GCRA with slack (b - 1)/rate is a token bucket of b)."""
        if self._spaced():
            return 0.0
        return min(self.CATCH_UP, (self._burst() - (0.0 if self._burst_exact else 1.0) - 1.0) / rate)

    def _shape(self, schedule: Schedule, rate: float) -> None:
        schedule.gap = self._gap(rate)
        schedule.slack = self._slack(rate)
        # As many unanswered as the server's bucket surely holds, less one.
        schedule.in_flight = 1 if self._spaced() else max(1, int(self._burst()) - 1)

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
            self._departures.append(now)
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
            while generation == self._generation and (wait := max(slot - now, schedule.ready(now))) > 0:
                await self.sleep(self._nap(wait, schedule))
                now = self.clock()
                self._check_patience(now)
            if generation == self._generation and now >= self.paused_until:
                schedule.depart(now)
                self._granted += 1
                self._departures.append(now)
                return now

    def _nap(self, wait: float, schedule: Schedule) -> float:
        """How long a parked waiter sleeps before it looks again. The event loop
        wakes a timer up to a millisecond late (the selector counts whole
        milliseconds), and with departures spaced 1/rate apart a late one is
        lost for good: the last ``SPIN`` seconds are passed in sleep(0) turns
        of the loop instead (other tasks run meanwhile)."""
        if schedule.gap <= 0.0:
            return min(wait, self.RECHECK)
        if schedule.waiting_for_answers():
            return min(wait, self.ANSWER_POLL)  # the answer may come any moment
        return 0.0 if wait <= self._spin else min(wait - self._spin, self.RECHECK)

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
        else:
            if self.schedule is None:
                self.schedule = Schedule(rate, slack=0.0, now=start)
            self.schedule.restart(rate, start)
            self._shape(self.schedule, rate)
        reported = self._reported
        if math.isinf(reported) != math.isinf(rate) or abs(rate - reported) > 0.01 * reported:
            self._reported = rate
            self.progress.rate(rate)

    # -- answers ------------------------------------------------------------

    def _window(self, until: float, since: float | None = None) -> tuple[int, int, float]:
        """The answers to requests sent from ``since`` (default: the last change)
        to ``until``: (accepted, all, seconds from the first of them to ``until``)."""
        since = self.changed_at if since is None else since
        sents = [(sent, status) for sent, status in self._answers if since <= sent <= until]
        if not sents:
            return 0, 0, 0.0
        accepted = sum(1 for _, status in sents if status == 200)
        return accepted, len(sents), until - min(sent for sent, _ in sents)

    def _answered(self, sent: float, status: int) -> float:
        """Every answer: its record, its round trip; returns the time now."""
        now = self.clock()
        self._answers.append((sent, status))
        trip = now - sent
        # The first answer has nothing to compare with: all of its trip may
        # have come before the server counted it (a new connection's set-up).
        delay = trip if math.isinf(self._quickest) else trip - self._quickest
        self._quickest = min(trip, self._quickest + self.QUICKEST_DRIFT)
        schedule = self.schedule
        if schedule is not None:
            schedule.answered(sent, delay)
            # Waiting for answers costs nothing when they come well within an interval.
            schedule.wait_answers = self._quickest < schedule.interval / 2
        return now

    def answered(self, sent: float) -> None:
        """Any answer, or a call that ended without one, to a request that left
        at ``sent``: the schedule stops waiting for it (see Schedule). success,
        throttled and unavailable say so themselves."""
        if self.schedule is not None:
            self.schedule.answered(sent, 0.0)

    def success(self, sent: float) -> None:
        """A 2xx to a request that left at ``sent``: a rate that holds moves up."""
        now = self._answered(sent, 200)
        self._refused_since = None  # accepted: the patience starts again at the next 429
        if sent < self.changed_at or self.rate >= self.ceiling:
            return
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
        self._prove(sent)
        if self.lo < self.rate * self.PROVEN:
            return  # not proven yet: the server's burst may still be paying for it
        if self.hi <= self.rate * self.SETTLED:
            if held >= self.PROBE_AFTER:
                self.hi = max(self.hi, self.rate * self.SETTLED)  # the limit may have moved
                self._step(min(self.rate * 1.03, self.ceiling), now)
            return
        # Towards hi, a third of the way (in ratio): a step that holds gains
        # little, one refused costs a pause.
        toward = self.rate ** (2 / 3) * self.hi ** (1 / 3) if math.isfinite(self.hi) else math.inf
        self._step(min(self.rate * (1 + self._step_up), toward, self.ceiling), now)
        self._step_up = min(1.0, 2 * self._step_up)

    def _prove(self, until: float) -> None:
        """Raise ``lo`` by the requests accepted since the last change: each
        found a token, and a bucket never holds more than B, so n accepted over
        ``span`` seconds prove L >= (n - B)/span (never above the rate sent at)."""
        accepted, _, span = self._window(until)
        if span > 0:
            self.lo = max(self.lo, min(self.rate, (accepted - self._most_burst()) / span))

    def _burst(self) -> float:
        """The server's burst B in requests: learned, or BURST_GUESS seconds of the rate."""
        return self.burst if self.burst is not None else self.BURST_GUESS * self.rate

    def _most_burst(self) -> float:
        """The most B may be: what proofs take (a B too small proves too much)."""
        return self._burst() if self._burst_exact or self.burst is None else self._burst() + 1.0

    def _step(self, rate: float, now: float) -> None:
        step = rate - self.rate
        # The bucket is full now only if the rate so far was proven below L.
        full = self.lo >= 0.999 * self.rate
        # A rate that is ``step`` above the limit empties a burst of B requests
        # in B/step seconds: hold that long before calling it safe.
        self._hold = self.HOLD_MIN if self._burst_exact else min(
            2.0, max(self.HOLD_MIN, self._burst() / max(step, 1e-6)))
        self._set(rate, now)
        self._full = full
        self._starts.append((now, self.rate))

    def throttled(self, sent: float, retry_after: float | None) -> float:
        """A 429 to a request that left at ``sent``: pause every worker and, once
        per storm, cut the rate. The pause is Retry-After (RFC 9110 §10.2.3),
        capped at ``max_pause``, at least 50 ms; with none, the gate's own: the
        time its estimate of the server's bucket needs to refill (``OWN_PAUSE``
        bounds it). Returns the pause in seconds."""
        now = self._answered(sent, 429)
        if self._refused_since is None:
            self._refused_since, self._asked, self._refusals = now, 0.0, 0
        self._refusals += 1
        self._last_retry_after = retry_after
        self._check_patience(now)
        new_storm = sent >= self.changed_at and now >= self.paused_until
        if sent >= self.changed_at:
            new = self._cut(sent, now)
            pause = self._pause(retry_after, new)
            self._start(new, now, now + pause)
        else:  # an answer of the last storm: honour its Retry-After
            pause = self._pause(retry_after, self.rate)
            if retry_after is not None and now + pause > self.paused_until:
                self.paused_until = now + pause
                self._generation += 1
                if self.schedule is not None:
                    self.schedule.restart(self.rate, self.paused_until)
                # No count runs across a pause: the next storm's starts from its end.
                self.changed_at = max(self.changed_at, self.paused_until)
                self._starts = [(self.paused_until, self.rate)]
        if retry_after is not None:
            self._asked += pause  # a pause the server asked for
        if new_storm:
            self.storms += 1
            self.progress.event(
                "pause", f"server said 429: pausing all workers {pause:.2f}s", seconds=round(pause, 3),
                rate=round(self.rate, 2),
            )
        return pause

    def _pause(self, retry_after: float | None, rate: float) -> float:
        if retry_after is not None:
            return max(0.05, min(self.max_pause, retry_after))
        low, high = self.OWN_PAUSE
        refill = max(1.0, self._burst()) / rate if math.isfinite(rate) else high
        return max(low, min(high, refill))

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

    def _start(self, rate: float, now: float, until: float) -> None:
        """After a storm: every worker waits until ``until``, then ``rate``."""
        self._before_503 = None
        self.paused_until = until
        self._set(rate, now, start=until)
        # Long enough for the server's burst to have paid for no more than
        # 1 - PROVEN of the rate (see success).
        self._hold = self.HOLD_MIN if self._burst_exact else min(
            2.0, max(self.HOLD_MIN, self._burst() / ((1 - self.PROVEN) * self.rate)))
        # A pause as long as the refill of the bucket at the new rate fills it.
        self._full = until - now >= min(0.5, self._burst() / self.rate)
        self._starts = [(until, self.rate)]
        self._step_up = self.FIRST_STEP

    def _cut(self, sent: float, now: float) -> float:
        """The rate after the storm whose first refused request left at ``sent``."""
        since = self._cluster(sent) if self.storms == 0 else None
        accepted, sent_n, elapsed = self._window(sent, since)
        # The pace really in flight: measured over a quarter second or more
        # (fewer is noise), never above the gate's own rate.
        measured = (sent_n - 1) / elapsed if sent_n >= 2 and elapsed >= 0.25 else math.inf
        flight = min(self.rate, measured)
        if accepted == 0 and self.storms == 0:
            # Refused before anything was accepted: the server's bucket was spent
            # before this run (the preflight, another client). No pace was
            # refused yet: pause, and keep the rate.
            return self.rate
        refused = self.rate
        if (self.storms == 0 and math.isfinite(refused) and refused >= self.ceiling
                and (accepted < 3 or elapsed >= self.HELD)):
            # At the rate the person gave, refused at once or after it held:
            # as likely timing noise (a new connection, a busy server) as a
            # limit below it; the next storm tells. Nothing is proven.
            self.hi = refused
            return refused * (1 - self.NOISE_CUT)
        # The pace refused bounds L: soft at the first storm, for the bucket
        # may have been spent before (the preflight, another client); a
        # flood's pace (every request at once) bounds nothing.
        if elapsed >= 0.25 or math.isfinite(flight):
            self.hi = min(self.hi, flight if self.storms else 2 * flight)
        self._learn_burst(accepted, elapsed)
        if self.lo >= self.hi * 0.999:
            return self._noise_cut(refused)
        low, high = self._measure(sent)
        if low is not None:
            self.lo = max(self.lo, min(low, self.hi / 1.001))
        if high is not None and high > self.lo:
            # Measured: settled there (see success: a probe after PROBE_AFTER).
            new = max(self.lo, (self.lo + min(self.hi, high)) / 2 * self.MEASURED)
            self.hi = min(self.hi, high, new * self.SETTLED)
        else:
            new = self._estimate(accepted, elapsed, refused)
        if self.lo > 0 and self.hi <= self.lo * self.SETTLE_GAP:
            # Close enough: another storm costs more than the difference.
            new = max(new, self.lo)
            self.hi = min(self.hi, new * self.SETTLED)
        return new

    def _cluster(self, sent: float) -> float:
        """Where the requests that led to the first storm began: the last run of
        departures less than ``CLUSTER_GAP`` apart (the preflight's look-ups
        one by one, then the first POSTs). Earlier calls, further apart, left
        the bucket time to refill and say nothing of its size."""
        times = sorted(t for t, _ in self._answers if self.changed_at <= t <= sent)
        start = sent
        for t in reversed(times):
            if start - t >= self.CLUSTER_GAP:
                break
            start = t
        return start

    def _noise_cut(self, refused: float) -> float:
        """A rate that held was refused: timing noise (a server without burst
        refuses two requests that arrive closer than 1/L), or the limit fell.
        2 % less the first time, twice that each time after, at most 8 %."""
        cut = min(4 * self.NOISE_CUT, self.NOISE_CUT * 2 ** self._noise)
        self._noise += 1
        self.lo = self.hi = min(self.hi, refused) * (1 - cut)
        return self.lo

    def _measure(self, sent: float) -> tuple[float | None, float | None]:
        """L from the count since each time the bucket was or may have been
        full (the pause's end, each step up), B known: n accepted in T seconds
        before the refusal at ``sent`` prove L >= (n - B)/T (see _prove); from a
        full bucket at a pace above L all the while, n <= B + L*T < n + 1 also
        bounds L above. A start where the bucket was not full, or a pace below
        L after it, gives a lower count: the start with the highest is the one
        that measures. (low, high); either None when no start is
        ``MEASURE_MIN`` seconds back."""
        if self.burst is None or not self._starts:
            return None, None
        lows: list[float] = []
        highs: list[float] = []
        for start, rate in self._starts:
            # From the first request that left after the start (a full bucket
            # stays full, wasting its refill, until then) to the refused one;
            # every one that left before it was accepted, answered yet or not.
            accepted, span = self._departed(start, sent)
            if span < self.MEASURE_MIN:
                continue
            lows.append((accepted - self._most_burst()) / span)
            # +2: the refusal may come a request late (arrival order, a token
            # that was almost there). Only a pace above L all the while (every
            # rate since was this one or more) leaves no refill unspent.
            high = (accepted + 2 - self.burst) / span
            if rate >= high and self._full_since_pause():
                highs.append(high)
        low = max(lows, default=0.0)
        return (low if low > 0 else None), min(highs, default=None)

    def _departed(self, since: float, until: float) -> tuple[int, float]:
        """Departures from ``since`` to before ``until``: (how many, seconds
        from the first of them to ``until``)."""
        times = [t for t in self._departures if since <= t < until]
        return len(times), (until - times[0] if times else 0.0)

    def _full_since_pause(self) -> bool:
        return bool(self._starts) and (self._full or len(self._starts) > 1)

    def _learn_burst(self, accepted: int, elapsed: float) -> None:
        """B from a storm: a flood (every request at once) shows it; otherwise,
        from a full bucket, B + L*elapsed < accepted + 1 with L >= lo, and a
        bucket holds whole requests: B <= ceil(accepted + 1 - lo*elapsed) - 1."""
        if elapsed <= 0.0:
            if self.burst is None or (self._full and not self._burst_exact):
                self.burst = max(1.0, accepted)
                self._burst_exact = self._full
            return
        if self.burst is not None and not self._full:
            return
        if self.burst is None and elapsed >= self.HELD:
            return  # refused after holding: timing noise, or any burst at all
        # The first storm: L is about what _estimate makes of it.
        rate = self.lo if self.burst is not None else max(self.lo, self._guess(accepted, elapsed))
        bound = max(1.0, math.ceil(accepted + 1 - rate * elapsed) - 1.0)
        self.burst = bound if self.burst is None else min(self.burst, bound)
        # From a bucket known full, the bound is sure: B is no more.
        self._burst_exact = self._burst_exact or self._full

    def _estimate(self, accepted: int, elapsed: float, refused: float) -> float:
        """The rate after a storm that could not measure L: ``accepted``
        requests went through in the ``elapsed`` seconds from the last change
        to the refused one. The server's burst unknown: BURST_GUESS seconds
        of its limit."""
        new = max(self.lo, self._guess(accepted, elapsed))
        if elapsed >= self.HELD and accepted >= 3:
            # Refused after it held a while: most likely timing noise near the
            # limit (what a refusal within the first requests cannot be).
            new = max(new, refused * (1 - self.NOISE_CUT))
        if self.storms == 0 and self.hi < 2 * new:
            # The pace refused was little above what got through: a limit near
            # it (what got through is short of it by the bucket the preflight spent).
            new = max(new, self.hi * self.MARGIN * self.PROVEN)
        if math.isfinite(self.hi):
            # Two answers or fewer say more about a burst than about a pace.
            floor = self.hi * self.TINY_BURST_CUT if accepted < 3 else self.hi / 64
            new = min(self.hi * self.MARGIN, max(floor, new))
            if self.lo > 0:
                new = min(new, self.lo ** (2 / 3) * self.hi ** (1 / 3))  # as success steps
        return new

    def _guess(self, accepted: int, elapsed: float) -> float:
        """L guessed from one storm, the server's burst unknown: BURST_GUESS
        seconds of its limit, less a margin."""
        return max(accepted, 1) / (elapsed + self.BURST_GUESS) * self.MARGIN

    def _share_503(self, now: float) -> float:
        recent = [status for sent, status in self._answers if sent >= now - self.WINDOW]
        return recent.count(503) / len(recent) if recent else 0.0

    def unavailable(self, sent: float) -> None:
        """A 503 to a request that left at ``sent``. When 503s are a fifth of the
        answers of the last ``WINDOW`` seconds or more, the server is struggling:
        the rate drops by a fifth (once per ``WINDOW``), and goes back up once
        the share is under a fifth again."""
        now = self._answered(sent, 503)
        if not math.isfinite(self.rate) or sent < self.changed_at or now - self.changed_at < self.WINDOW:
            return
        if self._share_503(now) < 0.2:
            return
        if self._before_503 is None:
            self._before_503 = self.rate
        self._hold = self.WINDOW
        self._set(self.rate * 0.8, now)
