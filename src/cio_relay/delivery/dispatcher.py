"""The dispatcher: lease from the outbox, send to Customer.io, settle each operation.

The loop is short: lease a batch (the outbox already guarantees one operation per person, in
order), plan requests (Track operations packed into ``/api/v2/batch`` by bytes; the rest one
request each), and hand each request to a bounded pool of senders. Everything else is a step
around a send: the rate limiter before it, the outcome afterwards (``Settler``), hooks for
metrics and logs.

Beside the loop: ``planning.py`` (which requests a lease becomes), ``outcomes.py`` (what a
failed request means: retry, or dead-letter and why; design.md contracts 2 and 4),
``settling.py`` (carrying that outcome out in the outbox, the counters and the hooks),
``leases.py`` (the heartbeat that keeps the leases of work under way, and the deadline that
stops a send before its lease runs out) and ``ratelimit.py`` (the limiter before each send).

A failing outbox (full disk, Redis restarting) never stops the dispatcher: every outbox call is
retried with backoff until it answers, and ``StorageHealth`` reports meanwhile (storage.py).
Nor does a wrong region: the API family Customer.io places elsewhere is paused, its operations
kept, and probed now and then (``RegionGate``, region.py).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.leases import LeaseGroup, heartbeat, renew_due_leases, within_lease
from cio_relay.delivery.outcomes import describe_item_error, refused_whole
from cio_relay.delivery.planning import Planned, plan_requests
from cio_relay.delivery.ratelimit import RateLimiter, Unlimited
from cio_relay.delivery.region import FAMILIES, RegionGate, family_of
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.delivery.settling import DispatchStats, Settler
from cio_relay.delivery.storage import StorageHealth, storage_delays, until_answered
from cio_relay.errors import ApiError, RetryableError, WrongRegionError
from cio_relay.operations import Api, Request
from cio_relay.outbox.base import DeadReason, Lease, Outbox

__all__ = ["DispatchStats", "Dispatcher", "DispatcherConfig"]

log = logging.getLogger("cio_relay.delivery")


class BatchOutcome(Protocol):
    """What ``send_batch`` returns: refused items by ``batch_index``."""

    @property
    def errors(self) -> Mapping[int, Any]: ...


class TrackSender(Protocol):
    async def send(self, request: Request) -> Any: ...

    async def send_batch_raw(self, items: Sequence[bytes]) -> BatchOutcome:
        """``POST /api/v2/batch`` with items already serialised (each is measured once)."""
        ...


class AppSender(Protocol):
    async def send(self, request: Request) -> Any: ...


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    lease_size: int = 5000
    #: A crashed worker's operations wait at most this long; the heartbeat renews a live one's.
    lease_seconds: float = 10.0
    batch_max_bytes: int = 450_000
    concurrency: int = 8  # requests in flight at once
    idle_wait: float = 0.05  # how long an idle loop waits for new work before looking again
    grace_period: float = 10.0  # shutdown: how long in-flight requests may take to finish
    retry_ambiguous: bool = False

    @property
    def heartbeat_every(self) -> float:
        """Seconds between looks for leases to renew: four per lease, so a renewal due at half
        the lease has a quarter of it left to complete even when a look comes late."""
        return self.lease_seconds / 4

    @property
    def renew_below(self) -> float:
        """Leases with less than this left are renewed to a whole ``lease_seconds`` again."""
        return self.lease_seconds / 2

    @property
    def settle_margin(self) -> float:
        """Lease a request leaves unused, to record its outcome while the lease is still held."""
        return min(1.0, self.lease_seconds / 10)


class Dispatcher:
    """Delivers what the outbox holds. One per worker process; safe to run several."""

    def __init__(
        self,
        outbox: Outbox,
        track: TrackSender | None,
        app: AppSender | None = None,
        *,
        policy: RetryPolicy | None = None,
        limiters: Mapping[Api, RateLimiter] | None = None,
        hooks: Hooks | None = None,
        config: DispatcherConfig | None = None,
        health: StorageHealth | None = None,
        region: RegionGate | None = None,
    ) -> None:
        self.outbox = outbox
        self.track = track
        self.app = app
        self.policy = policy or RetryPolicy()
        self.limiters: Mapping[Api, RateLimiter] = limiters or {}
        self.hooks = hooks or Hooks()
        self.config = config or DispatcherConfig()
        self.health = health or StorageHealth(self.hooks)
        self.region = region or RegionGate(self.hooks)
        self._settle = Settler(
            outbox,
            stats=DispatchStats(),
            health=self.health,
            hooks=self.hooks,
            policy=self.policy,
            limiters=self.limiters,
            region=self.region,
            retry_ambiguous=self.config.retry_ambiguous,
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self._planned: set[Planned] = set()  # sending or waiting to: their leases are renewed
        self._sending = asyncio.Semaphore(self.config.concurrency)  # requests on the wire
        self._queued: dict[Api, int] = collections.defaultdict(int)  # tasks per API family

    @property
    def stats(self) -> DispatchStats:
        """Counters since the dispatcher started; a worker sets its own to keep them over runs."""
        return self._settle.stats

    @stats.setter
    def stats(self, stats: DispatchStats) -> None:
        self._settle.stats = stats

    # --- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set, then finish or release in-flight work (graceful)."""
        stop = stop or asyncio.Event()
        stop_wait = asyncio.ensure_future(stop.wait())
        async with heartbeat(self._renew_leases, self.config.heartbeat_every):
            try:
                await self._pump(until_empty=False, stop_wait=stop_wait)
            finally:
                stop_wait.cancel()
            await self._finish_inflight()

    async def drain(self, timeout: float | None = None) -> DispatchStats:
        """Deliver until nothing is pending (delivered or dead-lettered), then return.

        Retries scheduled in the future are waited for, so keep backoff short in tests. Raises
        ``ConfigError`` when an API family is paused for a wrong region (its operations stay).
        """
        async with heartbeat(self._renew_leases, self.config.heartbeat_every):
            await asyncio.wait_for(self._pump(until_empty=True, stop_wait=None), timeout)
            await self._finish_inflight()
        return self.stats

    async def _pump(self, *, until_empty: bool, stop_wait: asyncio.Future[Any] | None) -> None:
        delays = storage_delays()
        while not (stop_wait and stop_wait.done()):
            if self.region.paused and (idle := self._paused_for()) is not None:
                # Every family is paused and its probe is out or not due: leasing now would
                # only give operations back.
                if self._inflight:
                    await self._wait_any(set(self._inflight), stop_wait)
                elif until_empty:
                    raise self.region.refusal()
                else:
                    await self._wait_any(set(), stop_wait, timeout=idle)
                continue
            # Lease only when the Track pipeline has room: this bounds what is held in memory.
            if self._queued[Api.TRACK] >= self._cap(Api.TRACK):
                await self._wait_any(set(self._inflight), stop_wait)
                continue
            try:
                leases = await asyncio.to_thread(
                    self.outbox.lease, self.config.lease_size, self.config.lease_seconds
                )
                empty = until_empty and not leases and not self._inflight and await self._empty()
            except Exception as exc:
                # Waits without leasing more; what is in flight settles (or waits) meanwhile.
                self.health.failed("lease", exc)
                await self._wait_any(set(), stop_wait, timeout=next(delays))
                continue
            self.health.succeeded()
            delays = storage_delays()
            if leases:
                await self._dispatch(leases)
                continue
            if self._inflight:
                await self._wait_any(set(self._inflight), stop_wait)
                continue
            if empty:
                return
            if until_empty and self.region.paused:
                raise self.region.refusal()
            await self._wait_any(set(), stop_wait, timeout=self.config.idle_wait)

    def _paused_for(self) -> float | None:
        """Seconds until a probe is due when every family this dispatcher sends to is paused;
        None otherwise."""
        clients = {"track": self.track, "app": self.app}
        return self.region.idle_for(f for f in FAMILIES if clients[f] is not None)

    async def _empty(self) -> bool:
        return (await asyncio.to_thread(self.outbox.depth)).pending == 0

    async def _renew_leases(self) -> None:
        await renew_due_leases(
            self.outbox,
            self._planned,
            self.health,
            lease_seconds=self.config.lease_seconds,
            renew_below=self.config.renew_below,
            settle_margin=self.config.settle_margin,
        )

    @staticmethod
    async def _wait_any(
        tasks: set[asyncio.Task[None]],
        stop_wait: asyncio.Future[Any] | None,
        timeout: float | None = None,
    ) -> None:
        waiters: set[asyncio.Future[Any]] = set(tasks)
        if stop_wait is not None:
            waiters.add(stop_wait)
        if not waiters:
            await asyncio.sleep(timeout or 0)
            return
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def _cap(self, api: Api) -> int:
        """How many requests of a family may wait for the rate limiter or the wire at once."""
        if api is Api.BROADCAST:
            return 2
        factor = 2 if api is Api.TRACK else 4
        return factor * self.config.concurrency

    async def _finish_inflight(self) -> None:
        if not self._inflight:
            return
        _done, pending = await asyncio.wait(set(self._inflight), timeout=self.config.grace_period)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- planning -----------------------------------------------------------------------------

    async def _dispatch(self, leases: list[Lease]) -> None:
        deferred: dict[Api, list[Lease]] = {}
        group = LeaseGroup(min(lease.lease_until for lease in leases))
        plans, refused = plan_requests(
            leases,
            group,
            policy=self.policy,
            may_resend=self._settle.may_resend,
            batch_max_bytes=self.config.batch_max_bytes,
            batches=self.track is not None,
            now=time.time(),
        )
        for refusal in refused:
            self._dead_soon(refusal.lease, refusal.reason, refusal.detail)
        for planned in plans:
            saturated = planned.api is not Api.TRACK and self._queued[planned.api] >= self._cap(
                planned.api
            )
            if saturated or not self.region.admits(family_of(planned.api)):
                # This family is saturated by its rate limit, or paused; holding more of its
                # operations would only let their leases run out. Give them back for later,
                # untouched.
                deferred.setdefault(planned.api, []).extend(planned.leases)
                continue
            self._queued[planned.api] += 1
            self._planned.add(planned)
            task = asyncio.create_task(self._send_planned(planned))
            self._inflight.add(task)
            task.add_done_callback(functools.partial(self._task_done, planned))
        for api, held_back in deferred.items():
            delay = self.region.wait(family_of(api)) or self._backlog(api)
            await until_answered(
                self.health, "release", self.outbox.release, held_back, delay=delay
            )

    def _backlog(self, api: Api) -> float:
        """Seconds until this family's queued requests are likely through its rate limiter."""
        rate = getattr(self.limiters.get(api), "rate", None)
        return max(0.5, self._queued[api] / rate) if rate else 1.0

    def _task_done(self, planned: Planned, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._planned.discard(planned)
        self._queued[planned.api] -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    def _dead_soon(self, lease: Lease, reason: DeadReason, detail: str) -> None:
        task = asyncio.get_running_loop().create_task(self._settle.dead(lease, reason, detail))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # --- sending ------------------------------------------------------------------------------

    async def _send_planned(self, planned: Planned) -> None:
        try:
            await self._limit_and_send(planned)
        except asyncio.CancelledError:
            # Shutdown past the grace period. What was never written goes back untouched; a
            # non-idempotent send that may have been written is not sent again blindly.
            await asyncio.shield(
                self._settle.abandon(planned.leases, maybe_written=planned.written)
            )
            raise

    async def _limit_and_send(self, planned: Planned) -> None:
        limiter = self.limiters.get(planned.api, Unlimited())
        waited = await limiter.acquire()
        if waited:
            Hooks.fire(self.hooks.rate_wait, planned.api.value, waited)
        async with self._sending:
            if not self._keep_live_leases(planned):
                return
            planned.written = True
            if planned.items is not None:
                await self._send_batch(planned.group, planned.leases, planned.items)
            else:
                await self._send_one(planned)

    def _keep_live_leases(self, planned: Planned) -> bool:
        """Whether the plan's leases are still held long enough to send.

        Past the deadline (the heartbeat could not renew it) another worker may lease the
        operations, so sending them could send them twice: leave them to whoever leases them
        next.
        """
        if planned.group.left() > self.config.settle_margin:
            return True
        log.warning(
            "skipping %d operations whose lease ran out before sending", len(planned.leases)
        )
        return False

    async def _send_batch(self, group: LeaseGroup, leases: list[Lease], items: list[bytes]) -> None:
        assert self.track is not None
        started = time.perf_counter()
        try:
            result = await within_lease(
                group,
                "POST /api/v2/batch",
                self.track.send_batch_raw(items),
                self.config.settle_margin,
            )
        except ApiError as exc:
            self._observe_request(Api.TRACK, "POST /api/v2/batch", exc.status, started)
            if isinstance(exc, WrongRegionError):
                await self._settle.hold(leases, Api.TRACK, str(exc))
                return
            if refused_whole(exc) and len(leases) > 1:
                await self._bisect(group, leases, items)
                return
            await asyncio.gather(*(self._settle.failed(lease, exc) for lease in leases))
            return
        self._observe_request(
            Api.TRACK, "POST /api/v2/batch", 207 if result.errors else 200, started
        )
        self.stats.requests += 1
        self.stats.operations_sent += len(leases)
        self.region.delivered("track")
        refused = {i: result.errors[i] for i in result.errors if 0 <= i < len(leases)}
        ok = [lease for i, lease in enumerate(leases) if i not in refused]
        await self._settle.ack(ok)
        for index, error in refused.items():
            await self._settle.dead(
                leases[index], DeadReason.BATCH_ITEM, describe_item_error(error)
            )

    async def _bisect(self, group: LeaseGroup, leases: list[Lease], items: list[bytes]) -> None:
        middle = len(leases) // 2
        log.info("v2 batch of %d refused whole; retrying as two halves", len(leases))
        await self._send_batch(group, leases[:middle], items[:middle])
        await self._send_batch(group, leases[middle:], items[middle:])

    async def _send_one(self, planned: Planned) -> None:
        lease = planned.leases[0]
        op = lease.op
        try:
            request = op.v1_request()
        except Exception as exc:
            await self._settle.dead(lease, DeadReason.INVALID, f"cannot build request: {exc!r}")
            return
        sender = self.track if request.api is Api.TRACK else self.app
        if sender is None:
            await self._settle.failed(
                lease, RetryableError(f"no client configured for the {request.api.value} API")
            )
            return
        endpoint = f"{request.method} {request.path}"
        if not self._settle.may_resend(op) and not await self._marked_sending(planned):
            return
        started = time.perf_counter()
        try:
            await within_lease(
                planned.group, endpoint, sender.send(request), self.config.settle_margin
            )
        except ApiError as exc:
            self._observe_request(request.api, endpoint, exc.status, started)
            await self._settle.failed(lease, exc)
            return
        self._observe_request(request.api, endpoint, 200, started)
        self.stats.requests += 1
        self.stats.operations_sent += 1
        self.region.delivered(family_of(request.api))
        await self._settle.ack([lease])

    async def _marked_sending(self, planned: Planned) -> bool:
        """Record, durably and before the first byte, that the send is going out: should this
        worker die mid-request, whoever leases it next dead-letters it instead of sending it a
        second time. False, and the lease given back, when the send must not go out: the mark
        could not be written (the outbox fails), or the lease ran out meanwhile."""
        lease = planned.leases[0]
        try:
            await asyncio.to_thread(self.outbox.mark_sending, lease)
        except Exception as exc:
            self.health.failed("mark_sending", exc)
            await until_answered(self.health, "release", self.outbox.release, [lease])
            return False
        self.health.succeeded()
        return self._keep_live_leases(planned)

    def _observe_request(self, api: Api, endpoint: str, status: int | None, started: float) -> None:
        Hooks.fire(self.hooks.request, api.value, endpoint, status, time.perf_counter() - started)
