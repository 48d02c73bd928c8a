"""Riding out a failing outbox: how long to wait before trying again, and what to report.

The outbox can fail under a running worker: a full disk (SQLite's "database or disk is full"),
a Redis restart (``ConnectionError``, then ``BusyLoadingError`` while it loads its data), a lock
held too long. None of these is a reason to stop delivering for good. The dispatcher retries
every outbox call that fails, waiting ``storage_delays()`` between tries (``until_answered``),
and reports through one ``StorageHealth`` per worker: readiness says ``unavailable: <error
class>`` while calls fail, the logs say when it started, that it goes on (every ``LOG_EVERY``
seconds, not once per call) and when it ended, and the ``storage_error`` hook feeds
``cio_relay_storage_errors_total``.

Nothing is lost meanwhile: what was leased stays leased until its lease runs out (another
worker, or this one once the storage is back, takes it over), and an outcome that could not be
recorded is recorded when the storage answers again, if the lease is still held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from cio_relay.backoff import growing_delays
from cio_relay.delivery.hooks import Hooks

__all__ = ["LOG_EVERY", "StorageHealth", "storage_delays", "until_answered"]

log = logging.getLogger("cio_relay.delivery")

#: First wait after a failed outbox call, and the longest: the time to notice that the storage
#: is back is at most the longest wait, so it stays short; a failing call is cheap to repeat.
FIRST_DELAY, MAX_DELAY = 0.1, 2.0
#: Seconds between "still failing" log lines during an outage.
LOG_EVERY = 30.0
T = TypeVar("T")


def storage_delays() -> Iterator[float]:
    """Waits between tries of a failing outbox call (see ``growing_delays``)."""
    return growing_delays(FIRST_DELAY, MAX_DELAY)


class StorageHealth:
    """Whether the outbox answers one worker's calls; shared by its dispatchers over restarts."""

    def __init__(self, hooks: Hooks | None = None) -> None:
        self.hooks = hooks or Hooks()
        self.failing_since: float | None = None
        self.error: str | None = None  # the exception class: error text may name hosts or paths
        self.failures = 0
        self._logged_at = 0.0

    def __repr__(self) -> str:
        return f"StorageHealth({self.status()!r})"

    def status(self) -> str:
        """``ok``, or ``unavailable: <error class>`` (readiness shows it as is)."""
        return "ok" if self.failing_since is None else f"unavailable: {self.error}"

    def failed(self, operation: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        self.error = type(exc).__name__
        since = self.failing_since
        if since is None:
            self.failing_since = self._logged_at = now
        Hooks.fire(self.hooks.storage_error, operation, exc)
        if since is None:
            log.error(
                "the outbox failed (%s during %s); delivery waits and retries",
                self.error,
                operation,
                exc_info=exc,
            )
        elif now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.error(
                "the outbox still fails after %.0f s (%s during %s, %d failed calls)",
                now - since,
                self.error,
                operation,
                self.failures,
            )

    def succeeded(self) -> None:
        if self.failing_since is None:
            return
        log.warning(
            "the outbox answers again after %.1f s (%d failed calls); delivery resumes",
            time.monotonic() - self.failing_since,
            self.failures,
        )
        self.failing_since = self.error = None
        self.failures = 0


async def until_answered(
    health: StorageHealth, operation: str, call: Callable[..., T], *args: Any, **kw: Any
) -> T:
    """``call(*args, **kw)`` on a worker thread, tried again until the outbox answers.

    Settling may wait out a storage outage: an outcome recorded late is still right (ack always
    applies; the others apply while the lease is held, else the next holder redoes the work).
    Shutdown cancels the wait past the grace period.
    """
    delays = storage_delays()
    while True:
        try:
            result = await asyncio.to_thread(call, *args, **kw)
        except Exception as exc:
            health.failed(operation, exc)
            await asyncio.sleep(next(delays))
            continue
        health.succeeded()
        return result
