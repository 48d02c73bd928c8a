"""A worker: the dispatcher wired to clients, rate limiters and the retry policy from Settings.

``Worker.drain()`` delivers everything pending and returns (scripts, tests, the demo);
``Worker.run()`` delivers until SIGTERM/SIGINT, then stops leasing and lets in-flight requests
finish within the grace period. ``run_worker_process`` is ``cio-relay worker``: the same, after
opening the outbox, which it waits for while it is unreachable (Redis restarting at boot); only
a configuration error (``ConfigError``) ends it early. Once running, the dispatcher rides out
a failing outbox by itself (``delivery/storage.py``).

Before delivering, ``run``/``arun`` check the account's region with Customer.io and refuse to
start (``ConfigError``) when it is not ``CUSTOMERIO_REGION``; a wrong region met later pauses
the API family instead (``delivery/region.py``). ``drain`` skips the start-up check (scripts and
tests) and raises ``ConfigError`` when it meets a paused family.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from cio_relay.config import Settings
from cio_relay.delivery.dispatcher import (
    AppSender,
    Dispatcher,
    DispatcherConfig,
    DispatchStats,
    TrackSender,
)
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.ratelimit import RateLimiter, TokenBucket
from cio_relay.delivery.region import RegionGate, RegionSource, confirm_region
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.delivery.shared_ratelimit import shared_limiters_for
from cio_relay.delivery.storage import StorageHealth
from cio_relay.operations import Api
from cio_relay.outbox.base import Outbox

__all__ = [
    "Worker",
    "WorkerHealth",
    "limiters_from_settings",
    "policy_from_settings",
    "run_worker_process",
]


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed; None (asyncio's own) otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def policy_from_settings(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base=settings.retry_base,
        cap=settings.retry_cap,
        max_attempts=settings.max_attempts,
        max_age=settings.max_age,
    )


def limiters_from_settings(settings: Settings) -> dict[Api, RateLimiter]:
    return {
        Api.TRACK: TokenBucket(settings.track_rate),
        Api.TRANSACTIONAL: TokenBucket(settings.transactional_rate),
        # One trigger per interval, no burst: Customer.io answers 429 to a second one.
        Api.BROADCAST: TokenBucket(1.0 / settings.broadcast_interval, burst=1.0),
    }


def config_from_settings(settings: Settings, **overrides: Any) -> DispatcherConfig:
    values: dict[str, Any] = {
        "lease_seconds": settings.lease_seconds,
        "batch_max_bytes": settings.batch_max_bytes,
        "retry_ambiguous": settings.retry_ambiguous,
    }
    values.update(overrides)
    return DispatcherConfig(**values)


class WorkerHealth:
    """What readiness reads of a worker: its outbox calls and its region; both outlive runs."""

    def __init__(self, hooks: Hooks) -> None:
        self.storage = StorageHealth(hooks)
        self.region = RegionGate(hooks)

    def __repr__(self) -> str:
        return f"WorkerHealth({self.status()!r})"

    def status(self) -> str:
        """``ok``; else the outbox's failure (it stops everything) or the region's state."""
        storage = self.storage.status()
        return storage if storage != "ok" else self.region.status()


class Worker:
    """Delivers one outbox. Clients are made per run so each event loop owns its connections."""

    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        *,
        hooks: Hooks | None = None,
        track: Callable[[], TrackSender] | None = None,
        app: Callable[[], AppSender] | None = None,
        limiters: Callable[[], dict[Api, RateLimiter]] | None = None,
        **config: Any,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.hooks = hooks or Hooks()
        self._track_factory = track
        self._app_factory = app
        # Workers on a Redis outbox share one limit per API family through that Redis (N
        # workers together stay under Customer.io's limits); elsewhere in-process buckets do.
        self._limiters_factory = limiters or (
            lambda: shared_limiters_for(settings, outbox) or limiters_from_settings(settings)
        )
        self.config = config_from_settings(settings, **config)
        self.stats = DispatchStats()
        self.health = WorkerHealth(self.hooks)  # outlives each run: readiness reads it

    @contextlib.asynccontextmanager
    async def dispatcher(self) -> AsyncIterator[Dispatcher]:
        track, app, closers = self._clients()
        dispatcher = Dispatcher(
            self.outbox,
            track,
            app,
            policy=policy_from_settings(self.settings),
            limiters=self._limiters_factory(),
            hooks=self.hooks,
            config=self.config,
            health=self.health.storage,
            region=self.health.region,
        )
        dispatcher.stats = self.stats
        try:
            yield dispatcher
        finally:
            for close in closers:
                await close()

    def _clients(self) -> tuple[TrackSender | None, AppSender | None, list[Any]]:
        from cio_relay.customerio import AsyncAppClient, AsyncTrackClient

        closers: list[Any] = []
        track: TrackSender | None
        app: AppSender | None
        if self._track_factory is not None:
            track = self._track_factory()
        elif self.settings.has_track_credentials:
            client = AsyncTrackClient.from_settings(self.settings)
            closers.append(client.aclose)
            track = client
        else:
            track = None
        if self._app_factory is not None:
            app = self._app_factory()
        elif self.settings.app_api_key is not None:
            app_client = AsyncAppClient.from_settings(self.settings)
            closers.append(app_client.aclose)
            app = app_client
        else:
            app = None
        return track, app, closers

    async def adrain(self, timeout: float | None = None) -> DispatchStats:
        async with self.dispatcher() as dispatcher:
            return await dispatcher.drain(timeout)

    async def arun(self, stop: asyncio.Event | None = None) -> DispatchStats:
        """Check the account's region, then deliver until ``stop`` is set. Raises
        ``ConfigError`` when the region is not ``CUSTOMERIO_REGION``."""
        stop = stop or asyncio.Event()
        async with self.dispatcher() as dispatcher:
            if await self._region_confirmed(dispatcher, stop):
                await dispatcher.run(stop)
            return dispatcher.stats

    async def _region_confirmed(self, dispatcher: Dispatcher, stop: asyncio.Event) -> bool:
        """False when ``stop`` came while Customer.io did not answer (nothing to deliver)."""
        if not isinstance(dispatcher.track, RegionSource):
            # No Track credentials (or a client that cannot ask): the pause still guards.
            return True
        return await confirm_region(
            dispatcher.track, self.settings.region, self.health.region, stop=stop
        )

    def drain(self, timeout: float | None = None) -> DispatchStats:
        """Deliver everything pending (delivered or dead-lettered), then return the counters."""
        return asyncio.run(self.adrain(timeout))

    def run(self) -> DispatchStats:
        """Deliver until SIGTERM or SIGINT, then shut down gracefully (on uvloop when it is
        installed, the ``fast`` extra: less event-loop CPU per request and per thread hop)."""

        async def main() -> DispatchStats:
            return await self.arun(_stop_on_signals())

        with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
            return runner.run(main())


def _stop_on_signals(*also: threading.Event) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call on the running loop's thread); ``also`` are set
    with it, for threads that wait."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        stop.set()
        for event in also:
            event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    return stop


def run_worker_process(settings: Settings) -> None:
    """``cio-relay worker``: open the outbox, waiting while it is unreachable, then deliver
    until SIGTERM or SIGINT. Raises ``ConfigError`` (and only that) when it cannot work."""
    from cio_relay.outbox.factory import open_outbox_when_reachable

    async def main() -> None:
        stopped = threading.Event()
        stop = _stop_on_signals(stopped)
        outbox = await asyncio.to_thread(
            open_outbox_when_reachable,
            settings.outbox_url,
            durability=settings.outbox_durability,
            wait=stopped.wait,
        )
        if outbox is None:
            return  # stopped while waiting
        try:
            await Worker(settings, outbox).arun(stop)
        finally:
            outbox.close()

    with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
        runner.run(main())
