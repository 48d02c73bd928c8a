"""The dispatcher rides out a failing outbox and renews the leases of work in progress.

``FlakyOutbox`` is the in-memory outbox with chosen calls failing the way SQLite does when the
disk is full (``sqlite3.OperationalError``): the first ``n`` calls of a method raise, the rest
work. Every test ends with the outbox empty and each operation sent exactly as often as the
contracts allow, and nothing sleeps: ``drain`` returns once the work is done, and the scripted
senders wait on events the outbox sets.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

from cio_relay import operations as ops
from cio_relay.delivery.dispatcher import Dispatcher, DispatcherConfig
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.delivery.storage import StorageHealth
from cio_relay.errors import RetryableError
from cio_relay.operations import Request
from cio_relay.outbox.base import DeadLetterFilter, Lease
from cio_relay.outbox.memory import MemoryOutbox
from tests.delivery.test_dispatcher import Result, ScriptedTrack

FAST = RetryPolicy(base=0.001, cap=0.01, max_attempts=5)
DISK_FULL = "database or disk is full"


class FlakyOutbox(MemoryOutbox):
    """``MemoryOutbox`` whose next ``failures[method]`` calls of ``method`` raise."""

    def __init__(self, **failures: int) -> None:
        super().__init__()
        self.failures = Counter(failures)
        self.calls: Counter[str] = Counter()

    def _maybe_fail(self, method: str) -> None:
        self.calls[method] += 1
        if self.failures[method] > 0:
            self.failures[method] -= 1
            raise sqlite3.OperationalError(DISK_FULL)

    def lease(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[Lease]:
        self._maybe_fail("lease")
        return super().lease(limit, lease_seconds, now=now)

    def ack(self, leases: Iterable[Lease]) -> None:
        self._maybe_fail("ack")
        super().ack(leases)

    def retry_later(self, lease: Lease, **kw: Any) -> None:
        self._maybe_fail("retry_later")
        super().retry_later(lease, **kw)

    def dead_letter(self, lease: Lease, *args: Any, **kw: Any) -> None:
        self._maybe_fail("dead_letter")
        super().dead_letter(lease, *args, **kw)

    def mark_sending(self, lease: Lease) -> None:
        self._maybe_fail("mark_sending")
        super().mark_sending(lease)

    def extend(self, leases: Iterable[Lease], lease_seconds: float, **kw: Any) -> None:
        self._maybe_fail("extend")
        super().extend(leases, lease_seconds, **kw)


def _dispatcher(outbox: MemoryOutbox, track: Any, app: Any = None, **config: Any) -> Dispatcher:
    hooks = Hooks()
    return Dispatcher(
        outbox,
        track,
        app,
        policy=FAST,
        hooks=hooks,
        config=DispatcherConfig(idle_wait=0.001, **config),
        health=StorageHealth(hooks),
    )


def _failed_operations(dispatcher: Dispatcher) -> Counter[str]:
    seen: Counter[str] = Counter()
    dispatcher.hooks.on_storage_error(lambda operation, exc: seen.update([operation]))
    return seen


def _email(n: int) -> ops.Operation:
    return ops.send_email(
        to=f"p{n}@example.com", identifiers={"id": f"p{n}"}, transactional_message_id="welcome"
    )


class ScriptedApp:
    """Records every App API request; answers 200."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def send(self, request: Request) -> Any:
        self.requests.append(request)
        return {}


async def test_delivery_waits_out_a_failing_lease_and_resumes_by_itself() -> None:
    outbox = FlakyOutbox(lease=5)
    events = [ops.track(f"u{n}", "signed_up") for n in range(20)]
    outbox.enqueue(events)
    dispatcher = _dispatcher(outbox, track := ScriptedTrack())
    failed = _failed_operations(dispatcher)
    stats = await dispatcher.drain(timeout=30)
    assert stats.delivered == len(events)
    assert sorted(track.delivered_ids) == sorted(op.op_id for op in events)
    assert failed == {"lease": 5}
    assert dispatcher.health.status() == "ok" and dispatcher.health.failing_since is None
    assert outbox.depth().pending == 0


async def test_outcomes_that_cannot_be_recorded_are_recorded_once_the_outbox_answers() -> None:
    # Each settling call fails a few times: the outcome is written late, never lost, and no
    # operation is sent a second time meanwhile (its lease is still held).
    outbox = FlakyOutbox(ack=3, retry_later=2, dead_letter=2)
    delivered = [ops.track(f"d{n}", "signed_up") for n in range(5)]
    retried = ops.track("r", "signed_up")
    refused = ops.track("x", "signed_up")
    outbox.enqueue([*delivered, retried, refused])
    answers = {retried.op_id: [RetryableError("503", status=503)]}

    def script(items: list[dict[str, Any]]) -> Any:
        for item in items:
            if item["id"] == refused.op_id:
                return Result(errors={items.index(item): {"message": "bad"}})
            if answers.get(item["id"]):
                return answers[item["id"]].pop()
        return None

    # One operation a lease, so one a batch: the 503 and the refusal concern one event each.
    dispatcher = _dispatcher(outbox, track := ScriptedTrack(script), lease_size=1)
    failed = _failed_operations(dispatcher)
    stats = await dispatcher.drain(timeout=30)
    assert failed == {"ack": 3, "retry_later": 2, "dead_letter": 2}
    assert stats.retried >= 1 and stats.dead == {"batch_item": 1}
    assert outbox.depth().pending == 0
    [dead] = outbox.list_dead(DeadLetterFilter())
    assert dead.op == refused
    sent = Counter(track.delivered_ids)
    assert all(sent[op.op_id] == 1 for op in delivered)


