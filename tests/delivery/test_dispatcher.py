"""The dispatcher's decisions, against a scripted Customer.io and the in-memory outbox.

The scripted senders below stand in for the HTTP clients (whose own behaviour is tested in
tests/customerio); the emulator-backed tests in test_against_emulator.py cover the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from cio_relay import operations as ops
from cio_relay.delivery.dispatcher import Dispatcher, DispatcherConfig
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.ratelimit import TokenBucket
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.errors import AmbiguousError, PermanentError, RetryableError
from cio_relay.operations import Api, Operation, Request
from cio_relay.outbox.base import SENDING_MARK, DeadLetterFilter
from cio_relay.outbox.memory import MemoryOutbox
from tests.fixtures.fake_clock import FakeClock

FAST = RetryPolicy(base=0.001, cap=0.01, max_attempts=5)


@dataclass
class Result:
    errors: dict[int, Any] = field(default_factory=dict)


Outcome = Exception | Result | None
Script = Callable[[list[dict[str, Any]]], Outcome]


@dataclass
class ScriptedTrack:
    """Records every batch and v1 request; ``script`` decides each answer."""

    script: Script = lambda items: None
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    async def send_batch_raw(self, items: Sequence[bytes]) -> Result:
        batch = [orjson.loads(item) for item in items]
        self.batches.append(batch)
        outcome = self.script(batch)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome or Result()

    async def send(self, request: Request) -> Any:
        self.requests.append(request)
        outcome = self.script([request.body or {}])
        if isinstance(outcome, Exception):
            raise outcome
        return {}

    @property
    def delivered_ids(self) -> list[str]:
        return [item.get("id", "") for batch in self.batches for item in batch]


def _dispatcher(outbox: MemoryOutbox, track: Any, app: Any = None, **kw: Any) -> Dispatcher:
    config = DispatcherConfig(
        lease_size=kw.pop("lease_size", 5000), idle_wait=0.001, **kw.pop("config", {})
    )
    return Dispatcher(outbox, track, app, policy=kw.pop("policy", FAST), config=config, **kw)


def _enqueue(outbox: MemoryOutbox, *operations: Operation) -> list[Operation]:
    outbox.enqueue(operations)
    return list(operations)


async def test_track_operations_travel_in_one_v2_batch_and_are_acked() -> None:
    outbox = MemoryOutbox()
    sent = _enqueue(outbox, *(ops.track(f"u{i}", "e", {"i": i}) for i in range(50)))
    track = ScriptedTrack()
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    assert len(track.batches) == 1
    assert track.delivered_ids == [op.op_id for op in sent]
    assert stats.delivered == 50
    assert stats.requests == 1
    assert outbox.depth().pending == 0


async def test_batches_respect_the_byte_budget() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, *(ops.track(f"u{i}", "e", {"pad": "x" * 900}) for i in range(40)))
    track = ScriptedTrack()
    await _dispatcher(outbox, track, config={"batch_max_bytes": 10_000}).drain(timeout=10)
    assert len(track.batches) >= 4
    assert sum(len(b) for b in track.batches) == 40


async def test_207_dead_letters_only_refused_items_with_a_readable_reason() -> None:
    outbox = MemoryOutbox()
    sent = _enqueue(outbox, *(ops.track(f"u{i}", "e") for i in range(5)))
    refusal = {"batch_index": 3, "reason": "invalid", "field": "name", "message": "too long"}
    track = ScriptedTrack(lambda items: Result({3: refusal}))
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    assert stats.delivered == 4
    [dead] = outbox.list_dead()
    assert dead.op.op_id == sent[3].op_id
    assert dead.reason.value == "batch_item"
    assert dead.detail == "refused in batch: name: too long: invalid"


async def test_retryable_errors_are_retried_until_delivered() -> None:
    outbox = MemoryOutbox()
    [op] = _enqueue(outbox, ops.track("u", "e"))
    failures = iter([RetryableError("503", status=503), RetryableError("500", status=500)])
    track = ScriptedTrack(lambda items: next(failures, None))
    retries: list[str] = []
    hooks = Hooks()
    hooks.on_retry(lambda op, error, delay: retries.append(error))
    stats = await _dispatcher(outbox, track, hooks=hooks).drain(timeout=10)
    assert stats.delivered == 1
    assert retries == ["503", "500"]
    assert track.delivered_ids == [op.op_id] * 3  # same op id every time: Customer.io dedupes


async def test_retry_after_pauses_the_whole_api_family() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track("u", "e"))
    answers = iter([RetryableError("429", status=429, retry_after=0.2)])
    track = ScriptedTrack(lambda items: next(answers, None))
    clock = FakeClock()
    bucket = TokenBucket(rate=1000.0, burst=100.0, clock=clock, sleep=clock.sleep)
    await _dispatcher(outbox, track, limiters={Api.TRACK: bucket}).drain(timeout=10)
    # The retry waited on the limiter for the pause, then for a token (the pause spent the burst).
    assert clock.sleeps == pytest.approx([0.2, 0.001])
    assert len(track.batches) == 2


async def test_permanent_error_dead_letters_with_the_response_as_reason() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track_anonymous("anon", "e"))  # v1 only: one request
    track = ScriptedTrack(lambda items: PermanentError("400: event name invalid", status=400))
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    [dead] = outbox.list_dead()
    assert (dead.reason.value, dead.detail) == ("permanent", "400: event name invalid")
    assert stats.dead == {"permanent": 1}
    assert len(track.requests) == 1


async def test_a_batch_refused_whole_is_bisected_down_to_the_bad_item() -> None:
    outbox = MemoryOutbox()
    sent = _enqueue(outbox, *(ops.track(f"u{i}", "e", {"i": i}) for i in range(8)))
    bad = sent[5].op_id

    def refuse_bad(items: list[dict[str, Any]]) -> Outcome:
        if any(item["id"] == bad for item in items):
            return PermanentError("400: malformed", status=400)
        return None

    track = ScriptedTrack(refuse_bad)
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    assert stats.delivered == 7
    assert [d.op.op_id for d in outbox.list_dead()] == [bad]


async def test_ambiguous_transactional_send_is_dead_lettered_not_resent() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.send_email(to="a@x.test", transactional_message_id=1))
    app = ScriptedTrack(lambda items: AmbiguousError("read timeout after the request was sent"))
    stats = await _dispatcher(outbox, None, app).drain(timeout=10)
    assert len(app.requests) == 1
    [dead] = outbox.list_dead()
    assert dead.reason.value == "ambiguous"
    assert "may or may not have been processed" in dead.detail
    assert stats.retried == 0


async def test_ambiguous_track_event_is_retried_because_its_id_dedupes() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track("u", "e"))
    answers = iter([AmbiguousError("connection lost")])
    track = ScriptedTrack(lambda items: next(answers, None))
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    assert (stats.delivered, stats.retried, len(track.batches)) == (1, 1, 2)


async def test_retry_ambiguous_setting_resends_transactional() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.send_email(to="a@x.test", transactional_message_id=1))
    answers = iter([AmbiguousError("timeout")])
    app = ScriptedTrack(lambda items: next(answers, None))
    dispatcher = _dispatcher(outbox, None, app, config={"retry_ambiguous": True})
    stats = await dispatcher.drain(timeout=10)
    assert (stats.delivered, len(app.requests)) == (1, 2)


async def test_attempts_cap_dead_letters_with_the_last_error() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track("u", "e"))
    track = ScriptedTrack(lambda items: RetryableError("502 bad gateway", status=502))
    policy = RetryPolicy(base=0.001, cap=0.001, max_attempts=3)
    await _dispatcher(outbox, track, policy=policy).drain(timeout=10)
    [dead] = outbox.list_dead()
    assert dead.reason.value == "max_attempts"
    assert dead.detail == "gave up after 3 attempts; last error: 502 bad gateway"
    assert len(track.batches) == 3


async def test_age_cap_dead_letters_before_sending() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track("u", "e", created_at=1.0))
    track = ScriptedTrack()
    await _dispatcher(outbox, track, policy=RetryPolicy(max_age=60)).drain(timeout=10)
    assert track.batches == []
    assert outbox.list_dead()[0].reason.value == "max_age"


async def test_rejected_credentials_are_retried_not_dead_lettered() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track("u", "e"))
    answers = iter([PermanentError("401 unauthorized", status=401)])
    track = ScriptedTrack(lambda items: next(answers, None))
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    assert (stats.delivered, stats.retried, stats.dead_total) == (1, 1, 0)


async def test_per_person_order_holds_while_others_proceed() -> None:
    outbox = MemoryOutbox()
    a = _enqueue(outbox, *(ops.track("alice", f"a{i}") for i in range(3)))
    b = _enqueue(outbox, *(ops.track("bob", f"b{i}") for i in range(3)))
    fail_once = {a[0].op_id}

    def script(items: list[dict[str, Any]]) -> Outcome:
        if any(item["id"] in fail_once for item in items):
            fail_once.clear()
            return RetryableError("503", status=503)
        return None

    track = ScriptedTrack(script)
    await _dispatcher(outbox, track).drain(timeout=10)
    delivered = track.delivered_ids
    alice = [i for i in delivered if i in {op.op_id for op in a}]
    # alice's first op went out twice (the failure, then the retry); order never inverted
    assert [i for n, i in enumerate(alice) if i not in alice[:n]] == [op.op_id for op in a]
    first_success_of_alice = len(delivered) - delivered[::-1].index(a[0].op_id) - 1
    assert all(delivered.index(op.op_id) > first_success_of_alice for op in a[1:])
    bobs = [delivered.index(op.op_id) for op in b]
    assert bobs == sorted(bobs)


async def test_hooks_report_delivery_latency_and_dead_letters() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.track("u", "ok"), ops.track_anonymous("anon", "bad"))

    def script(items: list[dict[str, Any]]) -> Outcome:
        return PermanentError("400", status=400) if items[0].get("anonymous_id") else None

    seen: dict[str, list[Any]] = {"delivered": [], "dead": [], "request": []}
    hooks = Hooks()
    hooks.on_delivered(lambda op, latency: seen["delivered"].append((op.kind, latency)))
    hooks.on_dead(lambda op, reason, detail: seen["dead"].append(reason))
    hooks.on_request(lambda api, endpoint, status, took: seen["request"].append(status))
    await _dispatcher(outbox, ScriptedTrack(script), hooks=hooks).drain(timeout=10)
    [(kind, latency)] = seen["delivered"]
    assert kind is ops.Kind.TRACK and latency >= 0
    assert seen["dead"] == ["permanent"]
    assert sorted(seen["request"]) == [200, 400]


async def test_graceful_stop_finishes_in_flight_requests() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, *(ops.track(f"u{i}", "e") for i in range(10)))
    release = asyncio.Event()
    entered = asyncio.Event()

    class SlowTrack(ScriptedTrack):
        async def send_batch_raw(self, items: Sequence[bytes]) -> Result:
            entered.set()
            await release.wait()
            return await super().send_batch_raw(items)

    track = SlowTrack()
    dispatcher = _dispatcher(outbox, track)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await entered.wait()
    stop.set()
    release.set()
    await asyncio.wait_for(running, 10)
    assert dispatcher.stats.delivered == 10
    assert outbox.depth().pending == 0


async def test_stop_past_grace_releases_idempotent_and_dead_letters_unsure_sends() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.send_email(to="a@x.test", transactional_message_id=1))
    entered = asyncio.Event()

    class HangingApp(ScriptedTrack):
        async def send(self, request: Request) -> Any:
            entered.set()
            await asyncio.Event().wait()  # never answers

    dispatcher = _dispatcher(outbox, None, HangingApp(), config={"grace_period": 0.05})
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await entered.wait()
    stop.set()
    await asyncio.wait_for(running, 10)
    [dead] = outbox.list_dead(DeadLetterFilter(reason="ambiguous"))
    assert dead.op.kind is ops.Kind.SEND_EMAIL


@pytest.mark.parametrize("kind", ["track", "send_email"])
async def test_no_client_for_an_api_keeps_the_work(kind: str) -> None:
    outbox = MemoryOutbox()
    op = (
        ops.track("u", "e")
        if kind == "track"
        else ops.send_email(to="a@x.test", transactional_message_id=1)
    )
    _enqueue(outbox, op)
    policy = RetryPolicy(base=0.001, cap=0.001, max_attempts=2)
    await _dispatcher(outbox, None, None, policy=policy).drain(timeout=10)
    [dead] = outbox.list_dead()
    assert "no client configured" in dead.detail


async def test_a_send_left_marked_by_a_dead_worker_is_dead_lettered_not_resent() -> None:
    outbox = MemoryOutbox()
    [email] = _enqueue(outbox, ops.send_email(to="a@x.test", transactional_message_id=1))
    app = ScriptedTrack()
    [lease] = outbox.lease(10, 0.01)
    # What the dispatcher does before writing the request; then the worker dies.
    outbox.mark_sending(lease)
    stats = await _dispatcher(outbox, None, app).drain(timeout=10)
    assert app.requests == [] and stats.delivered == 0
    [dead] = outbox.list_dead()
    assert (dead.op, dead.reason.value) == (email, "ambiguous")
    assert "a worker stopped" in dead.detail


async def test_a_transactional_send_is_marked_before_it_is_written() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.send_email(to="a@x.test", transactional_message_id=1))
    seen: list[str | None] = []

    def look_at_the_outbox(items: list[dict[str, Any]]) -> None:
        # While the request is on the wire, a second worker would find the mark.
        seen.extend(entry.last_error for entry in outbox._entries.values())

    app = ScriptedTrack(look_at_the_outbox)
    stats = await _dispatcher(outbox, None, app).drain(timeout=10)
    assert stats.delivered == 1 and seen == [SENDING_MARK]


async def test_idempotent_operations_are_not_marked() -> None:
    outbox = MemoryOutbox()
    _enqueue(outbox, ops.suppress("u"))
    seen: list[str | None] = []
    track = ScriptedTrack(
        lambda items: seen.extend(e.last_error for e in outbox._entries.values()) or None
    )
    stats = await _dispatcher(outbox, track).drain(timeout=10)
    assert stats.delivered == 1 and seen == [None]
