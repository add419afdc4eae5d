"""The rate gate against a simulated server, in virtual time (no sleeping).

    python bench/gate_sim.py                 # the bench grid, gate only
    python bench/gate_sim.py --limit 50 --burst 5 --ceiling 250 --rows 1000 -v

A token-bucket server (the sandbox's: ``limit`` tokens a second, ``burst`` at
most, a 429 with Retry-After = max(1, ceil(wait)) seconds when it is empty)
and ``concurrency`` workers, each looping acquire -> request -> answer with a
fixed round trip, drive :class:`bulksend.collect.rategate.RateGate` through its
injected clock and sleep. Printed: time to send ``rows`` ÷ the ideal
(rows ÷ min(limit, ceiling)), the 429 storms, the 429s and the final rate.
What it leaves out: start-up, the preflight, the results file, the event
loop's own lateness (bench/bench.py measures the whole command).

tests/test_rategate.py uses :func:`simulate` to pin the gate's behaviour.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bulksend.collect.rategate import RateGate
from bulksend.common.progress import RecordingProgress


class _Sleep:
    """An awaitable that asks the runner to resume the coroutine ``seconds`` later."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __await__(self) -> Generator[_Sleep, None, None]:
        yield self


class VirtualTime:
    """A clock, a sleep and a runner for coroutines that only ever await
    :meth:`sleep`: the clock jumps from one wake-up to the next."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._ready: list[tuple[float, int, Coroutine[Any, Any, Any]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await _Sleep(max(0.0, seconds))

    def spawn(self, coro: Coroutine[Any, Any, Any], at: float | None = None) -> None:
        heapq.heappush(self._ready, (self.now if at is None else at, next(self._order), coro))

    def run(self, until: float = math.inf) -> None:
        """Run every spawned coroutine to its end (or the clock to ``until``)."""
        while self._ready and self._ready[0][0] <= until:
            when, _, coro = heapq.heappop(self._ready)
            self.now = max(self.now, when)
            try:
                request = coro.send(None)
            except StopIteration:
                continue
            assert isinstance(request, _Sleep), request
            self.spawn(coro, self.now + request.seconds)


@dataclass
class Server:
    """The sandbox's token bucket (bulksend/sandbox/faults.py ``TokenBucket.take``), plus 503s."""

    limit: float | None
    burst: int
    fail_503: float = 0.0
    retry_after: bool = True  # False: 429 without Retry-After (collect-api.md documents none)
    tokens: float = 0.0
    at: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: {"200": 0, "429": 0, "503": 0})
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def answer(self, now: float) -> tuple[int, float | None]:
        if self.limit is not None:
            tokens = min(float(self.burst), self.tokens + (now - self.at) * self.limit)
            self.at = now
            if tokens < 1.0 - 1e-9:  # float noise is not a request too early
                self.tokens = tokens
                self.counts["429"] += 1
                wait = float(max(1, math.ceil((1.0 - tokens) / self.limit)))
                return 429, wait if self.retry_after else None
            self.tokens = tokens - 1.0
        if self.rng.random() < self.fail_503:
            self.counts["503"] += 1
            return 503, None
        self.counts["200"] += 1
        return 200, None


@dataclass
class Result:
    seconds: float
    ratio: float
    storms: int
    refused: int
    rate: float
    pauses: int
    gate: RateGate
    pause_seconds: float = 0.0  # the pauses' total


def simulate(*, limit: float | None, burst: int, ceiling: float | None, rows: int,
             concurrency: int = 8, rtt: float = 0.002, fail_503: float = 0.0,
             preflight: int = 2, gap: float = 0.05, jitter: float = 0.0, seed: int = 1,
             retry_after: bool = True) -> Result:
    """Send ``rows`` requests through a gate to :class:`Server`; see the module doc.

    ``preflight`` requests reach the server ``gap`` seconds before the gate
    opens (they drain its burst, as bulksend's preflight does; between the two
    come the check pass and the pipeline's start-up). ``jitter``: each request's
    way to the server takes rtt/2 plus up to that many seconds more (random).
    A 503'd row is retried after 0.5 s, as Sender's backoff would."""
    vt = VirtualTime()
    server = Server(limit, burst, fail_503, retry_after=retry_after)
    server.at = vt.now - gap
    for _ in range(preflight):
        server.answer(vt.now - gap)
    progress = RecordingProgress()
    gate = RateGate(ceiling, progress=progress, clock=vt.clock, sleep=vt.sleep)
    rng = random.Random(seed)
    todo = [rows]
    start = vt.now

    async def one_request() -> tuple[int, float, float | None]:
        sent = gate.open_now()
        if sent is None:
            sent = await gate.acquire()
        await vt.sleep(rtt / 2 + rng.random() * jitter)
        status, retry_after = server.answer(vt.now)
        await vt.sleep(rtt / 2)
        return status, sent, retry_after

    async def worker() -> None:
        while todo[0] > 0:
            todo[0] -= 1
            while True:
                status, sent, retry_after = await one_request()
                if status == 200:
                    gate.success(sent)
                    break
                if status == 429:
                    gate.throttled(sent, retry_after)
                    continue
                gate.unavailable(sent)
                await vt.sleep(0.5)

    for _ in range(concurrency):
        vt.spawn(worker())
    vt.run(until=start + 100 * rows)
    seconds = vt.now - start
    best = min(limit or math.inf, ceiling or math.inf)
    ideal = rows / best if math.isfinite(best) else 0.0
    pauses = [fields for kind, _, fields in progress.events if kind == "pause"]
    return Result(seconds, seconds / ideal if ideal else math.nan, gate.storms,
                  server.counts["429"], gate.rate, len(pauses), gate,
                  sum(float(f["seconds"]) for f in pauses))


