"""The pipeline: inbox -> lake (every event, at least once) and inbox -> router."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cio_relay.lake.memory import MemoryLake
from cio_relay.lake.parquet import ParquetLake
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import MemoryInbox
from cio_relay.webhooks.pipeline import LAKE_CURSOR, WebhookPipeline, lake_event
from cio_relay.webhooks.router import Router
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.webhooks.helpers import payload

T0 = 1_700_000_000.0


@pytest.fixture
def inbox() -> Iterator[MemoryInbox]:
    memory = MemoryInbox()
    yield memory
    memory.close()


def _store(inbox: MemoryInbox | SQLiteInbox, *bodies: bytes) -> list[Event]:
    events = []
    for raw in bodies:
        event = parse_event(raw)
        inbox.store(event, raw, received_at=T0)
        events.append(event)
    return events


def test_lake_rows_carry_every_schema_field() -> None:
    raw = payload(
        "email",
        "clicked",
        timestamp=T0,
        customer_id="u1",
        email_address="u1@example.com",
        delivery_id="d1",
        campaign_id=5,
        broadcast_id=6,
        journey_id="j",
        action_id=7,
        transactional_message_id=8,
        recipient="u1@example.com",
        subject="Hi",
        href="https://x",
        failure_message="none",
    )
    inbox = MemoryInbox()
    inbox.store(parse_event(raw), raw, received_at=T0 + 1)
    row = lake_event(inbox.read_after(0, 1)[0])
    assert row.occurred_at == T0 and row.received_at == T0 + 1
    assert row[5:17] == (
        "u1",
        "u1@example.com",
        "d1",
        "5",
        "6",
        "j",
        "7",
        "8",
        "u1@example.com",
        "Hi",
        "https://x",
        "none",
    )
    assert row.raw == raw.decode()


def test_drain_writes_every_event_to_the_lake_and_runs_handlers(inbox: MemoryInbox) -> None:
    lake = MemoryLake()
    router = Router()
    handled: list[str] = []
    router.on("email_bounced")(lambda e: handled.append(e.event_id))
    events = _store(inbox, payload("email", "sent"), payload("email", "bounced"), payload("x", "y"))
    report = WebhookPipeline(inbox, router, lake).drain(now=T0)
    assert report.lake_rows == 3 and report.handlers.done == 3
    assert [row.event_id for row in lake.events] == [e.event_id for e in events]
    assert handled == [events[1].event_id]
    assert inbox.cursor(LAKE_CURSOR) == inbox.read_after(0, 10)[-1].seq
    # Nothing new: a second drain copies nothing.
    assert WebhookPipeline(inbox, router, lake).drain(now=T0).lake_rows == 0


def test_a_failing_handler_does_not_hold_up_the_lake(inbox: MemoryInbox) -> None:
    lake = MemoryLake()
    router = Router()
    router.on("*")(lambda e: (_ for _ in ()).throw(RuntimeError("down")))
    _store(inbox, payload(), payload())
    report = WebhookPipeline(inbox, router, lake).drain(now=T0)
    assert report.lake_rows == 2 and report.handlers.retried == 2 and len(lake.events) == 2


def test_the_cursor_waits_for_a_flush(inbox: MemoryInbox, tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path / "lake", flush_rows=1_000, flush_interval=3600)
    pipeline = WebhookPipeline(inbox, lake=lake, lake_flush_rows=1_000, lake_flush_interval=3600)
    _store(inbox, payload(), payload())
    assert pipeline.feed_lake(flush=False) == 2
    assert lake.buffered == 2 and inbox.cursor(LAKE_CURSOR) == 0  # not durable yet
    assert pipeline.feed_lake(flush=True) == 0
    assert lake.buffered == 0 and inbox.cursor(LAKE_CURSOR) == 2
    lake.close()


def test_a_restart_between_persist_and_handling_loses_nothing(tmp_path: Path) -> None:
    """Events stored, then the process dies before any handler or lake write: nothing is lost."""
    path = tmp_path / "webhooks.db"
    with SQLiteInbox(path) as first:
        events = _store(first, payload("email", "bounced", customer_id="u1"), payload())
    # ... restart ...
    handled: list[str] = []
    router = Router()
    router.on("*")(lambda e: handled.append(e.event_id))
    with SQLiteInbox(path) as reopened, ParquetLake(tmp_path / "lake") as lake:
        report = WebhookPipeline(reopened, router, lake).drain(now=T0)
        assert report.lake_rows == 2 and report.handlers.done == 2
        rows = lake.query("SELECT event_id FROM events ORDER BY event_id").rows
    assert handled == [e.event_id for e in events]
    assert [r[0] for r in rows] == sorted(e.event_id for e in events)


def test_a_crash_after_the_lake_flush_but_before_the_cursor_duplicates_nothing_visible(
    tmp_path: Path,
) -> None:
    path = tmp_path / "webhooks.db"
    lake_dir = tmp_path / "lake"
    with SQLiteInbox(path) as inbox, ParquetLake(lake_dir) as lake:
        _store(inbox, payload("email", "sent", campaign_id=1, timestamp=T0))
        lake.write(WebhookPipeline._rows(inbox.read_after(0, 10)))  # flushed ...
        lake.flush()  # ... but the cursor was never saved: the crash
        WebhookPipeline(inbox, lake=lake).drain(now=T0)  # re-sends the row
        assert lake.query("SELECT count(*) FROM events").rows == [(2,)]
        [row] = lake.funnel(by="campaign", days=None)
        assert row.sent == 1  # distinct deliveries: the duplicate is invisible
        assert lake.compact().duplicates_removed == 1
        assert lake.query("SELECT count(*) FROM events").rows == [(1,)]


def test_the_background_thread_handles_events_as_they_are_notified(tmp_path: Path) -> None:
    handled = threading.Event()
    router = Router()
    router.on("email_bounced")(lambda e: handled.set())
    with SQLiteInbox(tmp_path / "w.db") as inbox, ParquetLake(tmp_path / "lake") as lake:
        pipeline = WebhookPipeline(inbox, router, lake, poll_interval=30)
        with pipeline:
            [event] = _store(inbox, payload("email", "bounced", customer_id="u1"))
            pipeline.notify(event)
            assert handled.wait(10), "the notified pipeline did not run the handler"
        # stop() flushed the lake and saved the cursor.
        assert inbox.cursor(LAKE_CURSOR) == 1
        assert lake.query("SELECT event_id FROM events").rows == [(event.event_id,)]


def test_a_pipeline_without_a_router_marks_events_done(inbox: MemoryInbox) -> None:
    _store(inbox, payload())
    assert WebhookPipeline(inbox).drain(now=T0).handlers.done == 1
    assert inbox.counts().done == 1


def test_start_twice_is_refused(inbox: MemoryInbox) -> None:
    pipeline = WebhookPipeline(inbox)
    pipeline.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            pipeline.start()
    finally:
        pipeline.stop()
    pipeline.stop()  # idempotent
