"""Chaos in the middle of a run: a worker killed with SIGKILL (and, on Redis, the Redis server
killed and restarted), with the default lease time. Every operation acknowledged to the caller
reaches the emulator exactly once, each person's events in order, and the killed worker's
operations are taken over within one lease time (``Settings.lease_seconds``, 10 s): its leases
were renewed by its heartbeat while it lived and run out after it died.

Real parts: ``cio-relay worker`` child processes, a real ``redis-server`` with its append-only
file synced on every write, the emulator over 127.0.0.1 with its answers slowed so that work is
in flight when the chaos comes. Nothing sleeps: the tests wait on the emulator's counters.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cio_relay.config import Settings
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
from tests.fixtures.redis_server import DURABLE_ARGS, RedisServer

PEOPLE = [f"user-{p}" for p in range(40)]
ROUNDS = 30
LEASE_SECONDS = Settings.model_fields["lease_seconds"].default
#: After the kill, everything is delivered within a lease time plus this (the rest of the work,
#: at the emulator's slowed pace, and a busy CI machine).
SLACK = 20.0
DEADLINE = 120.0


@pytest.fixture
def inspect(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emulator.url}/_emulator", timeout=30) as client:
        yield client


def _enqueue_rounds(relay: Relay, rounds: range) -> list[str]:
    """Per person, one event per round numbered ``n``; the op ids."""
    return [relay.track(p, "step", {"n": n}) for n in rounds for p in PEOPLE]


def _accepted(inspect: httpx.Client) -> int:
    count: int = inspect.get("/stats").json()["events_accepted"]
    return count


def _assert_exactly_once_in_order(inspect: httpx.Client, op_ids: list[str]) -> None:
    assert _accepted(inspect) == len(op_ids)  # redeliveries are recognised by event id
    events = pages(inspect, "/events", "events")
    assert sorted(event["id"] for event in events) == sorted(op_ids)
    assert in_order_per_person(events) == {p: list(range(ROUNDS)) for p in PEOPLE}


def _mid_request(inspect: httpx.Client, at_least: int) -> bool:
    """At least ``at_least`` events accepted, and a request held by the emulator right now
    (every API request is delayed, so ``delayed_requests`` counts them all)."""
    stats = inspect.get("/stats").json()
    answered, arrived = stats["requests_total"], stats["delayed_requests"]
    return stats["events_accepted"] >= at_least and answered < arrived


def _kill_mid_request(
    doomed: subprocess.Popen[bytes], inspect: httpx.Client, at_least: int, logs: Path
) -> float:
    assert wait_for(lambda: _mid_request(inspect, at_least), DEADLINE), worker_logs(logs)
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(30) == -signal.SIGKILL
    return time.monotonic()


def test_a_worker_killed_mid_run_on_sqlite_is_taken_over_within_a_lease(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    with Relay(emulator_settings(emulator, outbox_url)) as relay:
        op_ids = _enqueue_rounds(relay, range(ROUNDS))
    inspect.post("/faults", json={"path": "/api/", "latency_ms": 100}).raise_for_status()
    env = worker_env(emulator, outbox_url, retry_base="0.05")
    with workers(1, env, tmp_path) as [doomed]:
        killed_at = _kill_mid_request(doomed, inspect, len(op_ids) // 3, tmp_path)
    with workers(1, env, tmp_path) as [survivor]:
        assert wait_for(lambda: _accepted(inspect) == len(op_ids), DEADLINE), worker_logs(tmp_path)
        recovered_after = time.monotonic() - killed_at
        assert survivor.poll() is None
    assert recovered_after < LEASE_SECONDS + SLACK
    assert inspect.get("/stats").json()["duplicate_event_ids"] > 0  # the held batch, redone
    _assert_exactly_once_in_order(inspect, op_ids)


def test_a_worker_killed_and_redis_restarted_mid_run_lose_nothing(
    emulator: EmulatorServer, inspect: httpx.Client, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis", *DURABLE_ARGS).start()
    try:
        settings = emulator_settings(emulator, redis.url)
        half = ROUNDS // 2
        with Relay(settings) as relay:
            op_ids = _enqueue_rounds(relay, range(half))
        inspect.post("/faults", json={"path": "/api/", "latency_ms": 100}).raise_for_status()
        env = worker_env(emulator, redis.url, retry_base="0.05")
        with workers(1, env, tmp_path) as [doomed]:
            killed_at = _kill_mid_request(doomed, inspect, len(op_ids) // 3, tmp_path)
        with workers(1, env, tmp_path) as [survivor]:
            redis.restart()  # SIGKILL, then the same port and directory: the AOF reloads
            restarted_at = time.monotonic()
            before = _accepted(inspect)
            with Relay(settings) as relay:  # the second half, enqueued after the restart
                op_ids += _enqueue_rounds(relay, range(half, ROUNDS))
            assert wait_for(lambda: _accepted(inspect) > before, DEADLINE)
            resumed_after = time.monotonic() - restarted_at
            assert wait_for(lambda: _accepted(inspect) == len(op_ids), DEADLINE), worker_logs(
                tmp_path
            )
            done_at = time.monotonic()
            assert survivor.poll() is None
    finally:
        redis.stop()
    recovered_after = done_at - killed_at
    assert resumed_after < SLACK  # the survivor's own work goes on once Redis is back
    assert recovered_after < LEASE_SECONDS + SLACK
    assert inspect.get("/stats").json()["duplicate_event_ids"] > 0
    _assert_exactly_once_in_order(inspect, op_ids)
