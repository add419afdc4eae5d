"""The one retry policy: how many tries, for how long, and how long between them.

Every retry bulksend makes after a failed call goes through a ``RetryPolicy``:
send's POSTs and the look-ups that settle them (sending/sender.py), the
preflight's GETs (sending/preflight.py), ``status``'s reads and ``update``'s
PATCHes and checks (tasks/). Callers differ in their numbers, never in the
rules, which are these:

* **Attempts and time are both capped**, as the stamina library bounds every
  retry loop (``attempts`` and ``timeout``): a retry names what it retries and
  when it gives up. ``max_attempts`` counts every try, the first included;
  ``max_time`` is the seconds after the first try past which no new try
  starts (``math.inf``: no time cap).
* **Backoff: exponential, with jitter** (AWS Architecture Blog, Marc Brooker,
  "Exponential Backoff And Jitter", 2015): after the n-th failure a caller
  waits ``min(cap, base * 2 ** (n - 1)) * U(low, high)``, ``U`` uniform over
  the ``jitter`` range. The jitter spreads the retries of many workers instead
  of synchronising them. Send's range (0.5, 1.0) is that post's "Equal
  Jitter" (half the step kept, so a retry never comes right away; the comment
  it replaces called it full jitter); (1.0, 1.0) is no jitter.
* **Retry-After is honoured where the caller has one** (RFC 9110 §10.2.3, on a
  503): the server's delay replaces the backoff, capped at ``cap`` so that one
  answer cannot park a worker for an hour. A 429's Retry-After is not the
  policy's: it pauses every worker at once, which is the rate gate's job
  (collect/rategate.py, ``RateGate.throttled``).

``sleep``, ``clock`` and ``rng`` are injectable, so a test can run the
policy on virtual time.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a caller retries a failed call. The defaults are send's (one row:
    5 tries within 300 s, backoff 0.25-0.5 s, 0.5-1 s, 1-2 s, ... at most 30 s).

    ``max_attempts``: tries in all (>= 1). ``max_time``: seconds from the first
    try after which none starts. ``base``, ``cap``: seconds of the first step
    and of the largest. ``jitter``: the (low, high) range each step is
    multiplied by. ``sleep``, ``clock``, ``rng``: time and chance, for tests."""

    max_attempts: int = 5
    max_time: float = 300.0
    base: float = 0.5
    cap: float = 30.0
    jitter: tuple[float, float] = (0.5, 1.0)
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1 for the first):
        ``min(cap, base * 2 ** (failures - 1))`` times a uniform draw in ``jitter``."""
        ceiling = min(self.cap, self.base * 2.0 ** (failures - 1))
        low, high = self.jitter
        return ceiling * self.rng.uniform(low, high)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try: the server's Retry-After when
        given (RFC 9110 §10.2.3; capped at ``cap``, never negative), else ``backoff``."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.cap)
        return self.backoff(failures)

    async def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Sleep ``delay(failures, retry_after)`` seconds; returns them."""
        seconds = self.delay(failures, retry_after)
        await self.sleep(seconds)
        return seconds

    def exhausted(self, failures: int, started: float) -> bool:
        """Whether no try may follow ``failures`` failed ones, the first begun
        at ``started`` (``clock``'s time): the tries are spent, or the time."""
        return failures >= self.max_attempts or self.clock() - started > self.max_time

    async def again(self, failures: int, started: float, retry_after: float | None = None) -> bool:
        """After the ``failures``-th failure of tries begun at ``started``:
        False at once when the tries are spent; else wait (``wait``) and say
        whether the time still allows another try."""
        if failures >= self.max_attempts:
            return False
        await self.wait(failures, retry_after)
        return not self.exhausted(failures, started)

    async def call(self, attempt: Callable[[], Awaitable[T]], retry_on: tuple[type[BaseException], ...]) -> T:
        """``await attempt()`` until it returns, again after each exception of
        a ``retry_on`` type (``again``: backing off in between). Raises the last
        such exception once the policy is exhausted, and any other at once."""
        started = self.clock()
        failures = 0
        while True:
            try:
                return await attempt()
            except retry_on:
                failures += 1
                if not await self.again(failures, started):
                    raise


# Retries of one call in ``status`` and ``update`` (a listing page, a GET, a
# PATCH): 5 tries, steps of 1, 2, 4, 8 s, each times 0.5-1.5, no time cap.
CALL_RETRY = RetryPolicy(max_attempts=5, max_time=math.inf, base=1.0, cap=8.0, jitter=(0.5, 1.5))
