"""Settling a send: recording what became of each operation once its request was answered.

The dispatcher sends; a ``Settler`` carries out the outcome in the outbox, the counters and the
hooks: ``ack`` what Customer.io accepted, ``failed`` for an error (``outcomes.judge_failure``
decides: retry later, dead-letter, or hold for a wrong region), ``dead`` for what can never be
sent, and ``abandon`` at shutdown past the grace period.

Every outbox call here waits out a failing outbox (``until_answered``): an outcome recorded
late is still right, see storage.py. ``abandon`` is the exception: shutdown tries once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.outcomes import GiveUp, Pause, judge_failure
from cio_relay.delivery.ratelimit import RateLimiter, Unlimited
from cio_relay.delivery.region import RegionGate, family_of
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.delivery.storage import StorageHealth, until_answered
from cio_relay.errors import ApiError
from cio_relay.operations import Api, Operation
from cio_relay.outbox.base import DeadReason, Lease, Outbox

__all__ = ["DispatchStats", "Settler"]

log = logging.getLogger("cio_relay.delivery")


@dataclass
class DispatchStats:
    """Counters since the dispatcher started (the demo's summary, tests)."""

    delivered: int = 0
    retried: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    operations_sent: int = 0
    held: int = 0  # kept in the outbox because their API family was paused (wrong region)

    @property
    def dead_total(self) -> int:
        return sum(self.dead.values())


class Settler:
    """Records each send's outcome for one dispatcher (its outbox, counters and hooks)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        stats: DispatchStats,
        health: StorageHealth,
        hooks: Hooks,
        policy: RetryPolicy,
        limiters: Mapping[Api, RateLimiter],
        region: RegionGate,
        retry_ambiguous: bool,
    ) -> None:
        self.outbox = outbox
        self.stats = stats
        self.health = health
        self.hooks = hooks
        self.policy = policy
        self.limiters = limiters
        self.region = region
        self.retry_ambiguous = retry_ambiguous

    def may_resend(self, op: Operation) -> bool:
        """Whether a second copy of ``op`` is harmless (or the user accepts the risk)."""
        return op.idempotent or self.retry_ambiguous

    async def ack(self, leases: list[Lease]) -> None:
        if not leases:
            return
        await until_answered(self.health, "ack", self.outbox.ack, leases)
        now = time.time()
        self.stats.delivered += len(leases)
        if self.hooks.delivered:
            for lease in leases:
                Hooks.fire(self.hooks.delivered, lease.op, now - lease.op.created_at)

    async def failed(self, lease: Lease, exc: ApiError) -> None:
        """Carry out what ``exc`` means for the operation: dead-letter, hold or retry it."""
        op = lease.op
        verdict = judge_failure(op, exc, may_resend=self.may_resend(op))
        if isinstance(verdict, GiveUp):
            await self.dead(lease, verdict.reason, verdict.detail)
            return
        if isinstance(verdict, Pause):
            await self.hold([lease], op.api, verdict.detail)
            return
        if verdict.pause_family and verdict.retry_after:
            self.limiters.get(op.api, Unlimited()).pause_for(verdict.retry_after)
        if verdict.credentials_refused:
            log.error(
                "Customer.io refused the credentials (%s) for %s; will retry",
                exc.status,
                op.api.value,
            )
        await self._retry(lease, exc, verdict.retry_after)

    async def hold(self, leases: list[Lease], api: Api, detail: str) -> None:
        """Customer.io places the account in another region: pause the family and keep its
        operations until the next probe, counting no attempt. A sending mark must go (the
        answer says the request was not processed, so it may be sent again): only
        ``retry_later`` replaces it, and that counts an attempt, which the pause never
        turns into a dead letter."""
        delay = self.region.pause(family_of(api), detail)
        marked = [lease for lease in leases if not self.may_resend(lease.op)]
        untouched = [lease for lease in leases if self.may_resend(lease.op)]
        if untouched:
            await until_answered(
                self.health, "release", self.outbox.release, untouched, delay=delay
            )
        for lease in marked:
            await self._retry_later(lease, delay, detail)
        self.stats.held += len(leases)

    async def dead(self, lease: Lease, reason: DeadReason, detail: str) -> None:
        await until_answered(
            self.health, "dead_letter", self.outbox.dead_letter, lease, reason, detail
        )
        self._count_dead(lease, reason, detail)

    async def abandon(self, leases: list[Lease], *, maybe_written: bool) -> None:
        """Shutdown: one try each, no waiting on a failing outbox. Leases not given back run
        out; a send that may have been written was marked first (``mark_sending``), so it is
        never sent twice either way."""
        unsafe = [lease for lease in leases if maybe_written and not lease.op.idempotent]
        safe = [lease for lease in leases if lease not in unsafe]
        reason = "shutdown interrupted the request after it was sent"
        try:
            if safe:
                await asyncio.to_thread(self.outbox.release, safe)
            for lease in unsafe:
                await asyncio.to_thread(
                    self.outbox.dead_letter, lease, DeadReason.AMBIGUOUS, reason
                )
                self._count_dead(lease, DeadReason.AMBIGUOUS, reason)
        except Exception as exc:
            self.health.failed("release", exc)

    async def _retry(self, lease: Lease, exc: Exception, retry_after: float | None) -> None:
        attempts = lease.attempts + 1
        error = str(exc) or type(exc).__name__
        if self.policy.exhausted(attempts):
            await self.dead(
                lease,
                DeadReason.MAX_ATTEMPTS,
                f"gave up after {attempts} attempts; last error: {error}",
            )
            return
        delay = self.policy.delay(lease.attempts, retry_after)
        await self._retry_later(lease, delay, error)
        self.stats.retried += 1
        Hooks.fire(self.hooks.retry, lease.op, error, delay)

    async def _retry_later(self, lease: Lease, delay: float, error: str) -> None:
        await until_answered(
            self.health,
            "retry_later",
            self.outbox.retry_later,
            lease,
            retry_at=time.time() + delay,
            error=error,
        )

    def _count_dead(self, lease: Lease, reason: DeadReason, detail: str) -> None:
        self.stats.dead[reason.value] = self.stats.dead.get(reason.value, 0) + 1
        log.warning("dead-lettered %s %s: %s", lease.op.kind.value, lease.op.op_id, detail)
        Hooks.fire(self.hooks.dead, lease.op, reason.value, detail)
