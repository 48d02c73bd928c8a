"""``kill -9`` of a worker in the middle of a batch loses nothing (design.md contract 1).

A ``cio-relay worker`` process delivers a SQLite outbox to the emulator, whose answers are slowed
down so that a batch is always on the wire. Once the emulator has answered some requests and is
holding another one, the worker is killed with SIGKILL. The emulator still applies the request
it was holding, but the worker never heard back, so those operations stay leased in the outbox
until their short lease runs out. A new worker (the real ``Worker`` on the same file) then
drains the rest: every operation arrives at least once, every Track event is accepted exactly
once (Customer.io ignores an event ``id`` it has seen), each person's events in order.

Nothing sleeps: the kill waits on the emulator's counters, polled with a deadline; the new
worker's ``drain`` returns once the outbox is empty.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cio_relay.emulator import EmulatorServer
from cio_relay.relay import Relay
from tests.fixtures.delivery import (
    emulator_settings,
    in_order_per_person,
    pages,
    wait_for,
    worker_env,
    worker_logs,
    workers,
)

PEOPLE = [f"user-{p}" for p in range(50)]
ROUNDS = 6
DEADLINE = 60.0
# Short leases so the takeover comes quickly (tests/adversarial/test_chaos.py runs the default);
# the emulator's added latency stays below the HTTP timeout, so the worker never times out.
LEASE_SECONDS, HTTP_TIMEOUT, LATENCY_MS = 2.0, 1.0, 500


def _enqueue_workload(relay: Relay) -> list[str]:
    """Per person, ``ROUNDS`` events numbered ``n`` and as many identifies setting ``step``,
    interleaved so that every request the worker makes carries some events (even people start
    with an event, odd people with an identify). Returns the event op ids."""
    events: list[str] = []
    for k in range(ROUNDS):
        for index, person in enumerate(PEOPLE):
            if index % 2:
                relay.identify(person, step=k)
            events.append(relay.track(person, "step", {"n": k}))
            if not index % 2:
                relay.identify(person, step=k)
    return events


def _mid_batch(inspect: httpx.Client) -> bool:
    """The emulator has answered some requests and is holding another one right now."""
    stats: dict[str, Any] = inspect.get("/stats").json()
    # The worker's start-up region check is not a delivery: leave it out of both counts.
    checks = sum(stats["requests"].get("GET /api/v1/accounts/region", {}).values())
    answered: int = stats["requests_total"] - checks
    arrived: int = stats["delayed_requests"] - checks  # every API request is delayed
    return 0 < answered < arrived


def _kill_worker_when(
    condition: Callable[[], bool],
    fault: dict[str, Any],
    emulator: EmulatorServer,
    inspect: httpx.Client,
    outbox_url: str,
    tmp_path: Path,
) -> None:
    """Slow the emulator down with ``fault``, start a ``cio-relay worker`` on ``outbox_url``,
    SIGKILL it as soon as ``condition`` holds, and lift the fault."""
    inspect.post("/faults", json=fault).raise_for_status()
    env = worker_env(
        emulator, outbox_url, lease_seconds=str(LEASE_SECONDS), http_timeout=str(HTTP_TIMEOUT)
    )
    logs = tmp_path / "doomed"
    logs.mkdir()
    with workers(1, env, logs) as [doomed]:
        assert wait_for(condition, DEADLINE), worker_logs(logs)
        doomed.send_signal(signal.SIGKILL)
        assert doomed.wait(30) == -signal.SIGKILL
    inspect.delete("/faults").raise_for_status()


def test_a_worker_killed_mid_batch_loses_nothing_and_counts_each_event_once(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    settings = emulator_settings(
        emulator,
        outbox_url,
        lease_seconds=LEASE_SECONDS,
        http_timeout=HTTP_TIMEOUT,
        retry_base=0.01,
    )
    with Relay(settings) as relay:
        event_ids = _enqueue_workload(relay)
    total_ops = 2 * len(event_ids)

    slowed = {"path": "/api/", "latency_ms": LATENCY_MS}
    _kill_worker_when(lambda: _mid_batch(inspect), slowed, emulator, inspect, outbox_url, tmp_path)

    with Relay(settings) as relay:
        held = relay.outbox.depth()
        assert held.leased > 0  # the killed worker's batch: leased, never acknowledged
        assert 0 < held.pending < total_ops  # some delivered before the kill, not all
        stats = relay.worker().drain(timeout=DEADLINE)
        depth = relay.outbox.depth()
    assert (depth.pending, depth.dead) == (0, 0)
    assert stats.dead_total == 0
    assert stats.delivered >= held.pending  # the held batch was delivered again

    seen = inspect.get("/stats").json()
    assert seen["events_accepted"] == len(event_ids)  # exactly once at Customer.io
    assert seen["duplicate_event_ids"] > 0  # the held batch was applied, then redelivered
    events = pages(inspect, "/events", "events")
    assert sorted(event["id"] for event in events) == sorted(event_ids)
    assert in_order_per_person(events) == {person: list(range(ROUNDS)) for person in PEOPLE}
    people = {person["id"]: person["attributes"] for person in pages(inspect, "/people", "people")}
    assert people == {person: {"step": ROUNDS - 1} for person in PEOPLE}


def test_a_worker_killed_mid_send_leaves_its_emails_dead_lettered_not_sent_twice(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    """A transactional email carries no id Customer.io de-duplicates: a second worker must not
    send again what a killed one may have sent. The mark the dispatcher writes before each send
    tells it so; it dead-letters those emails as ``ambiguous`` for an operator instead."""
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    settings = emulator_settings(
        emulator, outbox_url, lease_seconds=LEASE_SECONDS, http_timeout=HTTP_TIMEOUT
    )
    recipients = [f"person-{n}@example.com" for n in range(4)]
    with Relay(settings) as relay:
        for n, address in enumerate(recipients):
            relay.send_email(
                to=address, identifiers={"id": f"person-{n}"}, transactional_message_id="receipt"
            )

    slowed = {"path": "/v1/send", "latency_ms": LATENCY_MS}
    on_the_wire = lambda: inspect.get("/stats").json()["delayed_requests"] == len(recipients)  # noqa: E731
    _kill_worker_when(on_the_wire, slowed, emulator, inspect, outbox_url, tmp_path)
    # The emulator applies what it was holding, as Customer.io would have.
    assert wait_for(lambda: inspect.get("/stats").json()["deliveries"] == 4, DEADLINE)

    with Relay(settings) as relay:
        stats = relay.worker().drain(timeout=DEADLINE)
        dead = relay.outbox.list_dead()
        depth = relay.outbox.depth()
    assert depth.pending == 0 and stats.delivered == 0
    assert sorted(d.op.payload["to"] for d in dead) == recipients
    assert {d.reason.value for d in dead} == {"ambiguous"}
    assert all("a worker stopped" in d.detail for d in dead)
    sent = [d["to"] for d in pages(inspect, "/deliveries", "deliveries")]
    assert sorted(sent) == recipients  # each email once: none sent a second time
