"""A rate limit held in Redis, shared by every worker on every machine (design.md contract 6).

``SharedRateLimiter`` implements the ``RateLimiter`` protocol with GCRA (the generic cell rate
algorithm) in one Lua script (``outbox/lua/gcra.lua``) on the Redis server's clock, so N workers
on M machines together send at most ``rate`` requests per second (plus ``burst - 1`` at once).
Each ``acquire`` reserves the next free send time in one round trip and waits for it.

``pause_for`` (a 429's ``Retry-After``) is stored in Redis: every worker's next reservation
starts after the pause, not just the worker that saw the 429. The worker that saw it also stops
at once, before the write lands.

Requests must also *arrive* spread out. Two guards keep them from bunching at Customer.io:

- ``headroom`` aims a little under the limit (``rate * (1 - headroom)``) so that jitter on the
  way does not push what arrives in any one-second window over ``rate``. Slots then lie
  ``1 / (rate * (1 - headroom))`` apart, and requests that each arrive at most ``D`` after their
  slot put at most ``rate`` into any window of a second while ``D < headroom / (1 - headroom)``
  seconds (for a rate under one per second, that many windows of ``1 / rate``): the *jitter
  budget* (``jitter_budget``; a ninth of a second at ``redis_limiters``' 10 %);
- a reservation is good only near its time: a sender that wakes more than ``slack`` after its
  slot (its process stalled: GC, a busy CPU) would spend more than its share of the budget, so it
  leaves its slot unused and reserves a new one. ``slack`` is half the jitter budget (the other
  half is for the way to Customer.io); without headroom there is no budget, and it is half an
  interval. The slack follows the budget, not the interval, which is too short for a busy worker
  at high rates and too long at low ones (docs/benchmarks.md, issue 6).

Clocks. By default the slots are reserved on the Redis server's clock (every machine reads the
same one) and each limiter measures its own waits on ``time.monotonic``. Given a ``clock`` (and
its ``sleep``), a limiter does both on it: the tests drive a fake clock and assert exact slots.

Use with a Redis outbox (the Worker's ``limiters=`` factory)::

    Worker(settings, outbox, limiters=lambda: redis_limiters(settings, outbox.client))

or, choosing by the outbox, ``shared_limiters_for(settings, outbox) or
limiters_from_settings(settings)``. Limits are per Customer.io workspace (the site id), not per
outbox namespace: two relays for one workspace on one Redis share its limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
from importlib import resources
from typing import TYPE_CHECKING

from cio_relay.config import Settings
from cio_relay.delivery.ratelimit import Clock, RateLimiter, Sleep
from cio_relay.operations import Api
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.redis_keys import ratelimit_key

if TYPE_CHECKING:  # redis-py is an optional extra: importing this module does not need it
    from cio_relay.outbox.redis import RedisClient

__all__ = [
    "DEFAULT_HEADROOM",
    "SharedRateLimiter",
    "jitter_budget",
    "redis_limiters",
    "shared_limiters_for",
]

log = logging.getLogger("cio_relay.delivery.ratelimit")

#: How far under the configured rate the shared limiters aim (see the module docstring).
DEFAULT_HEADROOM = 0.1
_MICROS = 1_000_000


def _gcra_source() -> str:
    return resources.files("cio_relay.outbox").joinpath("lua", "gcra.lua").read_text()


class SharedRateLimiter:
    """``rate`` requests per second for everyone using ``key`` on this Redis."""

    def __init__(
        self,
        client: RedisClient,
        key: str,
        rate: float,
        *,
        burst: int = 1,
        headroom: float = 0.0,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        self.key = key
        self.rate = rate
        self.burst = burst
        self.headroom = headroom
        self._slot_clock = clock  # slots on it when given (every sharer's); else on Redis's
        self.clock: Clock = clock or time.monotonic
        self._sleep = sleep
        self._client = client
        self._script = client.register_script(_gcra_source())
        self._interval = round(_MICROS / (rate * (1 - headroom)))  # microseconds between sends
        self._tolerance = (burst - 1) * self._interval
        # Seconds a sender may wake after its slot and still use it (see the module docstring).
        budget = jitter_budget(rate, headroom)
        self._slack = budget / 2 if budget > 0 else self._interval / 2 / _MICROS
        self._paused_until = 0.0  # this process's own view (on self.clock), set by pause_for

    def __repr__(self) -> str:
        return f"SharedRateLimiter(key={self.key!r}, rate={self.rate}, burst={self.burst})"

    def _now_arg(self) -> str | int:
        """The script's ``now``: the shared clock's reading, or '' for the server's clock."""
        return "" if self._slot_clock is None else round(self._slot_clock() * _MICROS)

    def _reserve(self) -> float:
        """Reserve the next send time; the seconds until it."""
        args = ["acquire", self._now_arg(), self._interval, self._tolerance]
        return int(self._script(keys=[self.key], args=args)) / _MICROS

    async def acquire(self) -> float:
        started = self.clock()
        local = self._paused_until - started
        if local > 0:  # a 429 seen here: stop at once, whatever Redis says yet
            await self._sleep(local)
        while True:
            # On this clock the slot lies between asked + wait and (answer) + wait, as Redis read
            # its own clock in between: go no earlier than the latest it can be (wait from the
            # answer), and count lateness from the earliest.
            asked = self.clock()
            wait = await asyncio.to_thread(self._reserve)  # off the event loop: network I/O
            if wait > 0:
                await self._sleep(wait)
            if self.clock() - (asked + wait) <= self._slack:
                return self.clock() - started
            # Woke too late (this process stalled): going now would bunch with the holders of
            # the next slots. The missed slot stays unused, which errs under the limit.

    def pause_for(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._paused_until = max(self._paused_until, self.clock() + seconds)
        now = self._now_arg()  # read here: on a given clock the pause starts now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: tell Redis right here
            self._store_pause(now, seconds)
            return
        loop.run_in_executor(None, self._store_pause, now, seconds).add_done_callback(_log_failure)

    def _store_pause(self, now: str | int, seconds: float) -> None:
        self._script(keys=[self.key], args=["pause", now, round(seconds * _MICROS)])


def jitter_budget(rate: float, headroom: float) -> float:
    """Seconds a request may arrive after its slot with at most ``rate`` arriving in any window
    of a second (of ``1 / rate`` seconds for rates under one a second); see the module
    docstring."""
    return headroom / (1 - headroom) * max(1.0, 1 / rate)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and (error := future.exception()) is not None:
        log.warning("could not share a rate-limit pause through Redis: %s", error)


def _scope(settings: Settings) -> str:
    """Limits are per Customer.io workspace; the site id is hashed, not written out."""
    site = settings.site_id or "no-site"
    return hashlib.sha256(site.encode()).hexdigest()[:16]


def redis_limiters(
    settings: Settings,
    client: RedisClient,
    *,
    namespace: str = "cio-relay",
    headroom: float = DEFAULT_HEADROOM,
) -> dict[Api, RateLimiter]:
    """The Worker's limiters, shared through ``client`` by every worker of the same workspace:
    Track and transactional at their rates, broadcast triggers one per ``broadcast_interval``."""
    scope = _scope(settings)

    def shared(api: Api, rate: float) -> SharedRateLimiter:
        key = ratelimit_key(namespace, scope, api.value)
        return SharedRateLimiter(client, key, rate, headroom=headroom)

    return {
        Api.TRACK: shared(Api.TRACK, settings.track_rate),
        Api.TRANSACTIONAL: shared(Api.TRANSACTIONAL, settings.transactional_rate),
        # One trigger per interval, no burst: Customer.io answers 429 to a second one.
        Api.BROADCAST: shared(Api.BROADCAST, 1.0 / settings.broadcast_interval),
    }


def shared_limiters_for(settings: Settings, outbox: Outbox) -> dict[Api, RateLimiter] | None:
    """Limiters shared through the outbox's Redis when the outbox is a ``RedisOutbox`` (its
    workers may run anywhere); None otherwise (in-process limiters then suffice). Needs no
    redis-py unless a Redis outbox exists."""
    if "cio_relay.outbox.redis" not in sys.modules:  # no Redis outbox was ever made here
        return None
    from cio_relay.outbox.redis import RedisOutbox

    if isinstance(outbox, RedisOutbox):
        return redis_limiters(settings, outbox.client)
    return None
