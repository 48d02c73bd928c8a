"""The real ``Worker`` on a SQLite outbox, fed by a ``Relay``, against the emulator over 127.0.0.1.

The emulator's fault injection (``POST /_emulator/faults``) plays Customer.io on a bad day; what
it accepted is read back through ``/_emulator/`` (stats, events, people, deliveries, requests):

- under 429s with ``Retry-After``, 5xx answers, connections dropped after the request was
  processed, added latency and a timed-out batch, every operation is accepted exactly once, in
  order per person, and the outbox ends empty;
- a 207 delivers the valid items and dead-letters the refused one with a reason naming the
  problem; replaying it (nothing fixed) dead-letters it again the same way, and replaying one
  that gave up on 5xx delivers it, op ids unchanged;
- a transactional send whose answer was lost, or that was answered 500/502/504, is
  dead-lettered as ``ambiguous``, not sent twice; after a 503 or 429 it is sent again;
- with a low transactional rate limit, work beyond the family's queue cap is released with a
  delay (``Outbox.release(delay=...)``) instead of waiting out its lease, and all of it is sent
  once;
- a send kept waiting for a connection keeps its lease (the heartbeat renews it) and goes out
  once; when the lease cannot be renewed (the outbox fails), the send is abandoned and settled
  before its lease runs out.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.customerio._shell import DEFAULT_MAX_CONNECTIONS
from cio_relay.delivery.ratelimit import TokenBucket
from cio_relay.emulator import EmulatorServer
from cio_relay.operations import Api
from cio_relay.outbox.base import DeadLetterFilter, DeadReason, Lease
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from tests.fixtures.delivery import emulator_settings, in_order_per_person, pages, wait_for
from tests.fixtures.fake_clock import FakeClock

PEOPLE = [f"user-{p}" for p in range(20)]
ROUNDS = 4
DRAIN_TIMEOUT = 30.0


def _settings(emulator: EmulatorServer, tmp_path: Path, **overrides: Any) -> Settings:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    # Fast retries; a Retry-After (<= retry_cap) is still honoured.
    fast: dict[str, Any] = {"retry_base": 0.01, "retry_cap": 2.0}
    return emulator_settings(emulator, outbox, **{**fast, **overrides})


def _send_welcome_emails(relay: Relay, count: int) -> list[str]:
    """``count`` transactional emails to ``person-<n>``, ``message_data.n`` numbering them."""
    return [
        relay.send_email(
            to=f"person-{n}@example.com",
            identifiers={"id": f"person-{n}"},
            transactional_message_id="welcome",
            message_data={"n": n},
        )
        for n in range(count)
    ]


def _enqueue_workload(relay: Relay) -> list[str]:
    """For each person, ``ROUNDS`` times: an event numbered ``n``, then an identify setting
    ``step`` to the same number. Returns the event op ids."""
    events: list[str] = []
    for k in range(ROUNDS):
        for person in PEOPLE:
            events.append(relay.track(person, "step", {"n": k}))
            relay.identify(person, step=k, **{f"seen_{k}": True})
    return events


def _assert_each_accepted_once_in_order(
    relay: Relay, inspect: httpx.Client, event_ids: list[str]
) -> dict[str, Any]:
    """Nothing left in the outbox; every event accepted once, in order per person; every
    identify applied, the last one last. Returns the emulator's stats."""
    depth = relay.outbox.depth()
    assert (depth.pending, depth.dead) == (0, 0)
    stats: dict[str, Any] = inspect.get("/stats").json()
    assert stats["events_accepted"] == len(event_ids)
    events = pages(inspect, "/events", "events")
    assert sorted(event["id"] for event in events) == sorted(event_ids)
    assert in_order_per_person(events) == {person: list(range(ROUNDS)) for person in PEOPLE}
    people = {person["id"]: person["attributes"] for person in pages(inspect, "/people", "people")}
    assert people == {
        person: {"step": ROUNDS - 1, **{f"seen_{k}": True for k in range(ROUNDS)}}
        for person in PEOPLE
    }
    return stats


