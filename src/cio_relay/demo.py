"""``cio-relay demo``: a one-shot walkthrough of the whole pipeline against the emulator.

It enqueues a realistic mixed workload (people identified, events, transactional emails of
which some go to ``bounce.test``, one broadcast trigger), delivers it with a progress bar,
injects a burst of faults midway (server errors and 429s on the Track batch endpoint, dropped
connections on transactional sends) and ends with a summary: what was delivered, retried and
dead-lettered (by reason), how many requests carried how many operations, and how long it took.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cio_relay.config import Settings
from cio_relay.delivery.dispatcher import DispatchStats
from cio_relay.relay import Relay
from cio_relay.sandbox import Sandbox, start_sandbox

__all__ = ["DemoResult", "DemoWorkload", "run_demo"]

PLANS = ("free", "pro", "team", "enterprise")
EVENTS = ("page_viewed", "item_added", "checkout_started", "order_completed", "search")


@dataclass(frozen=True)
class DemoWorkload:
    people: int = 2_000
    events: int = 20_000
    emails: int = 200
    bounce_every: int = 10  # one email in ten goes to a bounce.test address
    broadcasts: int = 1


@dataclass
class DemoResult:
    enqueued: int
    stats: DispatchStats
    elapsed: float
    dead_by_reason: dict[str, int]
    faults_injected: bool
    emulator_events: int


def _enqueue_workload(relay: Relay, workload: DemoWorkload, rng: random.Random) -> int:
    count = 0
    for i in range(workload.people):
        relay.identify(
            f"user-{i}",
            email=f"user-{i}@example.com",
            plan=rng.choice(PLANS),
            created_at=1_700_000_000 + i,
        )
        count += 1
    for _ in range(workload.events):
        person = f"user-{rng.randrange(workload.people)}"
        relay.track(person, rng.choice(EVENTS), {"value": rng.randint(1, 500)})
        count += 1
    for i in range(workload.emails):
        domain = "bounce.test" if i % workload.bounce_every == 0 else "example.com"
        person = f"user-{i % workload.people}"
        relay.send_email(
            to=f"{person}@{domain}",
            identifiers={"id": person},
            transactional_message_id="welcome",
            message_data={"n": i},
        )
        count += 1
    for _ in range(workload.broadcasts):
        relay.trigger_broadcast(
            1,
            data={"headline": "Autumn sale"},
            ids=[f"user-{i}" for i in range(10)],
            id_ignore_missing=True,
        )
        count += 1
    return count


def _inject_faults(sandbox: Sandbox) -> None:
    faults: list[dict[str, Any]] = [
        {"path": "/api/v2/batch", "error_rate": 1.0, "status_codes": [500, 503, 429], "count": 4},
        {"path": "/v1/send/email", "drop_rate": 1.0, "count": 2},
    ]
    with httpx.Client(base_url=sandbox.url, timeout=5.0) as client:
        for fault in faults:
            client.post("/_emulator/faults", json=fault).raise_for_status()


def run_demo(
    console: Console | None = None,
    workload: DemoWorkload | None = None,
    data_dir: Path | None = None,
    seed: int = 42,
) -> DemoResult:
    console = console or Console()
    workload = workload or DemoWorkload()
    with tempfile.TemporaryDirectory(prefix="cio-relay-demo-") as tmp:
        base = data_dir or Path(tmp)
        settings = Settings(
            data_dir=base,
            outbox=f"sqlite:///{base / 'demo-outbox.db'}",
            retry_base=0.05,
            retry_cap=2.0,
            http_timeout=2.0,
        )
        sandbox = start_sandbox(settings)
        console.print(f"[bold yellow]{sandbox.banner}[/]")
        try:
            return _run(console, workload, sandbox, random.Random(seed))
        finally:
            sandbox.stop()


def _run(
    console: Console, workload: DemoWorkload, sandbox: Sandbox, rng: random.Random
) -> DemoResult:
    relay = Relay(sandbox.settings)
    dead: dict[str, int] = {}
    relay.hooks.on_dead(
        lambda op, reason, detail: dead.__setitem__(reason, dead.get(reason, 0) + 1)
    )
    try:
        started = time.perf_counter()
        enqueued = _enqueue_workload(relay, workload, rng)
        console.print(
            f"Enqueued {enqueued:,} operations durably in {time.perf_counter() - started:.2f} s."
        )
        worker = relay.worker()
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def deliver() -> None:
            try:
                outcome["stats"] = worker.drain()
            except BaseException as exc:  # surfaced below, in the main thread
                outcome["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=deliver, name="cio-relay-demo-worker", daemon=True)
        thread.start()
        faults = _progress(console, relay, enqueued, done, sandbox)
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        elapsed = time.perf_counter() - started
        stats: DispatchStats = outcome["stats"]
        result = DemoResult(enqueued, stats, elapsed, dead, faults, _emulator_events(sandbox))
        console.print(summary_table(result))
        return result
    finally:
        relay.close()


def _progress(
    console: Console, relay: Relay, total: int, done: threading.Event, sandbox: Sandbox
) -> bool:
    injected = False
    columns = (TextColumn("delivering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("deliver", total=total)
        while not done.wait(0.1):
            settled = total - relay.outbox.depth().pending
            progress.update(task, completed=settled)
            if not injected and settled >= total // 3:
                _inject_faults(sandbox)
                injected = True
                progress.console.print(
                    "[red]Injected a burst of faults: 500/503/429 on "
                    "/api/v2/batch, dropped connections on /v1/send/email[/]"
                )
        progress.update(task, completed=total - relay.outbox.depth().pending)
    return injected


def _emulator_events(sandbox: Sandbox) -> int:
    with httpx.Client(base_url=sandbox.url, timeout=5.0) as client:
        stats = client.get("/_emulator/stats").json()
    return int(stats.get("events_accepted", 0))


def summary_table(result: DemoResult) -> Table:
    stats = result.stats
    table = Table(title="cio-relay demo summary", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("operations enqueued", f"{result.enqueued:,}")
    table.add_row("delivered", f"{stats.delivered:,}")
    table.add_row("retries scheduled", f"{stats.retried:,}")
    for reason, count in sorted(result.dead_by_reason.items()):
        table.add_row(f"dead-lettered: {reason}", f"{count:,}")
    if not result.dead_by_reason:
        table.add_row("dead-lettered", "0")
    table.add_row("requests sent", f"{stats.requests:,}")
    per_request = stats.operations_sent / stats.requests if stats.requests else 0.0
    table.add_row("operations per request", f"{per_request:,.1f}")
    table.add_row("events accepted by the emulator", f"{result.emulator_events:,}")
    table.add_row("elapsed", f"{result.elapsed:.2f} s")
    return table
