"""CPU per operation along the hot path, stage by stage, in one process (about 20 s).

CPU time, not wall clock: other work on the machine slows a stage down but does not add to its
CPU seconds, so the figures compare across runs and commits. Stages, for ``N`` track operations
over 20,000 people (``BENCH_HOTPATH_N``, default 50,000):

- HTTP ``/v1/batch`` without the server: pydantic parse of 100-operation bodies, then the
  ``OperationBuilder`` (limits checked, op ids made);
- SQLite: ``to_record``, enqueue 100 per call, lease 5,000 (records decoded), v2 items serialised
  (what the dispatcher sends), acks 1,500 per call;
- Redis (a ``redis-server`` of its own, ``appendonly yes``, ``appendfsync everysec``): enqueue
  500 per call, lease 5,000, ack 1,500 per call, each with this process's CPU and the Redis
  server's (from /proc).

The garbage collector is tuned as ``cio-relay run`` tunes it (``service.tune_gc``).

Run: ``python -m benchmarks hotpath``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from cio_relay import kept_json
from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.server import schemas as s
from cio_relay.server.build import OperationBuilder
from cio_relay.server.runner import tune_gc

__all__ = ["main"]

N = int(os.environ.get("BENCH_HOTPATH_N", "50000"))
PEOPLE = 20_000
BATCH = 100
_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class _Clock:
    """CPU seconds of this process (and of a server process) spent in named stages."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.own: dict[str, float] = {}
        self.server: dict[str, float] = {}

    def run(self, label: str, work: Callable[[], Any]) -> Any:
        server_before = _process_cpu(self.server_pid) if self.server_pid else 0.0
        before = time.process_time()
        result = work()
        self.own[label] = self.own.get(label, 0.0) + time.process_time() - before
        if self.server_pid:
            spent = _process_cpu(self.server_pid) - server_before
            self.server[label] = self.server.get(label, 0.0) + spent
        return result

    def report(self, count: int) -> None:
        for label, seconds in self.own.items():
            line = f"  {label:44s} {seconds / count * 1e6:6.2f} us/op"
            if self.server_pid:
                line += f"   redis-server {self.server[label] / count * 1e6:5.2f} us/op"
            print(line, flush=True)


def _batch_bodies(count: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "operations": [
                    {
                        "type": "track",
                        "person": f"user-{(first + j) % PEOPLE}",
                        "name": "order_completed",
                        "data": {"total": j, "currency": "EUR"},
                    }
                    for j in range(BATCH)
                ]
            }
        )
        for first in range(0, count, BATCH)
    ]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def http_and_sqlite(count: int) -> list[ops.Operation]:
    bodies = _batch_bodies(count)
    builder = OperationBuilder(Settings(stamp_env=False))
    clock = _Clock()
    print(f"HTTP /v1/batch without the server, {BATCH} operations per body:")
    parsed = clock.run(
        "pydantic parse (BatchBody)", lambda: [s.BatchBody.model_validate_json(b) for b in bodies]
    )
    built = clock.run(
        "OperationBuilder.batch -> Operations", lambda: [builder.batch(p) for p in parsed]
    )
    clock.report(count)
    operations = [op for batch in built for op in batch]
    print("SQLite outbox:")
    clock = _Clock()
    clock.run("Operation.to_record", lambda: [op.to_record() for op in operations])
    with tempfile.TemporaryDirectory() as tmp:
        outbox = SqliteOutbox(Path(tmp) / "outbox.db")
        try:
            clock.run("enqueue, 100 per call", lambda: [outbox.enqueue(b) for b in built])
            _deliver(outbox, clock, count, serialise=True)
        finally:
            outbox.close()
    clock.report(count)
    return operations


def _deliver(outbox: Any, clock: _Clock, count: int, *, serialise: bool) -> None:
    """Lease 5,000 at a time and ack them 1,500 per call until all ``count`` are delivered."""
    delivered = 0
    while leases := clock.run("lease 5,000 (records decoded)", lambda: outbox.lease(5000, 600)):
        if serialise:
            clock.run(  # as the dispatcher does: kept for the batch, so right-sized
                "v2 item serialised (kept_json)",
                lambda: [kept_json.dumps(lease.op.v2_item()) for lease in leases],
            )
        for chunk in _chunks(leases, 1500):
            clock.run("ack, 1,500 per call", lambda: outbox.ack(chunk))  # noqa: B023
        delivered += len(leases)
    if delivered != count:
        raise RuntimeError(f"delivered {delivered} of {count}")


def redis(operations: list[ops.Operation]) -> None:
    from cio_relay.outbox.redis import RedisOutbox
    from tests.fixtures.redis_server import RedisServer

    count = len(operations)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), "--appendonly", "yes", "--appendfsync", "everysec")
        server.start()
        try:
            outbox = RedisOutbox(server.url, namespace="hotpath")
            clock = _Clock(server.pid)
            print("Redis outbox (this process, and the Redis server):")
            clock.run(
                "enqueue, 500 per call",
                lambda: [outbox.enqueue(c) for c in _chunks(operations, 500)],
            )
            _deliver(outbox, clock, count, serialise=False)
            clock.report(count)
            outbox.close()
        finally:
            server.stop()


def main() -> None:
    tune_gc()
    print(f"{N:,} track operations over {PEOPLE:,} people; CPU microseconds per operation")
    operations = http_and_sqlite(N)
    redis(operations)
