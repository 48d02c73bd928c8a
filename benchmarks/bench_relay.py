"""End-to-end: ``relay.track()`` to accepted at the emulator, next to the official SDK (issue 3).

Three processes share the machine's cores, as they would in production: the emulator (the
Customer.io stand-in), one ``cio-relay worker`` and this process calling ``relay.track()``.

Prints, in one run:
(a) end-to-end events/s with the SQLite outbox; (b) the official ``customerio`` SDK's ``track``
calls/s against the same emulator; (c) their ratio; (d) ``relay.track()`` latency p50/p99 and
single-thread enqueue ops/s; (e) peak RSS of a process with 1,000,000 operations waiting; (f) the
end-to-end run and the SDK with 30 ms of emulated network latency per request.

Everything targets 127.0.0.1 only and every loop is bounded in count and time. The whole run takes
under a minute on 2 cores; ``BENCH_EVENTS``, ``BENCH_SLOW_EVENTS``, ``BENCH_SDK_CALLS``,
``BENCH_LATENCY_CALLS`` and ``BENCH_WAITING`` scale its phases.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.support import free_port, start_emulator, wait_for

EVENTS = int(os.environ.get("BENCH_EVENTS", "60000"))
SLOW_EVENTS = int(os.environ.get("BENCH_SLOW_EVENTS", "20000"))
PEOPLE = 20_000
SDK_CALLS = int(os.environ.get("BENCH_SDK_CALLS", "2000"))
SDK_CALLS_SLOW = 60
LATENCY_CALLS = int(os.environ.get("BENCH_LATENCY_CALLS", "20000"))
WAITING = int(os.environ.get("BENCH_WAITING", "1000000"))
ASYNC_CALLERS = 64
DEADLINE = 300.0  # seconds any single phase may take
#: An emulator fault: 30 ms added to every API request.
SLOW_NETWORK: dict[str, float] = {"latency_ms": 30}


def _env(emulator_url: str, outbox: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CUSTOMERIO_SITE_ID="bench-site",
        CUSTOMERIO_TRACK_API_KEY="bench-track-key",
        CUSTOMERIO_APP_API_KEY="bench-app-key",
        CUSTOMERIO_TRACK_URL=emulator_url,
        CUSTOMERIO_APP_URL=emulator_url,
        CIO_RELAY_OUTBOX=f"sqlite:///{outbox}",
        CIO_RELAY_STAMP_ENV="0",
    )
    return env


@contextmanager
def _worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cio_relay", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def _accepted(client: httpx.Client) -> int:
    return int(client.get("/_emulator/stats").json()["events_accepted"])


def _reset(client: httpx.Client, fault: dict[str, float] | None) -> None:
    """A fresh emulator (a reset also clears faults), then ``fault`` if one is given."""
    client.post("/_emulator/reset").raise_for_status()
    if fault is not None:
        client.post("/_emulator/faults", json=fault).raise_for_status()


def end_to_end(emulator_url: str, events: int, fault: dict[str, float] | None = None) -> float:
    """Events/s from the first ``relay.track()`` to the last event accepted at the emulator."""
    from cio_relay.config import Settings
    from cio_relay.relay import Relay

    with tempfile.TemporaryDirectory() as tmp, httpx.Client(base_url=emulator_url) as client:
        outbox = Path(tmp) / "outbox.db"
        env = _env(emulator_url, outbox)
        _reset(client, fault)
        relay = Relay(Settings(outbox=f"sqlite:///{outbox}", stamp_env=False))
        with _worker(env):
            started = time.perf_counter()
            for i in range(events):
                relay.track(f"user-{i % PEOPLE}", "order_completed", {"total": i, "sku": "A-1"})
            wait_for(lambda: _accepted(client) >= events, DEADLINE, "events at the emulator")
            elapsed = time.perf_counter() - started
        relay.close()
    return events / elapsed


def end_to_end_async(emulator_url: str, events: int, callers: int = ASYNC_CALLERS) -> float:
    """``end_to_end`` with ``AsyncRelay.track()`` awaited by ``callers`` concurrent tasks, as in
    an asyncio web app: concurrent calls share a commit."""
    import asyncio

    from cio_relay.config import Settings
    from cio_relay.relay import AsyncRelay

    async def produce(relay: AsyncRelay) -> None:
        numbers = iter(range(events))

        async def caller() -> None:
            for i in numbers:
                await relay.track(f"user-{i % PEOPLE}", "order_completed", {"total": i})

        await asyncio.gather(*(caller() for _ in range(callers)))

    with tempfile.TemporaryDirectory() as tmp, httpx.Client(base_url=emulator_url) as client:
        outbox = Path(tmp) / "outbox.db"
        _reset(client, None)
        relay = AsyncRelay(Settings(outbox=f"sqlite:///{outbox}", stamp_env=False))
        with _worker(_env(emulator_url, outbox)):
            started = time.perf_counter()
            asyncio.run(produce(relay))
            wait_for(lambda: _accepted(client) >= events, DEADLINE, "events at the emulator")
            elapsed = time.perf_counter() - started
        asyncio.run(relay.aclose())
    return events / elapsed


def sdk_calls_per_second(emulator_url: str, calls: int) -> float:
    """The official SDK, one HTTP call per ``track``, the way its README shows."""
    from customerio import CustomerIO

    client = CustomerIO("bench-site", "bench-track-key")
    client.base_url = f"{emulator_url}/api/v1"  # customerio-api.md §7: plain-HTTP workaround
    started = time.perf_counter()
    for i in range(calls):
        client.track(
            customer_id=f"user-{i % PEOPLE}",
            name="order_completed",
            data={"total": i, "sku": "A-1"},
        )
    elapsed = time.perf_counter() - started
    client.close()
    return calls / elapsed


def enqueue_latency(calls: int = LATENCY_CALLS) -> tuple[float, float, float]:
    """p50 and p99 of ``relay.track()`` in microseconds, and single-thread ops/s."""
    from cio_relay.config import Settings
    from cio_relay.relay import Relay

    with tempfile.TemporaryDirectory() as tmp:
        relay = Relay(Settings(outbox=f"sqlite:///{tmp}/outbox.db", stamp_env=False))
        samples = []
        started = time.perf_counter()
        for i in range(calls):
            t0 = time.perf_counter()
            relay.track(f"user-{i % PEOPLE}", "order_completed", {"total": i, "sku": "A-1"})
            samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        relay.close()
    quantiles = statistics.quantiles(samples, n=100)
    return quantiles[49] * 1e6, quantiles[98] * 1e6, calls / elapsed


def _rss_child(count: int) -> None:
    """Run in a subprocess: enqueue ``count`` operations, lease one batch, report peak RSS."""
    from cio_relay import operations as ops
    from cio_relay.config import Settings
    from cio_relay.relay import Relay

    with tempfile.TemporaryDirectory() as tmp:
        relay = Relay(Settings(outbox=f"sqlite:///{tmp}/outbox.db", stamp_env=False))
        chunk = 5_000
        for start in range(0, count, chunk):
            relay.enqueue(
                *(
                    ops.track(f"user-{i % PEOPLE}", "order_completed", {"total": i})
                    for i in range(start, min(count, start + chunk))
                )
            )
        waiting = relay.outbox.depth().pending
        t0 = time.perf_counter()
        leases = relay.outbox.lease(1500, 60.0)
        lease_ms = (time.perf_counter() - t0) * 1e3
        relay.close()
    # VmHWM: this process's own peak RSS. ru_maxrss would also count the peak of the parent it
    # was spawned from (Linux carries it over exec), here the benchmark driver's.
    status = Path("/proc/self/status").read_text().splitlines()
    peak = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    peak_kb = int(peak[0]) if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{waiting} {peak_kb} {len(leases)} {lease_ms:.1f}")


def peak_rss(count: int) -> tuple[int, float, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from benchmarks.bench_relay import _rss_child; _rss_child({count})",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
    ).stdout.split()
    waiting, peak_kb, _leased, lease_ms = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    return waiting, peak_kb / 1024, lease_ms


def main() -> None:
    port = free_port()
    with start_emulator(port) as url, httpx.Client(base_url=url) as client:
        e2e = end_to_end(url, EVENTS)
        sdk = sdk_calls_per_second(url, SDK_CALLS)
        print(
            f"(a) end-to-end relay.track() -> emulator, SQLite outbox: {e2e:,.0f} events/s"
            f" ({EVENTS:,} events, {PEOPLE:,} people)"
        )
        print(f"(b) official customerio SDK track(): {sdk:,.0f} calls/s ({SDK_CALLS:,} calls)")
        print(f"(c) ratio relay / SDK: {e2e / sdk:,.1f}x (target >= 30x)")
        e2e_async = end_to_end_async(url, EVENTS)
        print(
            f"(a') the same with AsyncRelay.track() from {ASYNC_CALLERS} concurrent tasks: "
            f"{e2e_async:,.0f} events/s, {e2e_async / sdk:,.1f}x the SDK"
        )
        p50, p99, rate = enqueue_latency()
        print(
            f"(d) relay.track() latency p50 {p50:,.0f} us, p99 {p99:,.0f} us (target p99 <= "
            f"1,000 us); single-thread enqueue {rate:,.0f} ops/s"
        )
        # end_to_end resets the emulator, which clears faults: each run sets its own.
        slow_e2e = end_to_end(url, SLOW_EVENTS, SLOW_NETWORK)
        _reset(client, SLOW_NETWORK)
        try:
            slow_sdk = sdk_calls_per_second(url, SDK_CALLS_SLOW)
        finally:
            client.delete("/_emulator/faults")
        print(
            f"(f) with 30 ms latency per request: relay {slow_e2e:,.0f} events/s, SDK "
            f"{slow_sdk:,.1f} calls/s, ratio {slow_e2e / slow_sdk:,.0f}x (target >= 1000x)"
        )
    waiting, rss_mb, lease_ms = peak_rss(WAITING)
    print(
        f"(e) peak RSS with {waiting:,} operations waiting: {rss_mb:,.0f} MB (target <= 200 MB);"
        f" leasing 1,500 of them took {lease_ms:.1f} ms"
    )
