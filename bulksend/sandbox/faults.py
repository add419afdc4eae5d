"""Which fault a call meets: the POST's fate (script, draw, quota) and the rate limit's bucket.

Pure decisions, no HTTP: gate.py turns them into answers. The fates' draws come
from their own random stream, seeded apart from the one that makes ids and
shuffles batches, so the n-th POST's fate depends only on (seed, n) and not on
whether earlier POSTs were valid.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Callable
from typing import Final

from bulksend.sandbox.config import RATE_BANDS, SandboxConfig

__all__ = ["FATE", "Faults", "TokenBucket"]

# The fate of the POST being handled, read by the handler that creates: the handler
# runs in the middleware's task, so a context variable carries it without touching
# the request.
FATE: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("bulksend_sandbox_fate", default="ok")


class TokenBucket:
    """The server's rate limit (§2): ``burst`` tokens, refilled at ``rate`` per second.

    ``clock`` gives seconds (monotonic); tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens = 0.0
        self._time = clock()

    def refill(self, burst: int) -> None:
        """A full bucket, from now."""
        self._tokens = float(burst)
        self._time = self._clock()

    def take(self, rate: float, burst: int) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self._clock()
        tokens = min(float(burst), self._tokens + (now - self._time) * rate)
        self._time = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / rate


class Faults:
    """The fates' random stream and the rate limit's bucket.

    Each call takes the configuration in force when the call arrived, so a POST
    that waited (``latency``) meets the settings it started under.
    """

    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        self._bucket = TokenBucket(clock)
        self.reset(config)

    def reset(self, config: SandboxConfig) -> None:
        """The seed's fate stream from its start, and a full bucket."""
        self._rng = random.Random(config.seed)
        self.refill(config)

    def refill(self, config: SandboxConfig) -> None:
        """A full bucket (``burst`` tokens), from now."""
        self._bucket.refill(config.burst)

    def wait(self, config: SandboxConfig) -> float:
        """0 when the call is admitted by the rate limit (or there is none), else the
        seconds until it would be."""
        if config.rate_limit is None:
            return 0.0
        return self._bucket.take(config.rate_limit, config.burst)

    def fate(self, config: SandboxConfig, created: int) -> str:
        """The fate of one POST, given how many requests were ``created`` so far: the
        drawn or scripted one, or "quota-429" once ``quota_after`` is reached (a quota,
        not a rate: it does not wear off by itself)."""
        fate = self._draw(config)
        if config.quota_after is not None and created >= config.quota_after:
            return "quota-429"
        return fate

    def _draw(self, config: SandboxConfig) -> str:
        """The script's next entry if any (consumed), else the draw's.

        Always one draw, whatever the rates and the script, so changing faults at run
        time does not shift the pattern for later POSTs. Within a band the position
        of the draw picks the fate (500 in the lower half of fail_rate, 503 above).
        """
        u = self._rng.random()
        scripted = config.script.pop(0) if config.script else None
        fate = "ok"
        for name, fates in RATE_BANDS:
            rate = getattr(config, name)
            if u < rate:
                fate = fates[min(int(u / rate * len(fates)), len(fates) - 1)]
                break
            u -= rate
        return scripted or fate