async def test_a_send_whose_mark_cannot_be_written_is_given_back_unsent() -> None:
    # Without the "sending" mark, a crash mid-request would let the next worker send the email
    # again; so no mark, no send: the lease is given back and the send goes out later, once.
    outbox = FlakyOutbox(mark_sending=2)
    emails = [_email(n) for n in range(3)]
    outbox.enqueue(emails)
    dispatcher = _dispatcher(outbox, None, app := ScriptedApp())
    failed = _failed_operations(dispatcher)
    stats = await dispatcher.drain(timeout=30)
    assert failed == {"mark_sending": 2}
    assert (stats.delivered, stats.dead_total) == (3, 0)
    sent = Counter(request.body["identifiers"]["id"] for request in app.requests)
    assert sent == {"p0": 1, "p1": 1, "p2": 1}


async def test_readiness_sees_the_outage_while_it_lasts() -> None:
    outbox = FlakyOutbox(lease=3)
    outbox.enqueue([ops.track("u", "signed_up")])
    dispatcher = _dispatcher(outbox, ScriptedTrack())
    during: list[str] = []
    dispatcher.hooks.on_storage_error(lambda *_: during.append(dispatcher.health.status()))
    await dispatcher.drain(timeout=30)
    assert during == ["unavailable: OperationalError"] * 3
    assert dispatcher.health.status() == "ok"


async def test_run_keeps_going_through_an_outage_and_stops_when_told() -> None:
    outbox = FlakyOutbox(lease=1_000_000)  # the storage never comes back
    outbox.enqueue([ops.track("u", "signed_up")])
    dispatcher = _dispatcher(outbox, ScriptedTrack())
    stop = asyncio.Event()
    failures = 0

    def count(*_: Any) -> None:
        nonlocal failures
        failures += 1
        if failures == 4:
            stop.set()

    dispatcher.hooks.on_storage_error(count)
    await asyncio.wait_for(dispatcher.run(stop), timeout=30)  # returns: no exception escapes
    assert failures >= 4 and outbox.depth().pending == 1


class RenewalWatch(FlakyOutbox):
    """Notes each renewal; ``renewed`` is set after ``wanted`` of them."""

    def __init__(self, wanted: int, **failures: int) -> None:
        super().__init__(**failures)
        self.wanted = wanted
        self.renewals: list[float] = []
        self.renewed = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def extend(self, leases: Iterable[Lease], lease_seconds: float, **kw: Any) -> None:
        super().extend(leases, lease_seconds, **kw)
        self.renewals.append(time.time())
        if len(self.renewals) >= self.wanted:
            self.loop.call_soon_threadsafe(self.renewed.set)


async def test_the_heartbeat_keeps_the_leases_of_a_slow_send() -> None:
    lease_seconds = 0.4
    outbox = RenewalWatch(wanted=4)
    outbox.enqueue([op := ops.track("u", "signed_up")])
    leased_by_another: list[list[Lease]] = []

    async def slow_send(items: Any) -> Any:
        await outbox.renewed.wait()  # well past the first deadline: 4 renewals
        leased_by_another.append(outbox.lease(10, lease_seconds))  # a second worker's try
        return Result()

    track = ScriptedTrack()
    track.send_batch_raw = slow_send  # type: ignore[method-assign]
    dispatcher = _dispatcher(outbox, track, lease_seconds=lease_seconds)
    stats = await dispatcher.drain(timeout=30)
    assert stats.delivered == 1 and leased_by_another == [[]]
    assert outbox.renewals[-1] - outbox.renewals[0] > lease_seconds / 2
    assert outbox.depth().pending == 0 and op.op_id not in outbox._entries


async def test_a_send_whose_lease_cannot_be_renewed_is_abandoned_before_it_runs_out() -> None:
    # The renewals fail: the send is cut shortly before the lease runs out (another worker
    # could then lease the operation), and recorded as ambiguous: a Track event is retried
    # (its id de-duplicates), and its retry goes out once the renewals work again.
    lease_seconds = 0.5
    outbox = FlakyOutbox(extend=1_000_000)
    outbox.enqueue([op := ops.track("u", "signed_up")])
    cut = asyncio.Event()
    attempts = 0

    async def hanging_then_quick(items: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            try:
                await asyncio.Event().wait()  # never answered
            except asyncio.CancelledError:
                cut.set()
                outbox.failures["extend"] = 0
                raise
        return Result()

    track = ScriptedTrack()
    track.send_batch_raw = hanging_then_quick  # type: ignore[method-assign]
    dispatcher = _dispatcher(outbox, track, lease_seconds=lease_seconds)
    started = time.time()
    stats = await dispatcher.drain(timeout=30)
    assert cut.is_set() and attempts == 2
    assert (stats.retried, stats.delivered) == (1, 1)
    assert outbox.depth().pending == 0 and outbox.calls["extend"] >= 1
    assert time.time() - started >= lease_seconds - DispatcherConfig(lease_seconds).settle_margin
    assert op.op_id not in outbox._entries


@pytest.mark.parametrize("lease_seconds", [0.4, 10.0, 60.0])
def test_renewal_comes_with_a_quarter_of_the_lease_left(lease_seconds: float) -> None:
    config = DispatcherConfig(lease_seconds=lease_seconds)
    # A look every quarter renews anything under half: the renewal starts with more than a
    # quarter left, so a late look or a slow call still ends before the deadline.
    assert config.renew_below - config.heartbeat_every >= lease_seconds / 4
    assert 0 < config.settle_margin <= min(1.0, lease_seconds / 4)
