"""The SQLite layer's settings (cio_relay/sqlite/), against the alternatives, on the stores' work.

Each variant runs in a fresh process that sets the layer's module settings before opening
fresh files, then measures the real stores:

- the outbox: one thread enqueueing one operation a call (the library's ``relay.track``), the
  same through ``enqueue_nowait`` (the ingestion API's path on the event loop), 100 operations a
  call (``/v1/batch``), then lease 500 + ack of everything;
- the webhook inbox: ``store_async`` from an event loop, 64 webhooks of ~700 bytes at a time (a
  loaded receiver), with the p99 time of such a round.

Reported per variant: the process's CPU microseconds per operation (every thread: the writers
and the checkpointer; steadier than rates on a shared machine), the wall rate, the largest WAL
file seen, and each figure's ratio to the chosen settings (the reference, measured in the same
run). Variants run in turns, ``BENCH_SQLITE_ROUNDS`` times (default 3), and the medians are
printed, so a noisy neighbour hurts all of them alike.

Variants: ``chosen`` (the layer's settings); ``page 1024`` (the outbox's before the layer) and
``page 4096`` (SQLite's default, the webhook inbox's before); checkpoints twice and half as
often; and ``sqlite default``: 4 KiB pages with SQLite's own checkpoints, run inside the commit
that crosses 1,000 WAL pages, and no checkpoint thread.

Run: ``python -m benchmarks sqlite`` (``BENCH_SQLITE_N`` sets the operations per phase, default
20,000).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

__all__ = ["main"]

N = int(os.environ.get("BENCH_SQLITE_N", "20000"))
ROUNDS = int(os.environ.get("BENCH_SQLITE_ROUNDS", "3"))
INBOX_CONCURRENCY = 64

#: name -> the layer's settings to change (module attribute -> value); None means unchanged.
VARIANTS: dict[str, dict[str, Any]] = {
    "chosen": {},
    "page 1024": {"connection.PAGE_SIZE": 1024},
    "page 4096": {"connection.PAGE_SIZE": 4096},
    "checkpoints x2": {
        "checkpoint.CHECKPOINT_EVERY_CHANGES": 0.5,
        "checkpoint.CHECKPOINT_EVERY_COMMITS": 0.5,
    },
    "checkpoints /2": {
        "checkpoint.CHECKPOINT_EVERY_CHANGES": 2.0,
        "checkpoint.CHECKPOINT_EVERY_COMMITS": 2.0,
    },
    "sqlite default": {"connection.PAGE_SIZE": 4096, "autocheckpoint": 1000},
}


# --- the child: one variant ---------------------------------------------------------------------


def _apply(variant: dict[str, Any]) -> int | None:
    """Set the layer's settings for ``variant``; the autocheckpoint to use, if any."""
    from cio_relay.sqlite import checkpoint, connection

    modules = {"connection": connection, "checkpoint": checkpoint}
    autocheckpoint = variant.get("autocheckpoint")
    for name, value in variant.items():
        if name == "autocheckpoint":
            continue
        module, attribute = name.split(".")
        current = getattr(modules[module], attribute)
        # Floats scale the chosen value (checkpoint intervals); ints replace it.
        setattr(
            modules[module], attribute, int(current * value) if isinstance(value, float) else value
        )
    if autocheckpoint is not None:  # no thread: SQLite checkpoints inside the commits
        checkpoint.CHECKPOINT_EVERY_CHANGES = checkpoint.CHECKPOINT_EVERY_COMMITS = 10**12
    return autocheckpoint


def _operations(count: int, prefix: str) -> list[Any]:
    from cio_relay import operations

    data = {"order_id": "o-1", "total": 42.5, "currency": "EUR", "items": 3}
    return [operations.track(f"{prefix}-{i % 5000}", "order_completed", data) for i in range(count)]


class _Wal:
    """The largest size the WAL file of ``path`` was seen at."""

    def __init__(self, path: str) -> None:
        self.path = path + "-wal"
        self.largest = 0

    def look(self) -> None:
        with contextlib.suppress(FileNotFoundError):  # not made yet, or removed at close
            self.largest = max(self.largest, os.stat(self.path).st_size)


def _measure(call: Any, items: list[Any], wal: _Wal) -> tuple[float, float]:
    """CPU microseconds per item (whole process) and items per second of ``call`` on each."""
    import time

    cpu, wall = time.process_time(), time.perf_counter()
    for n, item in enumerate(items):
        call(item)
        if n % 256 == 0:
            wal.look()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / len(items) * 1e6, len(items) / wall


