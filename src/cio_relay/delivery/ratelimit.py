"""Rate limiting per API family (design.md contract 6).

``RateLimiter`` is the protocol the dispatcher steps through before each request; ``TokenBucket``
is the in-process version. A 429's ``Retry-After`` is fed back with ``pause_for`` so the whole
family waits, not just the operation that saw it. A shared version for many workers lives with
the Redis backend.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["RateLimiter", "TokenBucket", "Unlimited"]


class RateLimiter(Protocol):
    async def acquire(self) -> float:
        """Wait for permission to send one request; return the seconds waited."""

    def pause_for(self, seconds: float) -> None:
        """Nobody in this family sends for ``seconds`` (a 429 said so)."""


class TokenBucket:
    """``rate`` requests per second with bursts of up to ``burst``; fair in arrival order."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _wait_needed(self, now: float) -> float:
        if now < self._paused_until:
            return self._paused_until - now
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> float:
        waited = 0.0
        async with self._lock:  # one waiter at a time keeps arrival order
            while True:
                wait = self._wait_needed(time.monotonic())
                if wait <= 0:
                    return waited
                await asyncio.sleep(wait)
                waited += wait

    def pause_for(self, seconds: float) -> None:
        until = time.monotonic() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)
        self._tokens = 0.0


class Unlimited:
    """No limit (tests and benchmarks that measure something else)."""

    async def acquire(self) -> float:
        return 0.0

    def pause_for(self, seconds: float) -> None:
        return None
