"""Growing waits for a loop that waits for something of ours to come back: the outbox after a
storage failure, a restarted worker, an outbox not reachable yet at start. (A Customer.io
request's retries follow ``delivery/retry.py``'s policy instead.)"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["growing_delays"]


def growing_delays(first: float, most: float) -> Iterator[float]:
    """Waits doubling from ``first`` up to ``most``, each drawn from the upper half of its
    window: never near zero (a loop that waits for a resource to come back must not hammer it),
    and spread enough that many waiting tasks do not retry in lock-step."""
    delay = first
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, most)
