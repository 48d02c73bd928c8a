"""Keeping the leases of work under way, and never sending past them.

Leases are short (``lease_seconds``, 10 s by default) and a heartbeat extends those still in
work (``Outbox.extend``), so a crashed worker's operations are taken over within one lease time
while a live one keeps its slow sends. The operations of one ``lease`` call share a deadline
(``LeaseGroup``); every look (``heartbeat``, four per lease) renews the groups with less than
half a lease left (``renew_due_leases``).

A request still unanswered shortly before its lease runs out (the heartbeat could not renew it:
the storage fails) is abandoned as ambiguous (``within_lease``): past the lease another worker
may lease the operation and send it again. The margin left (``settle_margin``) is the time to
record the outcome while the lease is still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from cio_relay.delivery.storage import StorageHealth
from cio_relay.errors import AmbiguousError
from cio_relay.outbox.base import Lease, Outbox

__all__ = ["HeldWork", "LeaseGroup", "heartbeat", "renew_due_leases", "within_lease"]

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class LeaseGroup:
    """The leases of one ``lease`` call, which share a deadline that the heartbeat renews.

    ``until`` is a lower bound of the deadline the outbox holds: it moves only after a renewal
    that finished before the previous deadline (a renewal that ends later may have come after
    another worker took the leases over, when it changes nothing). Requests under way are
    bounded by ``until`` (``deadlines``) and rescheduled with it.
    """

    until: float
    deadlines: set[asyncio.Timeout] = field(default_factory=set)

    def left(self) -> float:
        """Seconds until the deadline (negative once past it)."""
        return self.until - time.time()

    def renewed(self, until: float, margin: float) -> None:
        self.until = until
        loop = asyncio.get_running_loop()
        when = loop.time() + (until - time.time()) - margin
        for deadline in self.deadlines:
            if not deadline.expired():
                deadline.reschedule(when)


class HeldWork(Protocol):
    """Work whose leases are renewed while it is planned, waiting or sending."""

    @property
    def group(self) -> LeaseGroup: ...

    @property
    def leases(self) -> list[Lease]: ...


@contextlib.asynccontextmanager
async def heartbeat(renew: Callable[[], Awaitable[None]], every: float) -> AsyncIterator[None]:
    """Call ``renew`` every ``every`` seconds while the block runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            await renew()

    task = asyncio.create_task(beat(), name="cio-relay-lease-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def renew_due_leases(
    outbox: Outbox,
    held: Iterable[HeldWork],
    health: StorageHealth,
    *,
    lease_seconds: float,
    renew_below: float,
    settle_margin: float,
) -> None:
    """Extend the leases of every group in work whose deadline comes within ``renew_below``.

    Groups whose deadline has passed are not renewed: another worker may hold their leases now;
    their sends are stopped by the deadline and nothing of them is sent again here.
    """
    now = time.time()
    due: dict[LeaseGroup, list[Lease]] = {}
    for work in held:
        left = work.group.until - now
        if 0 < left < renew_below:
            due.setdefault(work.group, []).extend(work.leases)
    if not due:
        return
    leases = [lease for group_leases in due.values() for lease in group_leases]
    try:
        await asyncio.to_thread(outbox.extend, leases, lease_seconds, now=now)
    except Exception as exc:
        health.failed("extend", exc)
        return
    health.succeeded()
    finished = time.time()
    for group in due:
        if finished < group.until:  # extended before anyone else could take them over
            group.renewed(now + lease_seconds, settle_margin)


async def within_lease(group: LeaseGroup, endpoint: str, call: Awaitable[T], margin: float) -> T:
    """Await ``call``, giving up ``margin`` seconds before ``group``'s leases run out (the
    heartbeat renews them, and the deadline moves with them).

    The margin leaves time to record the outcome while the lease is still ours (a late
    ``retry_later``/``dead_letter`` would be ignored, and another worker may have sent the
    operation again by then).
    """
    started = time.time()
    deadline = asyncio.timeout(max(0.0, group.until - started - margin))
    try:
        async with deadline:
            group.deadlines.add(deadline)
            try:
                return await call
            finally:
                group.deadlines.discard(deadline)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise AmbiguousError(
            f"{endpoint} had no answer after {time.time() - started:.1f} s, when its "
            "lease was about to run out",
            endpoint=endpoint,
        ) from None