def _requests(inspect: httpx.Client) -> list[tuple[float, str, str, int]]:
    """Answered API requests as (arrival on the monotonic clock, method, path, status)."""
    rows = pages(inspect, "/requests", "requests")
    return sorted((arrived, method, path, status) for arrived, method, path, status in rows)


FAULTS: dict[str, dict[str, Any]] = {
    "429 with Retry-After": {
        "path": "/api/",
        "error_rate": 1.0,
        "status_codes": [429],
        "retry_after": 1,
        "count": 2,
    },
    "500s": {"path": "/api/", "error_rate": 1.0, "status_codes": [500, 502, 503], "count": 3},
    "dropped connections": {
        "path": "/api/",
        "drop_rate": 1.0,
        "drop_after_processing": True,  # applied, then the answer is lost: the worker resends
        "count": 2,
    },
    "added latency": {"path": "/api/", "latency_ms": 60},
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_operation_is_accepted_once_in_order_under_faults(
    fault: str, emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    inspect.post("/faults", json=FAULTS[fault]).raise_for_status()
    clock = FakeClock()  # the Track limiter's: its waits are read, not measured
    with Relay(_settings(emulator, tmp_path)) as relay:
        bucket = TokenBucket(relay.settings.track_rate, clock=clock, sleep=clock.sleep)
        event_ids = _enqueue_workload(relay)
        stats = relay.worker(limiters=lambda: {Api.TRACK: bucket}).drain(timeout=DRAIN_TIMEOUT)
        assert stats.dead_total == 0
        assert stats.delivered == 2 * len(event_ids)
        seen = _assert_each_accepted_once_in_order(relay, inspect, event_ids)

    requests = _requests(inspect)
    if fault == "429 with Retry-After":
        assert seen["injected_errors"] == 2
        assert stats.retried > 0
        assert [status for *_, status in requests].count(429) == 2
        # The first wait on the limiter was the Retry-After second: the 429 paused the family
        # (the first requests went at once, on the bucket's burst).
        assert clock.sleeps[0] == pytest.approx(1.0)
    elif fault == "500s":
        assert seen["injected_errors"] == 3
        assert Counter(status for *_, status in requests)[200] == len(requests) - 3
        assert seen["duplicate_event_ids"] == 0  # refused before processing: nothing to dedupe
    elif fault == "dropped connections":
        assert seen["dropped_connections"] == 2
        assert seen["duplicate_event_ids"] > 0  # resent after the lost answers, ignored by id
    else:
        assert seen["delayed_requests"] == seen["requests_total"] == len(requests)
        assert stats.retried == 0


def test_a_batch_that_timed_out_is_resent_and_its_events_counted_once(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    # The first batch (everyone's first event) answers after the worker's timeout: an
    # ambiguous failure, resent because events carry their op id. The late original is then
    # applied by the emulator too, and ignored as a duplicate.
    fault = {"path": "/api/v2/batch", "latency_ms": 1500, "count": 1}
    inspect.post("/faults", json=fault).raise_for_status()
    with Relay(_settings(emulator, tmp_path, http_timeout=0.5)) as relay:
        event_ids = _enqueue_workload(relay)
        stats = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        assert (stats.retried, stats.dead_total) == (len(PEOPLE), 0)
        # The late original lands after the drain: wait for it, then check nothing doubled.
        assert wait_for(
            lambda: inspect.get("/stats").json()["duplicate_event_ids"] == len(PEOPLE), 30
        ), "the timed-out batch was never applied"
        _assert_each_accepted_once_in_order(relay, inspect, event_ids)


def _refused_by_customerio(person: str) -> ops.Operation:
    """An event Customer.io refuses (name over 100 bytes) built around our enqueue checks, as a
    row written by an older release or edited by hand could be."""
    valid = ops.track(person, "step", {"n": 0})
    return dataclasses.replace(valid, payload={**valid.payload, "name": "x" * 101})


def test_a_207_delivers_valid_items_and_dead_letters_the_refused_one_again_on_replay(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    with Relay(_settings(emulator, tmp_path)) as relay:
        valid = [relay.track(person, "step", {"n": 0}) for person in PEOPLE[:4]]
        [refused] = relay.enqueue(_refused_by_customerio(PEOPLE[4]))
        stats = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        assert (stats.delivered, stats.dead) == (4, {"batch_item": 1})
        [dead] = relay.outbox.list_dead()
        assert (dead.op.op_id, dead.reason) == (refused, DeadReason.BATCH_ITEM)
        assert dead.detail == (
            "refused in batch: name: event name cannot be longer than 100 bytes: too_long"
        )
        assert [(method, path, status) for _, method, path, status in _requests(inspect)] == [
            ("POST", "/api/v2/batch", 207)
        ]
        events = pages(inspect, "/events", "events")
        assert sorted(event["id"] for event in events) == sorted(valid)

        # Replayed with nothing fixed: refused again for the same reason, op id kept.
        assert relay.outbox.replay(DeadLetterFilter(op_ids=(refused,))) == 1
        again = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        assert (again.delivered, again.dead) == (0, {"batch_item": 1})
        [dead_again] = relay.outbox.list_dead()
        assert (dead_again.op.op_id, dead_again.reason, dead_again.detail) == (
            refused,
            dead.reason,
            dead.detail,
        )
        assert relay.outbox.depth().pending == 0
    stats_seen = inspect.get("/stats").json()
    assert (stats_seen["batch_items_accepted"], stats_seen["batch_items_refused"]) == (4, 2)


def test_replaying_a_dead_letter_that_gave_up_on_5xx_delivers_it_with_its_op_id(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    fault = {"path": "/api/", "error_rate": 1.0, "status_codes": [500], "count": 2}
    inspect.post("/faults", json=fault).raise_for_status()
    with Relay(_settings(emulator, tmp_path, max_attempts=2)) as relay:
        op_id = relay.track(PEOPLE[0], "step", {"n": 0})
        stats = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        assert stats.dead == {"max_attempts": 1}
        [dead] = relay.outbox.list_dead()
        assert dead.op.op_id == op_id
        assert dead.detail.startswith("gave up after 2 attempts; last error: ")
        assert "500" in dead.detail
        assert inspect.get("/stats").json()["events_accepted"] == 0

        assert relay.outbox.replay(DeadLetterFilter(reason="max_attempts")) == 1
        replayed = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        assert (replayed.delivered, replayed.dead_total) == (1, 0)
        depth = relay.outbox.depth()
        assert (depth.pending, depth.dead) == (0, 0)
    [event] = pages(inspect, "/events", "events")
    assert (event["id"], event["customer_id"], event["data"]) == (op_id, PEOPLE[0], {"n": 0})


def test_an_ambiguous_transactional_send_is_dead_lettered_not_sent_twice(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    # The first send to arrive is applied (an email goes out), then its answer is lost.
    fault = {"path": "/v1/send/email", "drop_rate": 1.0, "drop_after_processing": True, "count": 1}
    inspect.post("/faults", json=fault).raise_for_status()
    with Relay(_settings(emulator, tmp_path)) as relay:
        sent = _send_welcome_emails(relay, 3)
        stats = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        [dead] = relay.outbox.list_dead()
        assert relay.outbox.depth().pending == 0
    assert (stats.delivered, stats.retried, stats.dead) == (2, 0, {"ambiguous": 1})
    assert dead.op.op_id in sent
    assert dead.reason is DeadReason.AMBIGUOUS
    assert "may or may not have processed it" in dead.detail
    deliveries = pages(inspect, "/deliveries", "deliveries")
    # Each email went out exactly once, the one whose answer was lost included.
    assert sorted(d["request"]["message_data"]["n"] for d in deliveries) == [0, 1, 2]
    seen = inspect.get("/stats").json()
    assert seen["requests"]["POST /v1/send/email"] == {"0": 1, "200": 2}


@pytest.mark.parametrize(
    ("status", "settled"),
    [(500, "dead"), (502, "dead"), (504, "dead"), (503, "delivered"), (429, "delivered")],
)
def test_a_transactional_send_answered_5xx_is_resent_only_when_known_unsent(
    status: int, settled: str, emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    # A 503 or 429 says the send was not processed; after a 500, 502 or 504 it may have been
    # (the server failed part-way, or a gateway lost its answer): sending again could send twice.
    fault = {"path": "/v1/send/email", "error_rate": 1.0, "status_codes": [status], "count": 1}
    inspect.post("/faults", json=fault).raise_for_status()
    with Relay(_settings(emulator, tmp_path)) as relay:
        op_id = relay.send_email(
            to="ada@example.com", identifiers={"id": "ada"}, transactional_message_id="welcome"
        )
        stats = relay.worker().drain(timeout=DRAIN_TIMEOUT)
        dead = relay.outbox.list_dead()
        assert relay.outbox.depth().pending == 0
    statuses = [answer for *_, answer in _requests(inspect)]
    deliveries = pages(inspect, "/deliveries", "deliveries")
    if settled == "delivered":
        assert (stats.delivered, stats.retried, dead) == (1, 1, [])
        assert (statuses, len(deliveries)) == ([status, 200], 1)
    else:
        assert (stats.delivered, stats.retried, stats.dead) == (0, 0, {"ambiguous": 1})
        [letter] = dead
        assert (letter.op.op_id, letter.reason) == (op_id, DeadReason.AMBIGUOUS)
        assert f"answered {status}" in letter.detail
        assert "may or may not have been processed" in letter.detail
        assert statuses == [status]


class RecordingOutbox(SqliteOutbox):
    """The SQLite outbox, noting each ``release`` (how many leases, what delay) and, for each
    settled lease (ack, retry, dead letter), how much of it was left, renewals counted."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.releases: list[tuple[int, float]] = []
        self.lease_left_at_settle: list[float] = []
        self.extended: dict[str, float] = {}  # op id -> the deadline its last renewal gave

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        leases = list(leases)
        super().extend(leases, lease_seconds, now=now)
        until = (time.time() if now is None else now) + lease_seconds
        self.extended.update((lease.op.op_id, until) for lease in leases)

    def release(
        self, leases: Iterable[Lease], *, delay: float = 0.0, now: float | None = None
    ) -> None:
        leases = list(leases)
        self.releases.append((len(leases), delay))
        super().release(leases, delay=delay, now=now)

    def _settling(self, leases: Iterable[Lease]) -> None:
        now = time.time()
        self.lease_left_at_settle += [
            max(lease.lease_until, self.extended.get(lease.op.op_id, 0.0)) - now for lease in leases
        ]

    def ack(self, leases: Iterable[Lease]) -> None:
        leases = list(leases)
        self._settling(leases)
        super().ack(leases)

    def retry_later(
        self, lease: Lease, *, retry_at: float, error: str, now: float | None = None
    ) -> None:
        self._settling([lease])
        super().retry_later(lease, retry_at=retry_at, error=error, now=now)

    def dead_letter(
        self, lease: Lease, reason: DeadReason, detail: str, *, now: float | None = None
    ) -> None:
        self._settling([lease])
        super().dead_letter(lease, reason, detail, now=now)


class NoRenewalOutbox(RecordingOutbox):
    """An outbox whose lease renewals fail (its storage breaks down for that one call)."""

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def _slow_sends_past_the_connections(
    emulator: EmulatorServer, inspect: httpx.Client, outbox: RecordingOutbox, count: int
) -> tuple[Any, Any, list[Any]]:
    """``count`` emails sent at once through ``outbox`` to an emulator that answers each after
    1.5 s, with 2.3 s leases and a 2 s HTTP timeout; the stats, the depth, the dead letters."""
    fault = {"path": "/v1/send/email", "latency_ms": 1500}
    inspect.post("/faults", json=fault).raise_for_status()
    settings = _settings(emulator, outbox.path.parent, lease_seconds=2.3, http_timeout=2.0)
    with Relay(settings, outbox=outbox) as relay:
        _send_welcome_emails(relay, count)
        stats = relay.worker(concurrency=count).drain(timeout=DRAIN_TIMEOUT)
        depth = outbox.depth()
        dead = outbox.list_dead()
    outbox.close()
    return stats, depth, dead


def test_a_send_kept_waiting_for_a_connection_keeps_its_lease_and_goes_out_once(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    # httpx times each phase of a request (pool wait, connect, write, read) on its own, so one
    # request may take several timeouts in all. Here more sends are in flight than the client
    # has connections: the last ones wait for a connection, then for a slow answer, past the
    # end of the lease they were given. The heartbeat renews it, so they go out once and are
    # settled while still leased; nobody else could have taken them meanwhile.
    count = DEFAULT_MAX_CONNECTIONS + 2
    outbox = RecordingOutbox(tmp_path / "outbox.db")
    stats, depth, _dead = _slow_sends_past_the_connections(emulator, inspect, outbox, count)
    assert (depth.pending, depth.dead) == (0, 0)
    assert (stats.delivered, stats.dead_total) == (count, 0)
    assert outbox.extended, "no lease was renewed"
    assert min(outbox.lease_left_at_settle) > 0  # every outcome recorded while still leased
    deliveries = pages(inspect, "/deliveries", "deliveries")
    assert sorted(d["request"]["message_data"]["n"] for d in deliveries) == list(range(count))


def test_a_send_whose_lease_cannot_be_renewed_settles_before_its_lease_runs_out(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    # As above, but the renewals fail: the sends still waiting when the lease is about to run
    # out are abandoned, when another worker could lease them and send them again. They must be
    # settled (here: dead-lettered as ambiguous, having been written) while still leased.
    extra = 2
    count = DEFAULT_MAX_CONNECTIONS + extra
    outbox = NoRenewalOutbox(tmp_path / "outbox.db")
    stats, depth, dead = _slow_sends_past_the_connections(emulator, inspect, outbox, count)
    assert depth.pending == 0
    assert len(outbox.lease_left_at_settle) == count
    assert min(outbox.lease_left_at_settle) > 0  # every outcome recorded while still leased
    assert stats.delivered + stats.dead_total == count
    assert stats.dead_total >= extra
    assert {letter.reason for letter in dead} == {DeadReason.AMBIGUOUS}
    assert all("lease" in letter.detail for letter in dead)
    # The abandoned sends had been written: the emulator sends them once it is done waiting.
    assert wait_for(lambda: inspect.get("/stats").json()["deliveries"] == count, 30)
    deliveries = pages(inspect, "/deliveries", "deliveries")
    assert sorted(d["request"]["message_data"]["n"] for d in deliveries) == list(range(count))


def test_sends_beyond_the_rate_limited_queue_are_deferred_and_all_delivered_once(
    emulator: EmulatorServer,
    inspect: httpx.Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    count, rate, concurrency = 60, 20.0, 2
    # Customer.io's side of the limit: anything faster than ``rate`` would be answered 429.
    limit = {"path": "/v1/send/", "rate_limit": {"rps": rate, "retry_after": 1}}
    inspect.post("/faults", json=limit).raise_for_status()
    # 60 sends at 20/s take 3 s, longer than a lease leaves for sending (2.5 s - 0.5 s timeout):
    # held in memory behind the limiter, the last ones would see their leases run out.
    settings = _settings(
        emulator, tmp_path, transactional_rate=rate, lease_seconds=2.5, http_timeout=0.5
    )
    outbox = RecordingOutbox(tmp_path / "outbox.db")
    caplog.set_level(logging.WARNING, logger="cio_relay.delivery")
    with Relay(settings, outbox=outbox) as relay:
        _send_welcome_emails(relay, count)
        stats = relay.worker(concurrency=concurrency).drain(timeout=DRAIN_TIMEOUT)
        depth = outbox.depth()
    outbox.close()
    assert (depth.pending, depth.dead) == (0, 0)
    assert (stats.delivered, stats.retried, stats.dead_total) == (count, 0, 0)
    cap = 4 * concurrency  # transactional requests one dispatcher queues at once
    assert outbox.releases, "nothing was deferred"
    released, delay = outbox.releases[0]  # the first lease: all but what the cap lets through
    assert (released, delay) == (count - cap, 0.5)  # delay: at least 0.5 s
    assert all(delay > 0 for _, delay in outbox.releases)  # deferred, never handed back as due
    assert not [r for r in caplog.records if "lease ran out" in r.getMessage()]
    deliveries = pages(inspect, "/deliveries", "deliveries")
    assert sorted(d["request"]["message_data"]["n"] for d in deliveries) == list(range(count))
    assert inspect.get("/stats").json()["rate_limited"] == 0
