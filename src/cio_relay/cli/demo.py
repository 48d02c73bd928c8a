"""``cio-relay demo``: a one-shot walkthrough of the whole pipeline against the emulator.

1. The emulator starts in-process (sandbox mode) and reports its webhooks to a webhook receiver
   served on 127.0.0.1 by this process: the same ``WebhookStack`` as ``cio-relay run`` (verify
   the signature, persist raw, then the lake and the built-in handlers).
2. A realistic mixed workload is enqueued durably: people identified, events, transactional
   emails of which some go to ``bounce.test`` (and a few to ``spam.test``), a broadcast trigger.
3. A worker delivers it under a progress bar; when a third of it has settled, a burst of faults
   is injected (500/503/429 on the Track batch endpoint, dropped connections on transactional
   sends, which are ambiguous and so dead-lettered, never re-sent).
4. The emulator's webhooks are flushed, the pipeline drains them into the lake and through the
   handlers, which suppress the bounced and spam-reporting people through the Relay (the demo
   sets ``bounce_policy``/``spam_policy`` to ``suppress``, the reference architecture's choice;
   the default is ``record``); a second drain delivers those suppressions.
5. It ends with a summary table, the delivery funnel read from the lake, and the count of people
   now suppressed at the emulator. Every wait is a drain or a flush, never a sleep.
"""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from starlette.applications import Starlette
from starlette.routing import Route

from cio_relay.config import Settings
from cio_relay.delivery.dispatcher import DispatchStats
from cio_relay.http_guard import ConnectionLimits, guarded_http
from cio_relay.lake.funnel import FunnelRow
from cio_relay.observability.metrics import Metrics
from cio_relay.operations import Operation
from cio_relay.relay import Relay
from cio_relay.server.sandbox import Sandbox, start_sandbox
from cio_relay.server.webhooks import WebhookStack
from cio_relay.serving import BackgroundServer, bind_socket

__all__ = [
    "DemoResult",
    "DemoWorkload",
    "WebhookReport",
    "funnel_summary_table",
    "funnel_totals",
    "run_demo",
    "summary_table",
]

PLANS = ("free", "pro", "team", "enterprise")
EVENTS = ("page_viewed", "item_added", "checkout_started", "order_completed", "search")
MESSAGES = ("welcome", "password_reset", "order_receipt")
WEBHOOK_PATH = "/webhooks/customerio"
FAULTS_AT = 1 / 3  # share of the workload settled when the burst of faults is injected
FLUSH_TIMEOUT = 120  # whole seconds the emulator may take to post every webhook


