"""The emulator's own capacity: v1 identify requests/s and v2 batch events/s (issue 2).

The emulator runs as its own process (``cio-relay emulator``), as it does in every other
benchmark, and is compared with a bare endpoint on the same server stack (uvicorn, uvloop,
httptools, no access log) that only reads the body and answers ``200 {}``: the ratio is the
share of the stack's capacity left once the emulator parses, validates and stores.

Client: aiohttp on 127.0.0.1, 64 concurrent identify requests or 8 concurrent batches of 1,500
events (~390 KB each), each measurement bounded by a request count and a time limit. Client and
server share the machine's cores, so the figures are a floor, not the server's ceiling.

Run: ``python -m benchmarks emulator`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.support import BENCH_KEYS, cpu_seconds, free_port, wait_for

__all__ = ["bare_app", "main"]

IDENTIFY_CONCURRENCY = 64
IDENTIFY_MAX_REQUESTS = 150_000
BATCH_CONCURRENCY = 8
BATCH_EVENTS = 1_500
BATCH_MAX_REQUESTS = 240
SECONDS = 5.0
WARMUP_SECONDS = 1.0
ROOT = Path(__file__).resolve().parent.parent

_AUTH = (
    "Basic "
    + base64.b64encode(f"{BENCH_KEYS['site_id']}:{BENCH_KEYS['track_api_key']}".encode()).decode()
)


# --- the bare endpoint --------------------------------------------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers ``200 {}``: the stack's cost with no work at all."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def _serve_bare(port: int) -> None:
    import uvicorn

    from cio_relay.emulator.server import uvicorn_config

    uvicorn.Server(uvicorn_config(bare_app, host="127.0.0.1", port=port)).run()


class Server:
    """A server process under test: its URL and its pid (to read its CPU time)."""

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the process so far; None where /proc is not available."""
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return None


@contextmanager
def start_server(argv: list[str], port: int, what: str) -> Iterator[Server]:
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), 30, f"{what} to listen")
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def bare_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_emulator", "serve-bare", str(port)]


def emulator_argv(port: int) -> list[str]:
    """``cio-relay emulator`` as ``benchmarks.support.start_emulator`` runs it."""
    keys = [f"--{name.replace('_', '-')}={value}" for name, value in BENCH_KEYS.items()]
    return [
        sys.executable,
        "-m",
        "cio_relay",
        "emulator",
        "--host=127.0.0.1",
        f"--port={port}",
        *keys,
    ]


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_emulator/stats", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- the load -----------------------------------------------------------------------------


def identify_requests() -> Iterator[tuple[str, str, bytes]]:
    for n in range(10**9):
        body = b'{"email":"user-%d@example.com","plan":"pro","seats":3}' % n
        yield "PUT", f"/api/v1/customers/user-{n}", body


def _event(n: int) -> dict[str, Any]:
    # Digits only after "01": a valid ULID that costs the client nothing to make.
    return {
        "type": "person",
        "action": "event",
        "identifiers": {"id": f"user-{n % 10_000}"},
        "name": "order_completed",
        "id": f"01{n:024d}",
        "timestamp": 1_700_000_000 + n % 86_400,
        "attributes": {
            "order_id": f"order-{n}",
            "total": 42.5,
            "currency": "EUR",
            "items": 3,
            "coupon": "AUTUMN",
            "channel": "web",
        },
    }


def batch_bodies(count: int) -> list[bytes]:
    """``count`` distinct batches (every event id unique, so none is de-duplicated away)."""
    return [
        orjson.dumps({"batch": [_event(b * BATCH_EVENTS + i) for i in range(BATCH_EVENTS)]})
        for b in range(count)
    ]


async def _drive(
    url: str,
    requests: Iterator[tuple[str, str, bytes]],
    concurrency: int,
    max_requests: int,
    seconds: float,
) -> tuple[int, float, dict[int, int]]:
    """(requests answered, elapsed seconds, count by status)."""
    import aiohttp

    statuses: dict[int, int] = {}
    done = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": _AUTH, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal done
            while done < max_requests and time.perf_counter() < deadline:
                method, path, body = next(requests)
                async with session.request(method, path, data=body) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done, elapsed, statuses


class Measured:
    def __init__(self, rate: float, statuses: dict[int, int], cpu_per_request: float | None):
        self.rate = rate
        self.statuses = statuses
        self.cpu_per_request = cpu_per_request

    def cpu_note(self, unit: str = "request", per: int = 1) -> str:
        if self.cpu_per_request is None:
            return ""
        return f" [server CPU {self.cpu_per_request / per * 1e6:,.1f} us per {unit}]"


