"""Retry policy: full-jitter exponential backoff, ``Retry-After`` honoured, attempt and age caps.

Full jitter (delay drawn uniformly from ``[0, min(cap, base * 2**attempt)]``) spreads a crowd of
failed operations over the window instead of sending them back in lock-step (AWS architecture
blog, "Exponential Backoff And Jitter"). A server's ``Retry-After`` is a floor, never shortened.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 0.5
    cap: float = 300.0
    max_attempts: int = 15
    max_age: float = 3 * 24 * 3600.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number ``attempts + 1`` (``attempts`` already made)."""
        window = min(self.cap, self.base * (2 ** min(attempts, 62)))
        jittered = self.rng.uniform(0.0, window)
        if retry_after is not None:
            return max(jittered, min(retry_after, self.cap))
        return jittered

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` delivery attempts have been made and none may follow."""
        return attempts >= self.max_attempts

    def too_old(self, created_at: float, now: float) -> bool:
        return now - created_at > self.max_age