def floor(limit: float, burst: int, ceiling: float | None, rows: int) -> float:
    """The best ratio any gate can reach in a cell that needs a storm to learn
    the limit (--rate above it): one Retry-After pause of at least 1 s, of which
    the server's refilled burst gives back burst/limit seconds."""
    if ceiling is not None and ceiling <= limit:
        return 1.0
    ideal = rows / limit
    return (ideal + max(0.0, 1.0 - burst / limit)) / ideal


TARGETS = {"R": 1.03, "5R": 1.10, "none": 1.15}


def grid(rows_list: list[int], limits: list[float], quick: bool) -> int:
    worst: dict[str, tuple[float, str]] = {}
    print(f"{'limit':>6} {'burst':>5} {'--rate':>7} {'rows':>5}  {'ratio':>6} {'floor':>6} {'target':>6} "
          f"{'storms':>6} {'429s':>5} {'final rate':>10}")
    for limit, rows in itertools.product(limits, rows_list):
        for burst in sorted({1, max(1, int(limit / 10))}):
            for kind, ceiling in (("R", limit), ("5R", 5 * limit), ("none", None)):
                r = simulate(limit=limit, burst=burst, ceiling=ceiling, rows=rows)
                low = floor(limit, burst, ceiling, rows)
                target = TARGETS[kind]
                label = "none" if ceiling is None else f"{ceiling:g}"
                mark = "" if r.ratio <= target else (" (floor above target)" if low > target else " MISSED")
                print(f"{limit:>6g} {burst:>5} {label:>7} {rows:>5}  {r.ratio:6.3f} {low:6.3f} {target:6.2f} "
                      f"{r.storms:>6} {r.refused:>5} {r.rate:>10.1f}{mark}")
                cell = f"limit {limit:g} burst {burst} --rate {label} rows {rows}"
                if r.ratio > worst.get(kind, (0.0, ""))[0]:
                    worst[kind] = (r.ratio, cell)
                share = r.refused / rows
                if share > worst.get("429 share", (0.0, ""))[0]:
                    worst["429 share"] = (share, cell)
    for rows in rows_list:
        r = simulate(limit=None, burst=1, ceiling=50.0, rows=rows, fail_503=0.05)
        print(f"{'none':>6} {'':>5} {'50':>7} {rows:>5}  {r.ratio:6.3f}  5 % 503, final rate {r.rate:.1f}")
        if r.ratio > worst.get("503", (0.0, ""))[0]:
            worst["503"] = (r.ratio, f"5 % 503 rows {rows}")
    for kind, (value, cell) in worst.items():
        print(f"worst {kind}: {value:.3f} ({cell})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=float)
    p.add_argument("--burst", type=int, default=1)
    p.add_argument("--ceiling", type=float, help="--rate; omit for none")
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--fail-503", type=float, default=0.0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--no-retry-after", dest="retry_after", action="store_false",
                   help="the server's 429s carry no Retry-After")
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("-v", "--verbose", action="store_true", help="print the gate's rates and pauses")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.limit is None and not a.fail_503:
        return grid([500, 1000, 5000], [5.0, 20.0, 50.0, 200.0], a.quick)
    r = simulate(limit=a.limit, burst=a.burst, ceiling=a.ceiling, rows=a.rows,
                 concurrency=a.concurrency, fail_503=a.fail_503, jitter=a.jitter,
                 retry_after=a.retry_after)
    print(f"{r.seconds:.2f} s, ratio {r.ratio:.3f}, storms {r.storms}, 429s {r.refused}, "
          f"pause lines {r.pauses}, final rate {r.rate:.2f}")
    if a.verbose:
        progress = r.gate.progress
        assert isinstance(progress, RecordingProgress)
        print("rates:", " ".join(f"{x:.1f}" for x in progress.rates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
