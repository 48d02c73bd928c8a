"""The SQLite outbox against bare SQLite inserts (same journal and synchronous modes), in one run.

Measures: single-thread enqueue (one op per call) ops/s and latency p50/p99; 8 threads enqueueing
at once (group commit); lease + ack in batches of 500; and a separate process holding 1,000,000
waiting operations (900,000 of them behind one person's retrying head): its peak RSS, the time
of a lease of 500, and of ``depth()``. The reference is bare SQLite in WAL mode at the same
synchronous level: one row per commit into a table with no index, and 1,000 rows per commit.

Run: ``python -m benchmarks outbox`` (``BENCH_OUTBOX_N`` sets the enqueue count, default 20,000).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cio_relay import operations
from cio_relay.operations import Operation
from cio_relay.outbox.sqlite import SqliteOutbox

__all__ = ["main"]

N = int(os.environ.get("BENCH_OUTBOX_N", "20000"))
WAITING = int(os.environ.get("BENCH_OUTBOX_WAITING", "1000000"))


def realistic_ops(count: int, people: int = 5000, prefix: str = "user") -> list[Operation]:
    return [
        operations.track(
            f"{prefix}-{i % people}",
            "order_completed",
            {"order_id": f"o-{i}", "total": 42.5, "currency": "EUR", "items": 3},
        )
        for i in range(count)
    ]


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def single_thread_enqueue(path: Path, durability: str, count: int) -> tuple[float, float, float]:
    """ops/s, p50 and p99 latency (seconds) of one-op enqueue calls from one thread."""
    ops = realistic_ops(count)
    outbox = SqliteOutbox(path, durability=durability)  # type: ignore[arg-type]
    latencies = []
    clock = time.perf_counter
    try:
        started = clock()
        for op in ops:
            before = clock()
            outbox.enqueue([op])
            latencies.append(clock() - before)
        elapsed = clock() - started
    finally:
        outbox.close()
    latencies.sort()
    return count / elapsed, _percentile(latencies, 0.5), _percentile(latencies, 0.99)


def threaded_enqueue(path: Path, durability: str, count: int, threads: int) -> tuple[float, int]:
    """ops/s with ``threads`` threads enqueueing one op per call, and the commits it took."""
    chunks = [realistic_ops(count // threads, prefix=f"t{t}") for t in range(threads)]
    outbox = SqliteOutbox(path, durability=durability)  # type: ignore[arg-type]
    start = threading.Barrier(threads + 1)

    def work(chunk: list[Operation]) -> None:
        start.wait()
        for op in chunk:
            outbox.enqueue([op])

    workers = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    try:
        for worker in workers:
            worker.start()
        start.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        commits = outbox.enqueue_commits
    finally:
        outbox.close()
    return sum(map(len, chunks)) / elapsed, commits


def lease_and_ack(path: Path, count: int, batch: int = 500) -> float:
    """ops/s of lease(batch) + ack over ``count`` ops spread over many people."""
    outbox = SqliteOutbox(path)
    try:
        ops = realistic_ops(count, people=count // 2)
        for i in range(0, count, 1000):
            outbox.enqueue(ops[i : i + 1000])
        started = time.perf_counter()
        done = 0
        while leases := outbox.lease(batch, 60):
            outbox.ack(leases)
            done += len(leases)
        return done / (time.perf_counter() - started)
    finally:
        outbox.close()


def batched_enqueue(path: Path, count: int, per_call: int = 1000) -> float:
    ops = realistic_ops(count)
    outbox = SqliteOutbox(path)
    try:
        started = time.perf_counter()
        for i in range(0, count, per_call):
            outbox.enqueue(ops[i : i + per_call])
        return count / (time.perf_counter() - started)
    finally:
        outbox.close()


def bare_sqlite(path: Path, synchronous: str, count: int, per_commit: int) -> float:
    """Reference: the same records into an index-free table, ``per_commit`` rows a commit."""
    records = [op.to_record() for op in realistic_ops(count)]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("CREATE TABLE t (op_id, kind, person_key, payload, created_at, env)")
        insert = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)"
        started = time.perf_counter()
        for i in range(0, count, per_commit):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, records[i : i + per_commit])
            conn.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        conn.close()


_WAITING_CHILD = """
import resource, sys, time
from cio_relay import operations
from cio_relay.outbox.sqlite import SqliteOutbox

