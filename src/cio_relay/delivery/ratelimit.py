"""Rate limiting per API family (design.md contract 6).

``RateLimiter`` is the protocol the dispatcher steps through before each request; ``TokenBucket``
is the in-process version. A 429's ``Retry-After`` is fed back with ``pause_for`` so the whole
family waits, not just the operation that saw it. A shared version for many workers lives with
the Redis backend (``shared_ratelimit.py``).

Every limiter reads the time from its ``clock`` and waits with its ``sleep`` (``time.monotonic``
and ``asyncio.sleep`` unless given): tests pass a fake clock whose ``sleep`` moves it, and assert
exact waits instead of measuring real ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["Clock", "RateLimiter", "Sleep", "TokenBucket", "Unlimited"]

#: Seconds on a clock that never goes back (``time.monotonic`` by default).
Clock = Callable[[], float]
#: Waits that many seconds on the same clock (``asyncio.sleep`` by default).
Sleep = Callable[[float], Awaitable[None]]
#: A token a hair short of whole is whole: clock readings are rounded floats, and a wait for
#: the last billionth of a token may not move a clock with large readings at all.
_WHOLE = 1.0 - 1e-9


class RateLimiter(Protocol):
    async def acquire(self) -> float:
        """Wait for permission to send one request; return the seconds waited."""

    def pause_for(self, seconds: float) -> None:
        """Nobody in this family sends for ``seconds`` (a 429 said so)."""


class TokenBucket:
    """``rate`` requests per second with bursts of up to ``burst``; fair in arrival order.

    After a pause the bucket refills from empty: the requests held back go out at ``rate``, not
    as one burst the moment the pause ends.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self.clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def tokens(self) -> float:
        """Requests that could go at once now (fractions are a token on its way)."""
        now = self.clock()
        if now < self._paused_until:
            return 0.0
        self._refill(now)
        return self._tokens

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _wait_needed(self, now: float) -> float:
        """0 after taking a token at ``now``; else the seconds until one can be taken."""
        if now < self._paused_until:
            return self._paused_until - now
        self._refill(now)
        if self._tokens >= _WHOLE:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> float:
        started = self.clock()
        queued = self._lock.locked()
        slept = False
        async with self._lock:  # one waiter at a time keeps arrival order
            while (wait := self._wait_needed(self.clock())) > 0:
                await self._sleep(wait)
                slept = True
        return self.clock() - started if queued or slept else 0.0

    def pause_for(self, seconds: float) -> None:
        until = self.clock() + seconds
        if seconds <= 0 or until <= self._paused_until:
            return
        self._paused_until = until
        # The refill starts when the pause ends: what the pause held back is not a burst.
        self._tokens = 0.0
        self._updated = until


class Unlimited:
    """No limit (tests and benchmarks that measure something else)."""

    async def acquire(self) -> float:
        return 0.0

    def pause_for(self, seconds: float) -> None:
        return None
