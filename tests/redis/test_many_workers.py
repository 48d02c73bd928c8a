"""Many ``cio-relay worker`` processes on one Redis, against the emulator over real sockets.

- 4 workers deliver 100,000 operations exactly once, in order per person, every Track request
  admitted by the one limit they share in Redis (20/s; and 50,000 operations at Customer.io's
  100/s), whose admissions never number more than the limit in any one-second window. The
  admissions are the limiter's own decisions, read off the Redis server (MONITOR shows each
  slot the GCRA script records), not arrival times, which depend on how the processes happen
  to be scheduled;
- a worker killed with SIGKILL while it holds leases has that work finished by another worker;
- Redis killed and restarted with ``appendonly yes`` still has every operation whose enqueue
  returned.

Nothing sleeps: the test waits on the outbox emptying (``wait_until_empty``, woken by Redis),
on Redis keyspace notifications, and on threading events, each with a deadline.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.delivery.shared_ratelimit import SharedRateLimiter, redis_limiters
from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.operations import Api
from cio_relay.outbox.redis import RedisOutbox
from cio_relay.outbox.redis_keys import GROUP, shard_keys
from tests.fixtures.delivery import (
    in_order_per_person,
    most_in_one_second,
    pages,
    worker_env,
    worker_logs,
    workers,
)
from tests.fixtures.redis_server import DURABLE_ARGS, RedisServer

EMULATOR_ARGV = [sys.executable, "-m", "cio_relay", "emulator"]
DEADLINE = 100.0  # seconds any one wait may take


def _made(count: int, people: int) -> list[ops.Operation]:
    """``count`` events over ``people`` people; ``n`` counts each person's events from 0."""
    return [
        ops.track(f"user-{i % people}", "order_completed", {"n": i // people}) for i in range(count)
    ]


@pytest.fixture
def inspect(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emulator.url}/_emulator", timeout=30) as client:
        yield client


class EmulatorProcess:
    """``cio-relay emulator --port 0`` in its own process, as Customer.io is to the workers:
    serving them is not slowed by this process (which reads every Redis command meanwhile)."""

    def __init__(self) -> None:
        self.config = EmulatorConfig()
        self.url = ""
        self.log: list[str] = []
        self._proc = subprocess.Popen(
            [*EMULATOR_ARGV, "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        listening = threading.Event()
        threading.Thread(target=self._read_log, args=(listening,), daemon=True).start()
        if not listening.wait(DEADLINE) or not self.url:
            self.stop()
            raise RuntimeError("the emulator did not start:\n" + "\n".join(self.log))

    def _read_log(self, listening: threading.Event) -> None:
        assert self._proc.stderr is not None
        with self._proc.stderr:
            for line in self._proc.stderr:
                self.log.append(line.rstrip())
                if not self.url and (found := re.search(r"listening on (http://\S+)", line)):
                    self.url = found.group(1)
                    listening.set()
        listening.set()

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(30)


@pytest.fixture
def emulator_process() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess()
    yield process
    process.stop()


def test_the_emulator_logs_when_each_request_arrived(
    emulator: EmulatorServer, inspect: httpx.Client
) -> None:
    before = time.monotonic()
    auth = (emulator.config.site_id, emulator.config.track_api_key)
    with httpx.Client(base_url=emulator.url, auth=auth) as api:
        api.put("/api/v1/customers/u1", json={"plan": "pro"}).raise_for_status()
        api.post("/api/v2/batch", json={"batch": []})
    [first, second] = inspect.get("/requests").json()["requests"]
    assert first[1:] == ["PUT", "/api/v1/customers/u1", 200]
    assert second[1:3] == ["POST", "/api/v2/batch"]
    assert before <= first[0] <= second[0] <= time.monotonic()


def _track_limit_key(emulator: EmulatorProcess, redis_server: RedisServer) -> str:
    """The key of the Track limit that workers delivering to ``emulator`` share."""
    client = redis_server.client()
    try:
        limiter = redis_limiters(Settings(site_id=emulator.config.site_id), client)[Api.TRACK]
    finally:
        client.close()
    assert isinstance(limiter, SharedRateLimiter)
    return limiter.key


#: What the GCRA script writes on each admission: the limit's key and its new ``tat`` (the slot
#: it granted plus one interval), in microseconds on the Redis clock.
_ADMISSION = re.compile(rb'\[\d+ lua\] "HSET" "([^"]*:ratelimit:[^"]*)" "tat" "(\d+)"')


@contextmanager
def limiter_slots(redis_server: RedisServer) -> Iterator[dict[str, list[float]]]:
    """Every slot a shared rate limit grants while the block runs, per limit key, in seconds on
    the Redis clock, read from MONITOR (which shows the commands scripts run, in the order the
    server runs them). A slot is ``tat`` minus one interval; the intervals between slots are the
    same as between ``tat`` values, so ``tat`` stands for the slot."""
    slots: dict[str, list[float]] = defaultdict(list)
    monitor = socket.create_connection(("127.0.0.1", redis_server.port))
    reader = monitor.makefile("rb")
    monitor.sendall(b"MONITOR\r\n")
    assert reader.readline() == b"+OK\r\n"

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):  # the socket closes under it at the end
            for line in reader:
                if b'"tat"' in line and (found := _ADMISSION.search(line)):
                    slots[found[1].decode()].append(int(found[2]) / 1_000_000)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield slots
    finally:
        # QUIT answers +OK after every line before it: once it is read, nothing is missing.
        monitor.sendall(b"QUIT\r\n")
        thread.join(DEADLINE)
        reader.close()
        monitor.close()


@pytest.mark.parametrize(
    ("count", "people", "rate", "batch_bytes"),
    [
        # ~650 events per batch: ~155 requests, ~8 s of sending held at the limit
        (100_000, 5_000, 20, "100000"),
        # Customer.io's default: ~87 events per batch, ~575 requests, ~6.4 s at the limit,
        # where a sender may go up to 55 ms after its slot (5 slots' worth)
        (50_000, 5_000, 100, "15000"),
    ],
)
def test_four_workers_deliver_everything_once_in_order_under_one_limit(
    emulator_process: EmulatorProcess,
    redis_server: RedisServer,
    redis_namespace: str,
    tmp_path: Path,
    count: int,
    people: int,
    rate: int,
    batch_bytes: str,
) -> None:
    url = f"{redis_server.url}?namespace={redis_namespace}"
    env = worker_env(emulator_process, url, track_rate=str(rate), batch_max_bytes=batch_bytes)
    made = _made(count, people)
    track_key = _track_limit_key(emulator_process, redis_server)
    outbox = RedisOutbox.from_url(url)
    try:
        for start in range(0, count, 1000):
            outbox.enqueue(made[start : start + 1000])
        with limiter_slots(redis_server) as slots, workers(4, env, tmp_path) as procs:
            assert outbox.wait_until_empty(DEADLINE), worker_logs(tmp_path)
        assert [proc.returncode for proc in procs] == [0, 0, 0, 0], worker_logs(tmp_path)
        depth = outbox.depth()
        assert (depth.pending, depth.dead) == (0, 0)
    finally:
        outbox.close()

    with httpx.Client(base_url=f"{emulator_process.url}/_emulator", timeout=30) as inspect:
        stats = inspect.get("/stats").json()
        events = pages(inspect, "/events", "events")
        requests = pages(inspect, "/requests", "requests")
    assert (stats["events_accepted"], stats["duplicate_event_ids"]) == (count, 0)
    assert sorted(event["id"] for event in events) == sorted(op.op_id for op in made)
    assert in_order_per_person(events) == {
        f"user-{p}": list(range(count // people)) for p in range(people)
    }
    region_checks = [r for r in requests if r[1:3] == ["GET", "/api/v1/accounts/region"]]
    assert len(region_checks) == 4  # each worker asked once, at its start
    requests = [r for r in requests if r not in region_checks]
    assert {(method, path, status) for _, method, path, status in requests} == {
        ("POST", "/api/v2/batch", 200)
    }
    assert len(requests) > 5 * rate  # the limit held the workers back for several seconds
    # One shared limit admitted every request (a sender that woke late took a second slot),
    # and its admissions, on the Redis clock, fill no second past the limit.
    assert set(slots) == {track_key}, set(slots)
    admitted = slots[track_key]
    assert len(admitted) >= len(requests)
    assert most_in_one_second(admitted) <= rate


def _next_notification(watch: redis.client.PubSub, deadline: float) -> dict[str, Any] | None:
    """The next keyspace notification, blocking up to ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while (left := end - time.monotonic()) > 0:
        message = watch.get_message(timeout=left)  # None also for a skipped subscribe reply
        if message is not None:
            return dict(message)
    return None


def _consumer_entries(client: redis.Redis, stream: str, prefix: str) -> list[bytes]:
    pending = client.xpending_range(stream, GROUP, "-", "+", 100_000)
    return [p["message_id"] for p in pending if p["consumer"].decode().startswith(prefix)]


def test_a_killed_workers_leases_are_finished_by_another_worker(
    emulator: EmulatorServer,
    inspect: httpx.Client,
    redis_server: RedisServer,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    count, people = 2_000, 200
    url = f"{redis_server.url}?namespace={redis_namespace}"
    # Short leases so the takeover comes quickly (the heartbeat renews those in work).
    env = worker_env(emulator, url, lease_seconds="3", http_timeout="1", batch_max_bytes="20000")
    stream = shard_keys(redis_namespace, 0).stream
    made = _made(count, people)
    client = redis_server.client()
    client.config_set("notify-keyspace-events", "Kz")
    watch = client.pubsub(ignore_subscribe_messages=True)
    watch.subscribe(f"__keyspace@0__:{shard_keys(redis_namespace, 0).key('leases')}")
    outbox = RedisOutbox.from_url(url)
    try:
        # Slow answers keep the first worker's batches in flight when it dies.
        inspect.post("/faults", json={"path": "/api/v2/batch", "latency_ms": 1500})
        first = tmp_path / "first"
        first.mkdir()
        with workers(1, env, first) as [doomed]:
            outbox.enqueue(made)
            leased = _next_notification(watch, DEADLINE)  # the worker recorded a lease deadline
            assert leased is not None and leased["data"] == b"zadd", worker_logs(first)
            held = _consumer_entries(client, stream, f"{socket.gethostname()}:{doomed.pid}:")
            assert held
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(30)
        inspect.delete("/faults")
        held_ops = {
            fields[b"o"].decode()
            for entry_id in held
            for _id, fields in client.xrange(stream, entry_id, entry_id)
        }
        with workers(1, env, tmp_path) as [survivor]:
            assert outbox.wait_until_empty(DEADLINE), worker_logs(tmp_path)
        assert survivor.returncode == 0
        assert _consumer_entries(client, stream, f"{socket.gethostname()}:{doomed.pid}:") == []
    finally:
        watch.close()
        client.config_set("notify-keyspace-events", "")
        client.close()
        outbox.close()

    stats = inspect.get("/stats").json()
    assert stats["events_accepted"] == count  # redeliveries are recognised by event id
    events = pages(inspect, "/events", "events")
    delivered = {event["id"] for event in events}
    assert delivered == {op.op_id for op in made}
    assert held_ops <= delivered
    assert in_order_per_person(events) == {
        f"user-{p}": list(range(count // people)) for p in range(people)
    }


def test_redis_restarted_with_appendonly_keeps_every_acknowledged_enqueue(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(*DURABLE_ARGS)
    namespace = "durable"
    acknowledged: list[str] = []
    attempted: list[str] = []
    enough = threading.Event()
    failure: list[BaseException] = []

    def enqueue_until_redis_dies() -> None:
        outbox = RedisOutbox(server.url, namespace=namespace)
        try:
            for batch_number in range(100_000):
                batch = _made(20, 7)
                attempted.extend(op.op_id for op in batch)
                outbox.enqueue(batch)
                acknowledged.extend(op.op_id for op in batch)
                if batch_number == 200:
                    enough.set()
        except redis.RedisError as exc:
            failure.append(exc)
        finally:
            enough.set()
            outbox.close()

    producer = threading.Thread(target=enqueue_until_redis_dies)
    producer.start()
    try:
        assert enough.wait(DEADLINE)
        server.kill()  # SIGKILL while enqueues are in flight
    finally:
        producer.join(DEADLINE)
    assert failure, "the producer should have seen Redis die"

    server.restart()
    outbox = RedisOutbox(server.url, namespace=namespace)
    found: list[str] = []
    try:
        while leases := outbox.lease(5000, 60):
            found += [lease.op.op_id for lease in leases]
            outbox.ack(leases)
    finally:
        outbox.close()
    assert len(found) == len(set(found))
    assert set(acknowledged) <= set(found) <= set(attempted)
    assert len(acknowledged) >= 200 * 20