path, total = sys.argv[1], int(sys.argv[2])
whale = total * 9 // 10
outbox = SqliteOutbox(path)
data = {"order_id": "o-1", "total": 42.5, "currency": "EUR", "items": 3}
started = time.perf_counter()
for start in range(0, total, 1000):
    outbox.enqueue([
        operations.track("whale" if i < whale else f"user-{i}", "order_completed", data)
        for i in range(start, min(start + 1000, total))
    ])
fill = time.perf_counter() - started
[head] = outbox.lease(1, 60)
assert head.op.person_key == "id:whale"
outbox.retry_later(head, retry_at=time.time() + 3600, error="503")
started = time.perf_counter()
leases = outbox.lease(500, 60)
lease_ms = (time.perf_counter() - started) * 1000
assert len(leases) == 500 and all(lease.op.person_key != "id:whale" for lease in leases)
started = time.perf_counter()
depth = outbox.depth()
depth_ms = (time.perf_counter() - started) * 1000
outbox.close()
# VmHWM: this process's peak RSS. ru_maxrss would also count the parent's peak, which Linux
# carries across fork and exec.
with open("/proc/self/status") as status:
    peak = [line.split()[1] for line in status if line.startswith("VmHWM:")]
rss_mb = int(peak[0]) / 1024 if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{total} {fill:.1f} {lease_ms:.2f} {depth_ms:.2f} {rss_mb:.0f} {depth.pending}")
"""


def million_waiting(path: Path, total: int) -> tuple[float, float, float, float, int]:
    """In a fresh process: fill seconds, lease-500 ms, depth ms, peak RSS MB, pending."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WAITING_CHILD), str(path), str(total)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[1]), float(out[2]), float(out[3]), float(out[4]), int(out[5])


def _fresh(directory: Path) -> Callable[[str], Path]:
    def path(name: str) -> Path:
        return directory / f"{name}.db"

    return path


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        db = _fresh(Path(tmp))
        rate, p50, p99 = single_thread_enqueue(db("single"), "process", N)
        bare = bare_sqlite(db("bare"), "NORMAL", N, 1)
        print(f"enqueue, 1 thread, 1 op/call, durability=process: {rate:,.0f} ops/s")
        print(f"  latency p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
        print(f"  bare SQLite insert, 1 row/commit, same pragmas: {bare:,.0f} rows/s")
        print(f"  ratio outbox / bare: {rate / bare:.2f}")

        rate8, commits = threaded_enqueue(db("threads"), "process", N, 8)
        print(f"enqueue, 8 threads, durability=process: {rate8:,.0f} ops/s ({commits:,} commits)")

        slow = max(N // 10, 800)
        rate_p, _, p99_p = single_thread_enqueue(db("power1"), "power", slow)
        rate_p8, commits_p8 = threaded_enqueue(db("power8"), "power", slow, 8)
        bare_p = bare_sqlite(db("bare-power"), "FULL", slow, 1)
        print(f"enqueue, durability=power: 1 thread {rate_p:,.0f} ops/s (p99 {p99_p * 1e3:.1f} ms)")
        print(f"  8 threads {rate_p8:,.0f} ops/s in {commits_p8:,} commits for {slow:,} calls")
        print(f"  bare SQLite 1 row/commit, synchronous=FULL: {bare_p:,.0f} rows/s")

        bulk = batched_enqueue(db("bulk"), N * 5)
        bare_bulk = bare_sqlite(db("bare-bulk"), "NORMAL", N * 5, 1000)
        print(
            f"enqueue, 1,000 ops/call: {bulk:,.0f} ops/s (bare 1,000 rows/commit {bare_bulk:,.0f})"
        )

        print(f"lease 500 + ack: {lease_and_ack(db('lease'), N * 3):,.0f} ops/s")

        total = WAITING
        fill, lease_ms, depth_ms, rss, pending = million_waiting(db("million"), total)
        size_mb = sum(f.stat().st_size for f in Path(tmp).glob("million.db*")) / 2**20
        print(
            f"{total:,} waiting ({total * 9 // 10:,} behind one retrying head): "
            f"filled in {fill:.1f} s ({total / fill:,.0f} ops/s in 1,000-op calls), "
            f"file {size_mb:,.0f} MB"
        )
        print(f"  lease 500: {lease_ms:.2f} ms; depth(): {depth_ms:.2f} ms (pending {pending:,})")
        print(f"  peak RSS of that process: {rss:.0f} MB")


if __name__ == "__main__":
    main()
