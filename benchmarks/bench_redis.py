"""End-to-end events/s on the Redis outbox with 1, 2 and 4 worker processes, next to SQLite.

Processes, as in production: the emulator (``cio-relay emulator``, the Customer.io stand-in),
``redis-server`` (``appendonly yes``, ``appendfsync everysec``), N ``cio-relay worker`` processes,
and this process producing: ``relay.enqueue()`` of 500 ``relay``-built track operations at a
time (what the HTTP ingestion API's ``/v1/batch`` does; the collector tuned as the service tunes
it), 20,000 people. End to end is from the
first enqueue to the last event accepted at the emulator. The SQLite outbox runs the same
workload in the same run (1 and 2 workers on one file).

Also printed: CPU seconds used by each kind of process during each run (from /proc), which is
what decides scaling on a small machine, and single-call ``relay.track()`` enqueues/s on Redis
(one round trip each).

Run: ``python -m benchmarks redis`` (``BENCH_REDIS_EVENTS`` sets the event count, default
200,000).
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.support import BENCH_KEYS, cpu_seconds, free_port, start_emulator, wait_for
from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.relay import Relay
from cio_relay.server.runner import tune_gc
from tests.fixtures.redis_server import RedisServer

__all__ = ["main"]

EVENTS = int(os.environ.get("BENCH_REDIS_EVENTS", "200000"))
PEOPLE = 20_000
BATCH = 500
SINGLE_CALLS = 5_000
DEADLINE = 300.0  # seconds any single wait may take


@dataclass
class Run:
    outbox: str
    workers: int
    events_per_second: float
    cpu: dict[str, float]  # seconds of CPU per kind of process during the run


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _env(emulator_url: str, outbox_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CUSTOMERIO_SITE_ID=BENCH_KEYS["site_id"],
        CUSTOMERIO_TRACK_API_KEY=BENCH_KEYS["track_api_key"],
        CUSTOMERIO_APP_API_KEY=BENCH_KEYS["app_api_key"],
        CUSTOMERIO_TRACK_URL=emulator_url,
        CUSTOMERIO_APP_URL=emulator_url,
        CIO_RELAY_OUTBOX=outbox_url,
        CIO_RELAY_STAMP_ENV="0",
    )
    return env


@contextmanager
def _workers(count: int, env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cio_relay", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _accepted(client: httpx.Client) -> int:
    return int(client.get("/_emulator/stats").json()["events_accepted"])


def _batches(count: int, start: int) -> Iterator[list[ops.Operation]]:
    for first in range(start, start + count, BATCH):
        yield [
            ops.track(f"user-{i % PEOPLE}", "order_completed", {"total": i, "sku": "A-1"})
            for i in range(first, min(first + BATCH, start + count))
        ]


def end_to_end(
    emulator_url: str, emulator_pid: int, outbox_url: str, workers: int, redis_pid: int | None
) -> Run:
    """Workers warmed up on a first batch, then ``EVENTS`` produced and delivered."""
    relay = Relay(Settings(outbox=outbox_url, stamp_env=False))
    with httpx.Client(base_url=emulator_url, timeout=30) as client:
        client.post("/_emulator/reset").raise_for_status()
        with _workers(workers, _env(emulator_url, outbox_url)) as procs:
            relay.enqueue(*next(_batches(BATCH, 0)))  # warm-up: every worker is up and polling
            wait_for(lambda: _accepted(client) >= BATCH, DEADLINE, "the warm-up batch")
            pids = {"emulator": [emulator_pid], "workers": [p.pid for p in procs]}
            if redis_pid is not None:
                pids["redis"] = [redis_pid]
            before = {kind: sum(map(cpu_seconds, found)) for kind, found in pids.items()}
            producer_before = _own_cpu()
            started = time.perf_counter()
            for batch in _batches(EVENTS, BATCH):
                relay.enqueue(*batch)
            wait_for(lambda: _accepted(client) >= BATCH + EVENTS, DEADLINE, "every event")
            elapsed = time.perf_counter() - started
            cpu = {k: sum(map(cpu_seconds, pids[k])) - v for k, v in before.items()}
            cpu["producer"] = _own_cpu() - producer_before
    relay.close()
    scheme = outbox_url.split(":", 1)[0]
    return Run(scheme, workers, EVENTS / elapsed, cpu)


def single_call_enqueues(outbox_url: str) -> float:
    """``relay.track()`` one at a time: one Redis round trip each."""
    relay = Relay(Settings(outbox=outbox_url, stamp_env=False))
    started = time.perf_counter()
    for i in range(SINGLE_CALLS):
        relay.track(f"user-{i % PEOPLE}", "order_completed", {"total": i})
    elapsed = time.perf_counter() - started
    relay.close()
    return SINGLE_CALLS / elapsed


def _report(run: Run) -> None:
    cpu = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in sorted(run.cpu.items()))
    busy = sum(run.cpu.values()) * run.events_per_second / EVENTS  # CPU seconds per second
    print(
        f"  {run.outbox:<6} {run.workers} worker(s): {run.events_per_second:>9,.0f} events/s"
        f"   CPU s: {cpu}   cores busy: {busy:.2f}",
        flush=True,
    )


def main() -> None:
    # The producer stands for the ingestion service, which tunes the collector like this (and so
    # do the workers, `cio-relay worker`): 500 operations a batch are ~2,000 fresh containers.
    # Restored afterwards for the benchmarks that run next in this process.
    threshold = gc.get_threshold()
    tune_gc()
    try:
        _main()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _main() -> None:
    port = free_port()
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_emulator(port) as emulator_url,
        _emulator_pid(port) as emulator_pid,
    ):
        server = RedisServer(Path(tmp), "--appendonly", "yes", "--appendfsync", "everysec")
        server.start()
        try:
            print(
                f"{EVENTS:,} events over {PEOPLE:,} people, produced {BATCH} per enqueue; "
                "Redis with appendonly yes, appendfsync everysec",
                flush=True,
            )
            for workers in (1, 2, 4):
                url = f"{server.url}?namespace=bench-{workers}"
                runs.append(end_to_end(emulator_url, emulator_pid, url, workers, server.pid))
                _report(runs[-1])
            for workers in (1, 2):
                url = f"sqlite:///{tmp}/outbox-{workers}.db"
                runs.append(end_to_end(emulator_url, emulator_pid, url, workers, None))
                _report(runs[-1])
            single = single_call_enqueues(f"{server.url}?namespace=bench-single")
        finally:
            server.stop()
    redis_2 = next(r for r in runs if r.outbox == "redis" and r.workers == 2)
    sqlite_1 = next(r for r in runs if r.outbox == "sqlite" and r.workers == 1)
    print(
        f"Redis with 2 workers: {redis_2.events_per_second:,.0f} events/s (target >= 50,000); "
        f"{redis_2.events_per_second / sqlite_1.events_per_second:.2f}x SQLite with 1 worker.\n"
        f"Single-call relay.track() on Redis: {single:,.0f} enqueues/s (one round trip each).\n"
        "On 2 cores every process above shares the same two CPUs: adding workers adds CPU "
        "demand, not CPU, so throughput is bounded by the total CPU per event (the sum of the "
        "CPU columns over the events, with most of the two cores busy) rather than by any one "
        "process; more machines, or a Redis and an emulator of their own, are what let more "
        "workers scale."
    )


@contextmanager
def _emulator_pid(port: int) -> Iterator[int]:
    """The pid of the emulator ``start_emulator`` began: our child serving on ``port``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        if int(parent) == os.getpid() and b"emulator" in argv and str(port).encode() in argv:
            yield int(pid)
            return
    raise RuntimeError(f"no emulator process on port {port}")