@dataclass(frozen=True)
class DemoWorkload:
    people: int = 2_000
    events: int = 20_000
    emails: int = 200
    bounce_every: int = 10  # emails 0, 10, 20 ... go to a bounce.test address
    spam_every: int = 25  # emails 1, 26, 51 ... go to a spam.test address
    broadcasts: int = 1

    def __post_init__(self) -> None:
        for name in ("people", "bounce_every", "spam_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("events", "emails", "broadcasts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def total(self) -> int:
        return self.people + self.events + self.emails + self.broadcasts

    def address_of(self, email: int) -> str:
        domain = "example.com"
        if email % self.bounce_every == 0:
            domain = "bounce.test"
        elif email % self.spam_every == 1:
            domain = "spam.test"
        return f"{self.person_of(email)}@{domain}"

    def person_of(self, email: int) -> str:
        return f"user-{email % self.people}"


@dataclass(frozen=True)
class WebhookReport:
    """What happened to the emulator's reporting webhooks."""

    sent: int  # posted by the emulator and acknowledged with a 2xx
    failed: int  # given up by the emulator after its retries
    stored: int  # verified and persisted by the receiver (each event id once)
    lake_rows: int  # written to the lake by the pipeline drain
    handled: int  # events whose handlers ran
    suppressions: int  # suppress operations the built-in handlers enqueued


@dataclass
class DemoResult:
    enqueued: int
    stats: DispatchStats  # delivering the workload
    elapsed: float
    dead_by_reason: dict[str, int]
    faults_injected: bool
    emulator_events: int
    webhooks: WebhookReport
    suppression_stats: DispatchStats  # delivering the suppressions the handlers enqueued
    funnel: list[FunnelRow]
    bounced_people: frozenset[str]  # people with a bounced or spammed email in the lake
    suppressed_people: frozenset[str]  # people suppressed at the emulator at the end


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
        person = workload.person_of(i)
        relay.send_email(
            to=workload.address_of(i),
            identifiers={"id": person},
            transactional_message_id=MESSAGES[i % len(MESSAGES)],
            message_data={"n": i},
        )
        count += 1
    for _ in range(workload.broadcasts):
        relay.trigger_broadcast(
            1,
            data={"headline": "Autumn sale"},
            ids=[f"user-{i}" for i in range(min(10, workload.people))],
            id_ignore_missing=True,
        )
        count += 1
    return count


FAULTS: tuple[dict[str, Any], ...] = (
    {"path": "/api/v2/batch", "error_rate": 1.0, "status_codes": [500, 503, 429], "count": 4},
    {"path": "/v1/send/email", "drop_rate": 1.0, "count": 2},
)
FAULTS_NOTE = "500/503/429 on /api/v2/batch, dropped connections on /v1/send/email"


def _inject_faults(sandbox_url: str) -> None:
    with httpx.Client(base_url=sandbox_url, timeout=10.0) as client:
        for fault in FAULTS:
            client.post("/_emulator/faults", json=fault).raise_for_status()


def _clear_faults(sandbox_url: str) -> None:
    with httpx.Client(base_url=sandbox_url, timeout=10.0) as client:
        client.delete("/_emulator/faults").raise_for_status()


class _Settled:
    """Counts settled operations from the delivery hooks; injects the faults at the threshold.

    The injection runs in the worker's thread, inside the hook, so the burst lands at the same
    point of the workload on every run however fast the machine is (a poll from the display
    thread could miss a short run altogether).
    """

    def __init__(self, threshold: int, inject: Callable[[], None]) -> None:
        self.count = 0
        self.injected = False
        self._threshold = threshold
        self._inject = inject

    def delivered(self, op: Operation, latency: float) -> None:
        self._settle()

    def dead(self, op: Operation, reason: str, detail: str) -> None:
        self._settle()

    def _settle(self) -> None:
        self.count += 1
        if not self.injected and self.count >= self._threshold:
            self.injected = True  # first: a failed injection is not tried again on every op
            self._inject()


@contextlib.contextmanager
def _warnings_to(console: Console) -> Iterator[None]:
    """cio_relay's warnings (the dead-lettered sends) print above the progress bar, not through."""
    from rich.logging import RichHandler

    logger = logging.getLogger("cio_relay")
    handler = RichHandler(console=console, level=logging.WARNING, show_time=False, show_path=False)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def run_demo(
    console: Console | None = None,
    workload: DemoWorkload | None = None,
    data_dir: Path | None = None,
    seed: int = 42,
) -> DemoResult:
    """Run the walkthrough; its files (outbox, webhook inbox, lake) go to ``data_dir``, else
    to a temporary directory removed at the end."""
    console = console or Console()
    workload = workload or DemoWorkload()
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cio-relay-demo-")))
        else:
            base = data_dir
            base.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            data_dir=base,
            outbox=f"sqlite:///{base / 'demo-outbox.db'}",
            lake=str(base / "lake"),
            retry_base=0.05,
            retry_cap=2.0,
            http_timeout=5.0,
            # The reference architecture's choice, chosen explicitly so the walkthrough shows
            # its whole flow; the default (record) never deletes anyone.
            bounce_policy="suppress",
            spam_policy="suppress",
        )
        # The receiver's socket listens before the emulator starts, so the emulator is given
        # its URL up front; webhooks posted before uvicorn accepts wait in the backlog.
        sock = bind_socket("127.0.0.1", 0, backlog=1024)
        stack.callback(sock.close)
        receiver_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        sandbox = start_sandbox(settings, webhook_url=receiver_url + WEBHOOK_PATH)
        stack.callback(sandbox.stop)
        relay = stack.enter_context(Relay(sandbox.settings))
        webhooks = WebhookStack.from_settings(sandbox.settings, relay, Metrics())
        if webhooks is None:  # pragma: no cover - start_sandbox always sets a signing key
            raise RuntimeError("the sandbox gave no webhook signing key")
        stack.callback(webhooks.stop)
        app = Starlette(routes=[Route(WEBHOOK_PATH, webhooks.app, methods=["POST"])])
        limits = ConnectionLimits.from_settings(sandbox.settings)
        config = uvicorn.Config(
            app,
            http=guarded_http(limits),  # the same per-connection limits as cio-relay run
            log_config=None,
            log_level="warning",
            access_log=False,
        )
        stack.enter_context(BackgroundServer(config, sock, name="cio-relay-demo-webhooks"))
        stack.enter_context(_warnings_to(console))
        console.print(f"[bold yellow]{sandbox.banner}[/]")
        console.print(f"Webhook receiver: {receiver_url}{WEBHOOK_PATH}", highlight=False)
        result = _run(console, workload, sandbox, relay, webhooks, random.Random(seed))
        console.print(summary_table(result))
        console.print(funnel_summary_table(result.funnel))
        console.print(
            f"People suppressed at the emulator: [bold]{len(result.suppressed_people):,}[/] "
            f"({len(result.bounced_people):,} people bounced or reported spam)"
        )
        return result
    raise AssertionError("unreachable")  # pragma: no cover - mypy: ExitStack may swallow


