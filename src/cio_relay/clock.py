"""Wall-clock time that callers may pin: every ``now=`` parameter of the stores ends here.

Stores take ``now`` as an argument (``None`` meaning the wall clock) so that tests and the
equivalence suites drive time deterministically instead of waiting for it.
"""

from __future__ import annotations

import time

__all__ = ["now_or"]


def now_or(now: float | None) -> float:
    """``now`` when given, else the wall clock (``time.time()``), in seconds since the epoch."""
    return time.time() if now is None else now
