"""The rate gate's own bucket and how it learns a limit (issue 18), in virtual
time: an injected clock and sleep, nothing sleeps for real.

The server is bench/gate_sim.py's model of the sandbox's token bucket (Retry-After
max(1, ceil(wait)) s), with workers that each loop acquire -> request -> answer."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from bulksend.progress import RecordingProgress
from bulksend.rategate import RateGate, Schedule

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from gate_sim import VirtualTime, simulate


def test_schedule_spaces_departures_and_catches_up_only_its_slack() -> None:
    s = Schedule(100.0, slack=0.0, now=0.0)
    assert s.take(0.0)
    assert not s.take(0.005)  # 10 ms apart at 100/s
    assert s.take(0.012)
    assert not s.take(0.021)  # a late departure is not made up without slack
    assert s.take(0.022)
    # With 20 ms of slack, a departure up to 20 ms late keeps the schedule...
    s = Schedule(100.0, slack=0.02, now=0.0)
    assert s.take(0.0) and s.take(0.025)  # 15 ms late
    assert s.take(0.026)  # ...the next was due at 0.02, not 0.035
    # ...but an idle schedule banks nothing: after a quiet moment (the
    # preflight's calls, then the check pass) one request leaves, not
    # 1 + slack*rate at once (a server without burst refused the second).
    assert [s.take(5.0) for _ in range(3)] == [True, False, False]
    assert s.take(5.01)
    # reserve() hands out consecutive slots; restart() voids them.
    s = Schedule(10.0, slack=0.0, now=0.0)
    assert [s.reserve(0.0) for _ in range(3)] == [0.0, 0.1, pytest.approx(0.2)]
    s.restart(100.0, at=0.05)
    assert s.reserve(0.05) == pytest.approx(0.06)


def test_a_parked_waiter_leaves_at_once_when_the_rate_is_raised() -> None:
    # aiolimiter kept a waiter parked at 0.2/s for 5 s after its rate was set
    # to 100/s (the gate wrote its private attributes; the timer was not re-armed).
    vt = VirtualTime()
    gate = RateGate(0.2, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    left: list[float] = []

    async def two() -> None:
        left.append(await gate.acquire())
        left.append(await gate.acquire())

    start = vt.now
    vt.spawn(two())
    # The first leaves one interval of the warm-up's pace after the gate opens.
    first = 1.0 / (gate.WARM * 0.2)
    vt.run(until=start + first + 0.1)
    assert len(left) == 1
    gate.ceiling = 100.0
    gate._set(100.0, vt.now)  # what a recovery does
    vt.run()
    assert left[1] - start < first + 0.2


def test_rate_none_finds_the_limit_within_a_few_storms() -> None:
    # Issue 18: the first 429 set the rate from the start-up pace, a quarter of
    # it, 0.38/s, and it crept up by 0.02 %/s: 149 rows in 100 s instead of ~8 s.
    r = simulate(limit=50.0, burst=5, ceiling=None, rows=1000)
    assert r.ratio <= 1.5, r
    assert r.storms <= 6
    assert 42.0 <= r.rate <= 52.5
    assert r.refused <= 0.05 * 1000


def test_a_ceiling_five_times_the_limit_costs_few_storms() -> None:
    r = simulate(limit=50.0, burst=5, ceiling=250.0, rows=1000)
    assert r.ratio <= 1.45, r
    assert r.storms <= 8
    assert 42.0 <= r.rate <= 52.5


def test_503s_at_five_percent_do_not_slow_the_gate() -> None:
    # Issue 18: each 503 cut the rate by a fifth and it never came back: from
    # 25/s to about 1/s, 448 of 600 rows in 90 s.
    r = simulate(limit=None, burst=1, ceiling=50.0, rows=600, fail_503=0.05)
    assert r.rate == 50.0
    assert r.ratio <= 1.15, r


def test_a_burst_of_503s_slows_the_gate_and_it_comes_back() -> None:
    vt = VirtualTime()
    gate = RateGate(50.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    statuses: list[int] = []

    def run(seconds: float, status_of: int) -> None:
        end = vt.now + seconds
        while vt.now < end:
            sent = gate.open_now()
            if sent is not None:
                statuses.append(status_of)
                if status_of == 503 and len(statuses) % 2:
                    gate.unavailable(sent)
                else:
                    gate.success(sent)
            vt.now += 0.001

    run(3.0, 200)
    run(4.0, 503)  # half the answers 503
    assert gate.rate < 50.0
    run(5.0, 200)
    assert gate.rate == 50.0


def test_one_pause_line_per_storm() -> None:
    # Issue 18: "one pause per storm" logged 6-30 pause lines within a second.
    # 32 workers with 50 ms round trips: many requests in flight at each 429.
    r = simulate(limit=50.0, burst=5, ceiling=250.0, rows=1000, concurrency=32, rtt=0.05)
    assert r.refused > r.storms  # storms of several 429s...
    assert r.pauses == r.storms  # ...one line each


def test_a_cut_never_comes_from_the_start_up_pace() -> None:
    vt = VirtualTime()
    gate = RateGate(None, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    vt.now += 10.0  # start-up, preflight: nothing sent through the gate
    for _ in range(100):  # then 1000/s for a tenth of a second
        sent = gate.open_now()
        assert sent is not None
        gate.success(sent)
        vt.now += 0.001
    gate.throttled(vt.now, retry_after=1.0)
    # Accepted 100 in 0.1 s (+ a burst): the limit is hundreds a second, not
    # the 50/s "pace" of the last 2 s, nor a quarter of it.
    assert gate.rate >= 250.0


def test_with_the_limit_as_rate_and_a_burst_there_is_no_storm() -> None:
    for limit in (5.0, 20.0, 50.0, 200.0):
        r = simulate(limit=limit, burst=max(1, int(limit / 10)), ceiling=limit, rows=500,
                     preflight=0)
        assert r.storms == 0, (limit, r)
        assert r.ratio <= 1.02, (limit, r)


def test_the_first_departure_waits_one_interval() -> None:
    # The preflight's calls come just before the gate opens: against a server
    # with no burst, a first POST at once was refused (a whole 1 s pause).
    vt = VirtualTime()
    gate = RateGate(50.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    assert gate.open_now() is None
    vt.now += 0.02  # (the warm-up's pace is a little slower, see below)
    assert gate.open_now() is None
    vt.now += 1.0 / (gate.WARM * 50.0) - 0.02
    assert gate.open_now() == vt.now
    for limit in (20.0, 50.0, 200.0):
        r = simulate(limit=limit, burst=1, ceiling=limit, rows=500, gap=0.0, gated=False)
        assert r.storms == 0, (limit, r)


def test_a_rate_that_held_and_then_was_refused_leaves_room_for_noise() -> None:
    vt = VirtualTime()
    gate = RateGate(100.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    sent_at = _send_for(vt, gate, 2.0)  # two seconds accepted at the ceiling
    gate.throttled(sent_at[-1] + 0.01, retry_after=1.0)
    assert 90.0 <= gate.rate < 97.0  # at least 0.9x, and below what was refused


def _send_for(vt: VirtualTime, gate: RateGate, seconds: float) -> list[float]:
    """Send whenever the gate opens (checked every ms) for ``seconds``, every
    answer accepted; returns the departures."""
    sent_at: list[float] = []
    end = vt.now + seconds
    while vt.now < end:
        sent = gate.open_now()
        if sent is not None:
            gate.success(sent)
            sent_at.append(sent)
        vt.now += 0.001
    return sent_at


def test_the_first_departures_leave_a_little_slower_than_the_rate() -> None:
    # The warm-up: WARM_MIN departures at WARM of --rate, then --rate itself.
    vt = VirtualTime()
    gate = RateGate(50.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    sent_at = _send_for(vt, gate, 1.0)
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    warm = gate.WARM_MIN
    assert all(gap >= 1.0 / (gate.WARM * 50.0) - 1e-9 for gap in gaps[: warm - 1])
    assert all(0.02 - 1e-9 <= gap < 0.021 for gap in gaps[warm:])
    assert gate.rate == 50.0


def test_one_refusal_at_the_rate_after_a_clean_start_cuts_a_tenth() -> None:
    # Measured on this machine (50/s, burst 1, --rate 50, 1,000 rows): one 429
    # from loopback timing noise in the first requests (one arriving a hair
    # less than 1/50 s after the one before) looked like a server at a fifth of
    # --rate; the gate started again at an eighth of the pace and climbed in
    # +5 % steps: 2.19x the ideal, where main took 1.50x. The warm-up went
    # through, so the server is at --rate or near it: 0.9x, no lower.
    vt = VirtualTime()
    gate = RateGate(50.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    sent_at = _send_for(vt, gate, 0.25)  # the warm-up, then a few at 50/s
    assert len(sent_at) >= 11  # the warm-up's 8, then 50/s
    vt.now = sent_at[-1] + 0.02
    sent = gate.open_now()
    assert sent is not None
    gate.throttled(sent, retry_after=1.0)
    assert 45.0 <= gate.rate < 50.0
    # The same noise in the model: 2 ms of random delay on the way to a server
    # of 50/s with no burst (1.51x the ideal before).
    r = simulate(limit=50.0, burst=1, ceiling=50.0, rows=1000, jitter=0.002)
    assert r.storms <= 1
    assert r.rate >= 45.0
    assert r.ratio <= 1.2, r


def test_noise_cuts_a_tenth_down_to_eight_tenths_of_the_rate_then_answers_count() -> None:
    # Measured here at 50/s, burst 1, --rate 50: 429s every few seconds even at
    # 0.9 of the limit (a loaded machine). Each cuts a tenth while the pace is
    # 0.8 of --rate or more; below, a storm after a few answers is read as a
    # server below the pace (estimate from the answers).
    vt = VirtualTime()
    gate = RateGate(100.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    rates = []
    for _ in range(4):
        sent_at = _send_for(vt, gate, 0.3)
        gate.throttled(sent_at[-1] + 0.001, retry_after=1.0)
        rates.append(gate.rate)
        vt.now = gate.paused_until
    assert rates[:3] == [pytest.approx(90.0), pytest.approx(81.0), pytest.approx(72.9)]
    assert rates[3] < 0.9 * 72.9
    # A refusal after two answers at --rate is no noise (a server at a fifth
    # of it with a burst of 1 or 2 refuses that soon).
    gate = RateGate(100.0, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    sent_at = _send_for(vt, gate, 0.025)
    assert len(sent_at) == 2
    gate.throttled(sent_at[-1] + 0.01, retry_after=1.0)
    assert gate.rate < 20.0


def test_a_flood_shows_the_burst_and_the_next_storm_the_limit() -> None:
    # --rate none against 50/s with a burst of 5: the flood's storm says B;
    # the storm of the first step above the limit then gives L itself.
    r = simulate(limit=50.0, burst=5, ceiling=None, rows=5000)
    assert r.gate.burst is not None and 4.0 <= r.gate.burst <= 6.0
    assert 45.0 <= r.rate <= 50.5
    assert r.storms <= 5


def test_a_server_without_burst_is_found_from_five_times_its_limit() -> None:
    # Refused within the first two requests: the burst is 1, and the storm says
    # only "below this pace". The gate starts at an eighth of it and climbs in
    # +5 % steps, each proven by a few answers (with B = 1, two requests 1/r
    # apart prove r): one more storm, at the step that crosses the limit.
    r = simulate(limit=50.0, burst=1, ceiling=250.0, rows=2500)  # 50 s: no 60 s probe
    assert r.gate.burst == 1.0
    assert 47.5 <= r.rate <= 50.0
    assert r.storms == 2
    assert r.ratio <= 1.07, r
    r = simulate(limit=50.0, burst=1, ceiling=250.0, rows=5000)
    assert r.ratio <= 1.05, r


def test_one_storm_at_five_times_the_limit_lands_near_it_and_one_more_settles() -> None:
    # Round 2 probed twice the estimate after the first storm and needed 4-5
    # storms where the information needs 2 (50/s, burst 5, --rate 250: 1.22 of
    # the ideal in this model, 4 storms).
    r = simulate(limit=50.0, burst=5, ceiling=250.0, rows=1000)
    assert isinstance(r.gate.progress, RecordingProgress)
    rates = r.gate.progress.rates
    assert 45.0 <= rates[0] <= 50.0  # the first storm's estimate: within 10 %
    assert max(rates) <= 1.1 * 50.0  # never a probe far above a limit it saw
    assert r.storms == 2
    assert 48.0 <= r.rate <= 50.0
    assert r.ratio <= 1.13, r


def test_the_exact_proof_proves_a_rate_in_a_few_requests_with_burst_one() -> None:
    vt = VirtualTime()
    gate = RateGate(None, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    gate.burst = 1.0
    gate._set(40.0, vt.now)
    vt.now += 0.05  # the hold
    for _ in range(4):  # four requests 1/40 s apart, all accepted
        sent = gate.open_now()
        assert sent is not None
        gate.success(sent)
        vt.now += 0.025
    # (4 - 1)/(3/40 s) = 40: the limit is at least 40/s, and the gate steps.
    assert gate.lo == pytest.approx(40.0)
    assert gate.rate == pytest.approx(42.0)


def test_no_probe_above_a_tight_bracket_until_it_pays() -> None:
    # A storm bracketed the limit within 25 %: a probe to the middle gains
    # little and may cost a whole pause; the gate waits until the time at its
    # rate has cost as much as a storm (ski rental), then probes once.
    vt = VirtualTime()
    gate = RateGate(None, progress=RecordingProgress(), clock=vt.clock, sleep=vt.sleep)
    gate.burst = 1.0
    gate.lo, gate.hi = 40.0, 48.0
    gate._set(40.0, vt.now)
    rates = []
    for _ in range(40 * 20):  # 20 s at 40/s
        vt.now += 0.025
        sent = gate.open_now()
        if sent is not None:
            gate.success(sent)
        rates.append(gate.rate)
    middle = (40.0 * 48.0) ** 0.5
    # The probe gains middle/40 - 1 = 9.5 %: worth a storm after 1.5/0.095 = 16 s.
    first_probe = next(i for i, rate in enumerate(rates) if rate > 40.0) * 0.025
    assert 15.0 <= first_probe <= 17.0
    assert max(rates) == pytest.approx(middle)


def test_after_a_pause_one_request_leaves_not_a_burst() -> None:
    # With 20 ms of catch-up, the first POSTs after the preflight's calls and
    # the check pass left 1 + 0.02*R at once: a burst-1 server refused them, a
    # whole 1 s pause in every --rate R cell with burst 1 (2.47x the ideal at
    # 200/s, 500 rows, in this model).
    for limit in (20.0, 50.0, 200.0):
        r = simulate(limit=limit, burst=1, ceiling=limit, rows=500)
        assert r.storms == 0, (limit, r)
        assert r.ratio <= 1.03, (limit, r)