def _run(
    console: Console,
    workload: DemoWorkload,
    sandbox: Sandbox,
    relay: Relay,
    webhooks: WebhookStack,
    rng: random.Random,
) -> DemoResult:
    started = time.perf_counter()
    enqueued = _enqueue_workload(relay, workload, rng)
    console.print(
        f"Enqueued {enqueued:,} operations durably in {time.perf_counter() - started:.2f} s."
    )

    def inject() -> None:
        _inject_faults(sandbox.url)
        console.print(f"[red]A burst of faults was injected midway: {FAULTS_NOTE}[/]")

    settled = _Settled(max(1, int(enqueued * FAULTS_AT)), inject)
    relay.hooks.on_delivered(settled.delivered)
    relay.hooks.on_dead(settled.dead)
    stats = _deliver(console, relay, enqueued, settled)
    _clear_faults(sandbox.url)  # whatever the burst left unused must not hit the suppressions

    with console.status("Waiting for the emulator's webhooks, then draining the pipeline"):
        report = _drain_webhooks(sandbox, relay, webhooks)
        suppression_stats = relay.worker().drain()
    elapsed = time.perf_counter() - started
    assert webhooks.lake is not None
    return DemoResult(
        enqueued=enqueued,
        stats=stats,
        elapsed=elapsed,
        dead_by_reason=dict(stats.dead),
        faults_injected=settled.injected,
        emulator_events=_emulator_events(sandbox),
        webhooks=report,
        suppression_stats=suppression_stats,
        funnel=webhooks.lake.funnel(by="transactional", days=2),
        bounced_people=_bounced_people(webhooks),
        suppressed_people=_suppressed_people(sandbox),
    )