def _outbox(directory: str, autocheckpoint: int | None) -> dict[str, float]:
    from cio_relay.outbox.sqlite import SqliteOutbox

    path = os.path.join(directory, "outbox.db")
    box = SqliteOutbox(path)
    if autocheckpoint is not None:
        box._conn.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")
    wal = _Wal(path)
    result: dict[str, float] = {}
    try:
        one = [[op] for op in _operations(N, "one")]
        result["enqueue cpu"], result["enqueue rate"] = _measure(box.enqueue, one, wal)
        nowait = [[op] for op in _operations(N, "loop")]

        def on_loop(ops: list[Any]) -> None:
            if box.enqueue_nowait(ops) is None:  # the checkpoint's pause: as the API does
                box.enqueue(ops)

        result["nowait cpu"], result["nowait rate"] = _measure(on_loop, nowait, wal)
        ops = _operations(N * 5, "batch")
        batches = [ops[i : i + 100] for i in range(0, len(ops), 100)]
        cpu, rate = _measure(box.enqueue, batches, wal)
        result["batch cpu"], result["batch rate"] = cpu / 100, rate * 100
        leases: list[int] = []

        def lease_and_ack(_: int) -> None:
            taken = box.lease(500, 60)
            box.ack(taken)
            leases.append(len(taken))

        total = 2 * N + 5 * N
        cpu, rate = _measure(lease_and_ack, list(range(total // 500 + 1)), wal)
        done = sum(leases)
        assert done == total, (done, total)
        result["lease cpu"] = cpu * len(leases) / done
        result["lease rate"] = rate * done / len(leases)
        result["outbox wal MB"] = wal.largest / 2**20
    finally:
        box.close()
    return result


def _inbox(directory: str, autocheckpoint: int | None) -> dict[str, float]:
    import asyncio
    import time

    import orjson

    from cio_relay.webhooks.events import parse_event
    from cio_relay.webhooks.sqlite_inbox import SQLiteInbox

    path = os.path.join(directory, "webhooks.db")
    inbox = SQLiteInbox(path)
    if autocheckpoint is not None:
        inbox._db.writer.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")
    wal = _Wal(path)
    bodies = [
        orjson.dumps(
            {
                "event_id": f"01HZ{i:022d}",
                "object_type": "email",
                "metric": "delivered",
                "timestamp": 1_700_000_000,
                "data": {
                    "customer_id": f"user-{i % 5000}",
                    "identifiers": {"id": f"user-{i % 5000}", "email": f"u{i}@example.com"},
                    "delivery_id": f"RPILAgABcRhIBqSp7kiPekGBIeVh{i}",
                    "campaign_id": 23,
                    "action_id": 42,
                    "recipient": f"u{i % 5000}@example.com",
                    "subject": "Your order has shipped " * 12,
                },
            }
        )
        for i in range(N)
    ]
    events = [(parse_event(body), body) for body in bodies]
    rounds: list[float] = []

    async def run() -> None:
        for start in range(0, len(events), INBOX_CONCURRENCY):
            began = time.perf_counter()
            chunk = events[start : start + INBOX_CONCURRENCY]
            await asyncio.gather(*(inbox.store_async(event, raw) for event, raw in chunk))
            rounds.append(time.perf_counter() - began)
            wal.look()

    try:
        cpu, wall = time.process_time(), time.perf_counter()
        asyncio.run(run())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert inbox.counts().pending == len(events)
    finally:
        inbox.close()
    rounds.sort()
    return {
        "inbox cpu": cpu / len(events) * 1e6,
        "inbox rate": len(events) / wall,
        "inbox p99 ms": rounds[int(len(rounds) * 0.99)] * 1000,
        "inbox wal MB": wal.largest / 2**20,
        "inbox row bytes": sum(map(len, bodies)) / len(bodies),
    }


def child(name: str) -> None:
    autocheckpoint = _apply(VARIANTS[name])
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as directory:
        result = _outbox(directory, autocheckpoint)
        result.update(_inbox(directory, autocheckpoint))
    print(json.dumps(result))


# --- the parent: every variant, in turns --------------------------------------------------------

#: (label, key, unit, higher is better)
FIGURES = [
    ("outbox enqueue, 1 op a call", "enqueue", "ops/s", True),
    ("outbox enqueue_nowait, 1 op", "nowait", "ops/s", True),
    ("outbox enqueue, 100 ops a call", "batch", "ops/s", True),
    ("outbox lease 500 + ack", "lease", "ops/s", True),
    ("inbox store_async, 64 at a time", "inbox", "events/s", True),
]


def _run_variant(name: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_sqlite", "child", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for _ in range(ROUNDS):
        for name in VARIANTS:
            runs[name].append(_run_variant(name))
    medians = {
        name: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for name, results in runs.items()
    }
    chosen = medians["chosen"]
    print(f"{N:,} operations a phase, {ROUNDS} rounds of every variant in turn, medians")
    print("CPU us an operation (all threads) [ratio to chosen], wall rate")
    for label, key, unit, _ in FIGURES:
        print(f"{label}:")
        for name, figures in medians.items():
            cpu, rate = figures[f"{key} cpu"], figures[f"{key} rate"]
            print(
                f"  {name:<15} {cpu:7.2f} us [{cpu / chosen[f'{key} cpu']:4.2f}x]"
                f"  {rate:>9,.0f} {unit} [{rate / chosen[f'{key} rate']:4.2f}x]"
            )
    print("inbox round of 64, p99; largest WAL file (outbox run, inbox run):")
    for name, figures in medians.items():
        print(
            f"  {name:<15} p99 {figures['inbox p99 ms']:6.1f} ms;"
            f"  WAL {figures['outbox wal MB']:5.1f} MB, {figures['inbox wal MB']:5.1f} MB"
        )
    print(f"(webhook bodies of {chosen['inbox row bytes']:.0f} bytes on average)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        main()