def measure(
    server: Server,
    requests: Callable[[], Iterator[tuple[str, str, bytes]]],
    concurrency: int,
    max_requests: int,
) -> Measured:
    """Requests/s after a short warm-up, the statuses seen, and the server's CPU per request.
    The warm-up and the run share one stream of requests, so the run never repeats what the
    warm-up sent."""
    stream = requests()
    asyncio.run(_drive(server.url, stream, concurrency, max_requests // 10, WARMUP_SECONDS))
    cpu_before = server.cpu_seconds()
    done, elapsed, statuses = asyncio.run(
        _drive(server.url, stream, concurrency, max_requests, SECONDS)
    )
    cpu_after = server.cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / done
    return Measured(done / elapsed, statuses, cpu)


def _batches(bodies: list[bytes]) -> Callable[[], Iterator[tuple[str, str, bytes]]]:
    def requests() -> Iterator[tuple[str, str, bytes]]:
        for n in range(10**9):
            yield "POST", "/api/v2/batch", bodies[n % len(bodies)]

    return requests


def _check(name: str, statuses: dict[int, int]) -> None:
    if set(statuses) != {200}:
        raise RuntimeError(f"{name}: unexpected answers {statuses}")


def main() -> None:
    # Enough distinct batches for the warm-up and the run, each of which may overshoot its
    # bound by one round of the workers.
    bodies = batch_bodies(BATCH_MAX_REQUESTS + BATCH_MAX_REQUESTS // 10 + 2 * BATCH_CONCURRENCY)
    sizes = sorted(len(b) for b in bodies)
    print(
        f"client: aiohttp, {IDENTIFY_CONCURRENCY} concurrent identifies / {BATCH_CONCURRENCY} "
        f"concurrent batches of {BATCH_EVENTS} events (~{sizes[len(sizes) // 2] // 1000} KB), "
        f"{SECONDS:.0f} s per measurement, all on 127.0.0.1"
    )
    port = free_port()
    with start_server(bare_argv(port), port, "the bare endpoint") as bare:
        bare_identify = measure(
            bare, identify_requests, IDENTIFY_CONCURRENCY, IDENTIFY_MAX_REQUESTS
        )
        bare_batch = measure(bare, _batches(bodies), BATCH_CONCURRENCY, BATCH_MAX_REQUESTS)
    port = free_port()
    with start_server(emulator_argv(port), port, "the emulator") as emulator:
        identify = measure(emulator, identify_requests, IDENTIFY_CONCURRENCY, IDENTIFY_MAX_REQUESTS)
        _check("identify", identify.statuses)
        # Fresh state so the batch run does not pay for the identify run's people.
        httpx.post(f"{emulator.url}/_emulator/reset", timeout=30).raise_for_status()
        batch = measure(emulator, _batches(bodies), BATCH_CONCURRENCY, BATCH_MAX_REQUESTS)
        _check("batch", batch.statuses)
        stats = httpx.get(f"{emulator.url}/_emulator/stats", timeout=30).json()
    print(
        f"v1 identify: emulator {identify.rate:,.0f} req/s{identify.cpu_note()}\n"
        f"             bare     {bare_identify.rate:,.0f} req/s{bare_identify.cpu_note()}\n"
        f"             ratio    {identify.rate / bare_identify.rate:.0%}"
    )
    print(
        f"v2 batch:    emulator {batch.rate * BATCH_EVENTS:,.0f} events/s "
        f"({batch.rate:,.1f} batches/s){batch.cpu_note('event', BATCH_EVENTS)}\n"
        f"             bare     {bare_batch.rate * BATCH_EVENTS:,.0f} events/s "
        f"({bare_batch.rate:,.1f} batches/s){bare_batch.cpu_note('event', BATCH_EVENTS)}\n"
        f"             ratio    {batch.rate / bare_batch.rate:.0%}"
    )
    print(
        f"emulator accepted {stats['events_accepted']:,} events in the batch warm-up and run "
        f"({stats['duplicate_event_ids']:,} duplicate ids, {stats['events_stored']:,} stored). "
        "Client and servers share the cores: when the server CPU per request is well under the "
        "wall time per request, the client is the limit, not the emulator."
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-bare"]:
        _serve_bare(int(sys.argv[2]))
    else:
        main()