def _deliver(console: Console, relay: Relay, total: int, settled: _Settled) -> DispatchStats:
    """Drain the outbox in a thread while the progress bar follows the settled count."""
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
    columns = (TextColumn("delivering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("deliver", total=total)
        while not done.wait(0.1):  # a display refresh, not a wait for the work
            progress.update(task, completed=settled.count)
        progress.update(task, completed=settled.count)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    stats: DispatchStats = outcome["stats"]
    return stats


def _drain_webhooks(sandbox: Sandbox, relay: Relay, webhooks: WebhookStack) -> WebhookReport:
    """Wait until the emulator has posted every webhook, then run the pipeline to the end."""
    with httpx.Client(base_url=sandbox.url, timeout=FLUSH_TIMEOUT + 10) as client:
        flushed = client.post("/_emulator/webhooks/flush", params={"timeout": FLUSH_TIMEOUT})
        if flushed.status_code not in (200, 504):  # 504: not drained in time, said below
            flushed.raise_for_status()
        sender = flushed.json()
    if not sender["drained"]:
        raise RuntimeError(f"the emulator still had {sender['pending']} webhooks to send")
    suppressions = 0

    def count(op: Operation) -> None:
        nonlocal suppressions
        suppressions += 1

    relay.hooks.on_enqueued(count)
    try:
        drained = webhooks.pipeline.drain()
    finally:
        relay.hooks.enqueued.remove(count)
    counts = webhooks.inbox.counts()
    return WebhookReport(
        sent=int(sender["sent"]),
        failed=int(sender["failed"]),
        stored=counts.pending + counts.done + counts.parked,
        lake_rows=drained.lake_rows,
        handled=drained.handlers.done,
        suppressions=suppressions,
    )


def _emulator_events(sandbox: Sandbox) -> int:
    with httpx.Client(base_url=sandbox.url, timeout=10.0) as client:
        stats = client.get("/_emulator/stats").json()
    return int(stats.get("events_accepted", 0))


def _bounced_people(webhooks: WebhookStack) -> frozenset[str]:
    assert webhooks.lake is not None
    rows = webhooks.lake.query(
        "SELECT DISTINCT customer_id FROM events WHERE object_type = 'email' "
        "AND metric IN ('bounced', 'spammed') AND customer_id IS NOT NULL"
    ).rows
    return frozenset(str(row[0]) for row in rows)


def _suppressed_people(sandbox: Sandbox, page: int = 10_000) -> frozenset[str]:
    suppressed: set[str] = set()
    with httpx.Client(base_url=sandbox.url, timeout=30.0) as client:
        offset = 0
        while True:
            body = client.get("/_emulator/people", params={"limit": page, "offset": offset})
            body.raise_for_status()
            people = body.json()["people"]
            suppressed.update(str(p["id"]) for p in people if p["suppressed"])
            offset += len(people)
            if not people or offset >= body.json()["total"]:
                return frozenset(suppressed)


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
    hooks = result.webhooks
    table.add_row("webhooks sent by the emulator", f"{hooks.sent:,}")
    table.add_row("webhooks the emulator gave up on", f"{hooks.failed:,}")
    table.add_row("webhooks verified and stored", f"{hooks.stored:,}")
    table.add_row("webhook events written to the lake", f"{hooks.lake_rows:,}")
    table.add_row("suppressions enqueued by the bounce/spam handlers", f"{hooks.suppressions:,}")
    table.add_row("suppressions delivered", f"{result.suppression_stats.delivered:,}")
    table.add_row("people suppressed at the emulator", f"{len(result.suppressed_people):,}")
    table.add_row("elapsed", f"{result.elapsed:.2f} s")
    return table


FUNNEL_STEPS = ("sent", "delivered", "opened", "clicked", "bounced", "spammed")


def funnel_totals(rows: list[FunnelRow]) -> dict[str, dict[str, int]]:
    """The lake's per-day funnel rows summed per message: {message: {step: count}}."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = totals.setdefault(row.message_id, dict.fromkeys(FUNNEL_STEPS, 0))
        for step in FUNNEL_STEPS:
            counts[step] += getattr(row, step)
    return totals


def funnel_summary_table(rows: list[FunnelRow]) -> Table:
    """One row per transactional message (the demo may straddle midnight: days are summed)."""
    table = Table(title="Delivery funnel from the lake (transactional messages)")
    table.add_column("message")
    for step in FUNNEL_STEPS:
        table.add_column(step, justify="right")
    totals = funnel_totals(rows)
    for message, counts in sorted(totals.items()):
        table.add_row(message, *(f"{counts[step]:,}" for step in FUNNEL_STEPS))
    if len(totals) > 1:
        table.add_row(
            "[bold]all[/]",
            *(f"[bold]{sum(c[step] for c in totals.values()):,}[/]" for step in FUNNEL_STEPS),
        )
    return table
