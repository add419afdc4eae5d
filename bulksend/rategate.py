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
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from bulksend.progress import Progress

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

__all__ = ["Clock", "RateGate", "Schedule", "Sleep"]


class Schedule:
    """When the next request may leave, at ``rate`` requests per second.

    GCRA, virtual scheduling: ``next_at`` is the theoretical time of the next
    departure and each departure moves it on by ``1/rate``. A departure at most
    ``slack`` seconds later than its slot (a late timer, a busy event loop)
    keeps the schedule: the next slot is still one interval after the missed
    one, so a schedule at R really sends R a second. A departure later than
    that follows an idle time, which banks nothing: the next is a whole
    interval later, so after a pause or a quiet moment (the preflight's calls,
    then the check pass) requests never leave two at once, which a server that
    allows no burst refuses. ``slack`` 0 spaces every departure at least
    ``1/rate`` apart.

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
        self.next_at = self._after(slot, now) + self.interval
        return True

    def _after(self, slot: float, now: float) -> float:
        """The slot a departure at ``now`` (>= slot) counts as: its own when it
        is at most ``slack`` late, else now (an idle schedule banks nothing)."""
        return slot if now - slot <= self.slack else now

    def reserve(self, now: float) -> float:
        """Claim the next free departure and return its time (``now`` at the earliest).

        A claim made before :meth:`restart` is void: its holder must reserve again."""
        slot = self.next_at if self.next_at > now else self._after(self.next_at, now)
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

    With ``--rate`` set, the run's first departures leave at 0.92 of it (the
    warm-up, see _warm_up), and a storm at 0.8 of --rate or more that more
    answers preceded than a server far below --rate allows is timing noise: a
    cut of a tenth (see _noise). Otherwise the first storm with nothing held
    yet cuts to an estimate of L from the answers: the requests accepted since
    sending started or resumed, over that time plus a 0.1 s burst the server
    may have had in store. Later storms go back to ``lo``. While hi is more
    than 5 % above lo, each rate that holds is followed by a step towards hi
    (at most x1.5, geometric middle of lo and hi), held for a time that is
    shorter the larger the step (a large overshoot empties a server's burst
    quickly). Settled, the gate stays at lo and tries 3 % more every
    ``PROBE_AFTER`` seconds, so over a long run it finds a raised limit.

    Only answers to requests sent after the last change count, so the burst of
    429s in flight when the gate cuts cuts it once, and that storm logs one pause
    line. 503s slow the gate only when they are a fifth of recent answers or
    more, and it goes back to the rate it had as soon as they fall below that.
    """

    BURST_GUESS = 0.1  # seconds of requests a server's bucket may hold
    # No catch-up: every departure at least 1/rate after the one before (a
    # server without burst refuses anything sooner). Late timers do not slow
    # the gate: a parked waiter's slot was reserved one interval after the
    # previous one before it slept; only a gate nobody waits on runs late.
    CATCH_UP = 0.0
    SETTLED = 1.05  # hi/rate at which the search stops
    STEP = 2.0  # largest step up from a rate that held
    HOLD_MIN = 0.05  # shortest hold, seconds
    PROOF_MIN = 4  # answers at a rate before it can be proven (timing noise)
    HELD = 0.4  # seconds at a rate before a 429 that make it a rate that held
    PROBE_AFTER = 60.0  # seconds settled before trying a little more
    RECHECK = 0.05  # longest single sleep of a parked waiter (sees rate changes)
    MIN_RATE = 0.05
    WINDOW = 2.0  # seconds of answers the 503 share and paces look at
    MARGIN = 0.97  # of an estimated limit, for the next rate
    JITTER_CUT = 0.9  # of a rate that held and then was refused
    SETTLE_GAP = 1.25  # hi/lo below which a storm ends the search
    TINY_BURST_CUT = 0.14  # of the pace refused within its first 2 requests (the first storm)
    TINY_BURST_AGAIN = 0.5  # of a rate refused within its first 2 requests later
    IDLE = 0.02  # seconds without a departure that let the server's bucket refill
    PROVEN = 0.97  # lo/rate at which a rate has held and the next step may come
    GALLOP = 0.05  # the first step above a rate that held since the last storm: +5 %
    TINY_GROWTH = 1.0  # the same with a burst of 1 or 2 (steps are proven in a few answers)
    GROWTH = 2.0  # each later step that holds is this many times larger (exponential search)
    STORM_COST = 1.5  # seconds a storm costs: a Retry-After pause of >= 1 s, then the refill
    WARM = 0.92  # of --rate, the pace of the run's first departures (see _warm_up)
    WARM_MIN = 8  # departures at that pace, at least...
    WARM_SECONDS = 0.04  # ...or this many seconds of --rate, if more
    NOISE_PACE = 0.8  # of --rate: a storm at this pace or more may be timing noise (see _noise)

    def __init__(
        self,
        ceiling: float | None,
        *,
        progress: Progress,
        max_pause: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.ceiling = ceiling if ceiling and ceiling > 0 else math.inf
        self.rate = self.ceiling
        self.progress = progress
        self.max_pause = max_pause
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
        # Accepted answers to requests sent since changed_at: how many, and
        # the first and last of their departures (the exact proof, see _proof).
        self._n_ok = 0
        self._first_ok = math.inf
        self._last_ok = -math.inf
        self._climbs = 0  # steps up that held since the last storm
        self._hold = self.HOLD_MIN
        # The server's burst B, in requests: an upper estimate once a storm
        # showed it (see _cut), else None (BURST_GUESS seconds of the rate).
        self.burst: float | None = None
        # Whether the server's bucket is believed full at changed_at: at the
        # start (the run's first call) and after a pause of half a second.
        self._full = True
        self._before_503: float | None = None  # the rate a 503 cut came from
        self._warm_left = 0  # departures left at WARM of --rate (see _warm_up)
        # Recent answers, (sent, status) pairs, status 200 for any 2xx; bounded,
        # a run without trouble would otherwise keep one per row.
        self._answers: deque[tuple[float, int]] = deque(maxlen=4096)
        self._reported = self.rate
        self.schedule: Schedule | None = None
        if math.isfinite(self.rate):
            # The first departure is 1/rate after the gate opens: a request made
            # just before (the preflight, the check) may have taken the server's
            # last token, and a server with no burst refuses anything sooner.
            self._warm_left = max(self.WARM_MIN, math.ceil(self.WARM_SECONDS * self.rate))
            self.schedule = Schedule(self.rate * self.WARM, slack=self.CATCH_UP, now=now)
            self.schedule.restart(self.rate * self.WARM, now)

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
            if self._warm_left:
                self._warm_up()
            return now
        return None

    async def acquire(self) -> float:
        """Wait for a slot; returns the time (on ``clock``) the request may leave.

        A parked waiter wakes at least every ``RECHECK`` seconds, so a rate
        raised while it waits takes effect at once; a change voids its claim."""
        while True:
            now = self.clock()
            if now < self.paused_until:
                await self.sleep(self.paused_until - now)
                continue
            schedule = self.schedule
            if schedule is None:
                return now
            generation = self._generation
            slot = schedule.reserve(now)
            if self._warm_left:
                self._warm_up()
            while slot > now and generation == self._generation:
                await self.sleep(min(slot - now, self.RECHECK))
                now = self.clock()
            if generation == self._generation and now >= self.paused_until:
                self._granted += 1
                return now

    def _warm_up(self) -> None:
        """One departure of the warm-up: the run's first ``WARM_MIN``
        departures (or ``WARM_SECONDS`` of --rate, if more) leave at ``WARM``
        of --rate, then the schedule goes on at --rate itself. Counted as they
        are claimed: waiters parked on warm-up slots do not make it longer.

        A server whose limit is --rate and that allows no burst refuses a
        request that arrives a hair early, and timing is noisiest in the first
        requests (new connections, the preflight's look-ups): one 429 there
        looks like a server far below --rate (see _noise), and gate3 started
        again at an eighth of --rate (2.19x the ideal for 1,000 rows at 50/s,
        burst 1, on this machine). 8 % of room makes it rarer. Costs
        ``WARM_MIN`` x 0.087/--rate s (3.5 ms at 200/s), and no more than
        3.5 ms at higher rates."""
        self._warm_left -= 1
        if not self._warm_left and self.schedule is not None:
            self.schedule.interval = 1.0 / self.rate  # from the slot after this one

    def _pace(self) -> float:
        """The pace the schedule sends at (the rate, or WARM of it in the warm-up)."""
        return math.inf if self.schedule is None else self.schedule.rate

    def _set(self, rate: float, now: float, *, start: float | None = None) -> None:
        """The rate from ``start`` (default now) on; resets what measures a hold."""
        rate = max(self.MIN_RATE, min(self.ceiling, rate))
        start = now if start is None else start
        self.rate = rate
        self.changed_at = start
        self._granted = 0
        self._n_ok = 0
        self._first_ok, self._last_ok = math.inf, -math.inf
        self._generation += 1
        self._full = False
        self._warm_left = 0
        if math.isinf(rate):
            self.schedule = None
        elif self.schedule is None:
            self.schedule = Schedule(rate, slack=self.CATCH_UP, now=start)
        else:
            self.schedule.restart(rate, start)
        reported = self._reported
        if math.isinf(reported) != math.isinf(rate) or abs(rate - reported) > 0.01 * reported:
            self._reported = rate
            self.progress.rate(rate)

    # -- answers ------------------------------------------------------------

    def _window(self, until: float) -> tuple[int, int, float]:
        """The answers to requests sent from the last change, or from the last
        idle moment after it, to ``until``: (accepted, all, seconds from the
        first of them to ``until``).

        An idle moment (no departure for ``IDLE`` s, or two intervals of the
        rate; the check pass after the preflight's calls) lets the server's
        bucket refill, so what went through before it says nothing about the
        pace that emptied the bucket after it."""
        sents = sorted((sent, status) for sent, status in self._answers if self.changed_at <= sent <= until)
        if not sents:
            return 0, 0, 0.0
        idle = max(self.IDLE, 2.0 / self.rate)
        first = 0
        for i in range(1, len(sents)):
            if sents[i][0] - sents[i - 1][0] > idle:
                first = i
        sents = sents[first:]
        accepted = sum(1 for _, status in sents if status == 200)
        return accepted, len(sents), until - sents[0][0]

    def success(self, sent: float) -> None:
        """A 2xx to a request that left at ``sent``: a rate that holds moves up."""
        self._answers.append((sent, 200))
        if sent < self.changed_at:
            return
        if sent - self._last_ok > max(self.IDLE, 2.0 / self.rate):
            # After an idle moment (a refilled bucket) the proof starts again.
            self._n_ok, self._first_ok = 0, sent
        self._n_ok += 1
        self._first_ok = min(self._first_ok, sent)
        self._last_ok = max(self._last_ok, sent)
        if self.rate >= self.ceiling:
            return
        now = self.clock()
        if now - self.changed_at < self._hold:
            return
        if self._before_503 is not None:
            if self._share_503(now) < 0.2:
                back, self._before_503 = self._before_503, None
                self._set(back, now)
            return
        if self._n_ok < self.PROOF_MIN:
            return
        self.lo = max(self.lo, self._proof())
        if self.lo < self.rate * self.PROVEN:
            return  # not proven yet: the server's burst may still be paying for it
        self._climb(now)

    def _proof(self) -> float:
        """What the answers since the last change prove: L >= (n - B)/span.

        From the first accepted departure to the last, ``span`` seconds with
        no idle moment, the server let n requests through with no 429; its
        bucket held at most B at the start and refilled at L: n <= B + L*span. Exact with B = 1 (two
        requests 1/r apart prove r); never above the rate itself."""
        span = self._last_ok - self._first_ok
        if span <= 0:
            return 0.0
        return min(self.rate, (self._n_ok - self._burst()) / span)

    def _climb(self, now: float) -> None:
        """The step after a proven rate: none when within ``SETTLED`` of hi (but
        3 % every ``PROBE_AFTER`` s); between it and a hi within ``SETTLE_GAP``,
        the geometric middle once the time at this rate has cost as much as a
        storm (ski rental: a probe there gains little and may cost a pause);
        else an exponential search, +5 %, +10 %, +20 %... (a storm's estimate
        is near the limit more often than far from it), never past the middle
        of rate and hi."""
        rate, hi = self.rate, self.hi
        held = now - self.changed_at
        if hi <= rate * self.SETTLED:
            if held >= self.PROBE_AFTER:
                self.hi = max(hi, rate * self.SETTLED)  # the limit may have moved
                self._step(min(rate * 1.03, self.ceiling), now)
            return
        middle = math.sqrt(rate * hi)
        if hi <= rate * self.SETTLE_GAP:
            if held * (middle / rate - 1.0) < self.STORM_COST:
                return
            target = middle
        else:
            # With a burst of 1 or 2 a step is proven in a few requests: small
            # steps cost little time, and the step that is refused is small.
            growth = self.TINY_GROWTH if self._burst() <= 2.0 else self.GROWTH
            target = min(middle, rate * min(self.STEP, 1.0 + self.GALLOP * growth**self._climbs))
        self._climbs += 1
        self._step(min(target, self.ceiling), now)

    def _burst(self) -> float:
        """The server's burst B in requests: learned (an upper estimate), or
        BURST_GUESS seconds of the current rate."""
        return self.burst if self.burst is not None else self.BURST_GUESS * self.rate

    def _step(self, rate: float, now: float) -> None:
        # The proof (see _proof) says when the new rate held.
        self._hold = self.HOLD_MIN
        self._set(rate, now)

    def throttled(self, sent: float, retry_after: float | None) -> float:
        """A 429 to a request that left at ``sent``: pause every worker for
        Retry-After (None: 1 s; capped at ``max_pause``, at least 50 ms) and, once
        per storm, cut the rate. Returns the pause in seconds."""
        now = self.clock()
        pause = max(0.05, min(self.max_pause, retry_after if retry_after is not None else 1.0))
        self._answers.append((sent, 429))
        new_storm = sent >= self.changed_at and now >= self.paused_until
        until = max(self.paused_until, now + pause)
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

    def _cut(self, sent: float, now: float, until: float) -> None:
        """The cut of one storm; the new rate starts when the pause ends."""
        accepted, sent_n, elapsed = self._window(sent)
        # The pace really in flight: measured over a quarter second or more
        # (fewer is noise), never above the gate's own rate.
        measured = (sent_n - 1) / elapsed if sent_n >= 2 and elapsed > 0 else math.inf
        pace = self._pace()
        flight = min(self.rate, measured) if elapsed >= 0.25 or math.isinf(pace) else pace
        self._before_503 = None
        # Refused before anything was accepted: the server's bucket was spent
        # before this run (the preflight, another client). No pace was refused
        # yet: pause, and keep the rate.
        fresh = accepted == 0 and self.storms == 0
        noise = self._noise(accepted, self._pace())
        new = self.rate if fresh else self._estimate(accepted, elapsed, flight, noise=noise)
        self.paused_until = until
        self._set(new, now, start=until)
        # Long enough for the server's burst to have paid for no more than
        # 1 - PROVEN of the rate (see success).
        self._hold = self.HOLD_MIN
        self._climbs = 0
        self._full = until - now >= 0.5  # a pause refills any bucket of half a second

    def _noise(self, accepted: int, pace: float) -> bool:
        """Whether a refusal at ``pace`` after ``accepted`` answers from a full
        bucket is most likely timing noise rather than a pace above the limit.

        A server whose limit is --rate and that allows no burst refuses a
        request that arrives a hair early: measured here at 50/s, burst 1, one
        429 in the first requests (new connections, a loaded machine), or one
        every few seconds even at 0.9 of it. A server far below --rate refuses
        sooner: from a full bucket of B at a pace p above its limit L it lets
        n <= B/(1 - L/p) through; with B = ``BURST_GUESS`` s of L and p = 0.92
        of 5 L (the warm-up of a 5x overestimate) that is 0.028 p. So noise is:
        --rate set, a pace of at least ``NOISE_PACE`` of it, a window that
        began with a full bucket (the start, a pause), and more accepted than
        such a server lets through, 3 at least (a server with a burst of 1 or
        2 at 5x refuses the 2nd or the 3rd). A 2x overestimate with a burst of
        0.1 s lets 0.12 p through and is taken for noise: at most two cuts of a
        tenth, then the pace is below ``NOISE_PACE`` and storms are read as
        usual."""
        return (math.isfinite(self.ceiling) and self._full and pace >= self.NOISE_PACE * self.ceiling
                and accepted >= max(3.0, self.WARM_SECONDS * pace + 1.0))

    def _estimate(self, accepted: int, elapsed: float, flight: float, *, noise: bool = False) -> float:
        """The rate after a storm: ``accepted`` requests went through in the
        ``elapsed`` seconds from the last change to the refused one, at the
        pace ``flight``. Moves hi, lo and the burst; returns the new rate.

        From a full bucket of B, a limit R lets B + R*elapsed requests through
        before the first refusal: accepted + 1 > B + R*elapsed >= accepted.
        With B known, that gives R; with R >= lo, it bounds B.

        ``noise``: timing noise (see _noise): ``JITTER_CUT`` of the pace
        (the schedule's, or the one measured in flight if faster: answers
        reported for requests the schedule did not time), and nothing learned
        of the burst."""
        refused = self._pace()
        self.hi = min(self.hi, flight)
        if self.lo >= self.hi:
            # A rate that held was refused: timing noise (a server without
            # burst refuses any two requests that arrive closer than 1/R), or
            # the limit fell. Leave room for the noise.
            self.lo = self.hi = min(self.hi, refused)
            self.lo *= self.JITTER_CUT
            return self.lo
        if noise:
            return max(refused, flight) * self.JITTER_CUT
        if self.burst is not None and accepted > self.burst and elapsed > 0:
            # The lower end: R >= (accepted - B)/elapsed (see _proof).
            estimate = (accepted - self.burst) / elapsed
        else:
            # The server's burst unknown: BURST_GUESS seconds of its limit.
            estimate = max(accepted, 1) / (elapsed + self.BURST_GUESS)
        if self._full:
            self._bound_burst(accepted, elapsed, refused)
        if self.lo > 0 and self.hi <= self.lo * self.SETTLE_GAP:
            # Close enough: another storm costs more than the difference
            # (but see _climb: a long run makes a probe worth it).
            return self.lo
        new = max(self.lo, estimate * self.MARGIN)
        if elapsed >= self.HELD:
            # Refused after it held a while: most likely timing noise near the
            # limit (what a refusal within the first requests cannot be).
            new = max(new, refused * self.JITTER_CUT)
        if math.isfinite(self.hi):
            # Two answers or fewer say more about a burst than about a pace.
            tiny = self.TINY_BURST_CUT if self.storms == 0 else self.TINY_BURST_AGAIN
            floor = self.hi * tiny if accepted < 3 else self.hi / 64
            new = min(self.hi * self.MARGIN, max(floor, new))
        return new

    def _bound_burst(self, accepted: int, elapsed: float, refused: float) -> None:
        """What a storm says of the burst B when the window began with a full
        bucket (the run's start, the end of a pause): B + L*elapsed requests
        went through, give or take one. A window that began with the bucket
        part spent bounds only what it held then, not B."""
        if elapsed <= 0:
            # A flood (every request at once): the bucket let ``accepted`` through.
            self.burst = max(1.0, accepted) if self.burst is None else self.burst
            return
        # B + L*elapsed < accepted + 1 with L > lo >= 0, and a bucket holds
        # whole requests: B <= ceil(accepted + 1 - lo*elapsed) - 1.
        bound = max(1.0, math.ceil(accepted + 1 - self.lo * elapsed) - 1.0)
        if self.burst is not None:
            self.burst = min(self.burst, bound)
        elif bound <= max(2.0, refused):
            self.burst = bound  # else a bucket of more than a second: no news

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
