"""The ``Inbox`` contract, run against ``MemoryInbox`` and ``SQLiteInbox`` alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import (
    DEFAULT_RETENTION,
    HandlerState,
    Inbox,
    InboxUnavailableError,
    MemoryInbox,
)
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.webhooks.helpers import payload

T0 = 1_700_000_000.0
DAY = 86_400.0


def _event(**kwargs: object) -> tuple[Event, bytes]:
    raw = payload(**kwargs)  # type: ignore[arg-type]
    return parse_event(raw), raw


@pytest.fixture(params=["memory", "sqlite", "sqlite-thread", "sqlite-power"])
def make_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Inbox]]:
    """Every backend: SQLite with inline event-loop writes (the default), with writer-thread
    writes only, and with power durability (which never writes inline)."""
    opened: list[Inbox] = []
    path = tmp_path / "in.db"
    makers: dict[str, Callable[[], Inbox]] = {
        "memory": MemoryInbox,
        "sqlite": lambda: SQLiteInbox(path),
        "sqlite-thread": lambda: SQLiteInbox(path, inline_writes=False),
        "sqlite-power": lambda: SQLiteInbox(path, durability="power"),
    }

    def make() -> Inbox:
        inbox = makers[request.param]()
        opened.append(inbox)
        return inbox

    yield make
    for inbox in opened:
        inbox.close()


@pytest.fixture
def inbox(make_inbox: Callable[[], Inbox]) -> Inbox:
    return make_inbox()


def test_store_keeps_an_event_id_once(inbox: Inbox) -> None:
    event, raw = _event()
    assert inbox.store(event, raw, received_at=T0) is True
    assert inbox.store(event, raw, received_at=T0 + 5) is False
    assert inbox.counts().pending == 1
    [stored] = inbox.due(10, now=T0)
    assert (stored.event_id, stored.raw, stored.received_at) == (event.event_id, raw, T0)
    assert stored.name == "email_delivered" and stored.state is HandlerState.PENDING


async def test_concurrent_async_stores_of_one_event_store_it_once(inbox: Inbox) -> None:
    event, raw = _event()
    results = await asyncio.gather(*(inbox.store_async(event, raw) for _ in range(50)))
    assert sorted(results) == [False] * 49 + [True]
    assert inbox.counts().pending == 1


async def test_many_concurrent_stores_all_land(inbox: Inbox) -> None:
    events = [_event() for _ in range(300)]
    results = await asyncio.gather(*(inbox.store_async(e, raw) for e, raw in events))
    assert all(results)
    assert [s.event_id for s in inbox.read_after(0, 1000)] == [e.event_id for e, _ in events]


def test_due_is_in_arrival_order_respects_limit_and_retry_time(inbox: Inbox) -> None:
    events = [_event() for _ in range(5)]
    for e, raw in events:
        inbox.store(e, raw, received_at=T0)
    ids = [e.event_id for e, _ in events]
    assert [s.event_id for s in inbox.due(3, now=T0)] == ids[:3]
    inbox.retry_later(ids[0], error="boom", retry_at=T0 + 60)
    assert [s.event_id for s in inbox.due(10, now=T0)] == ids[1:]
    assert inbox.next_due_at() == T0
    assert [s.event_id for s in inbox.due(10, now=T0 + 60)] == ids
    retried = inbox.due(1, now=T0 + 60)[0]
    assert (retried.attempts, retried.last_error, retried.next_attempt_at) == (1, "boom", T0 + 60)


def test_done_events_are_no_longer_due(inbox: Inbox) -> None:
    (a, raw_a), (b, raw_b) = _event(), _event()
    inbox.store(a, raw_a, received_at=T0)
    inbox.store(b, raw_b, received_at=T0)
    inbox.mark_done([a.event_id])
    assert [s.event_id for s in inbox.due(10, now=T0)] == [b.event_id]
    assert inbox.counts().done == 1
    inbox.mark_done([b.event_id])
    assert inbox.next_due_at() is None


def test_park_list_and_retry_parked(inbox: Inbox) -> None:
    events = [_event() for _ in range(3)]
    for e, raw in events:
        inbox.store(e, raw, received_at=T0)
    ids = [e.event_id for e, _ in events]
    inbox.retry_later(ids[0], error="first", retry_at=T0 + 1)
    inbox.park(ids[0], error="gave up")
    inbox.park(ids[1], error="bad data")
    parked = inbox.list_parked()
    assert [(p.event_id, p.attempts, p.last_error) for p in parked] == [
        (ids[0], 2, "gave up"),
        (ids[1], 1, "bad data"),
    ]
    assert [s.event_id for s in inbox.due(10, now=T0 + 100)] == [ids[2]]
    assert inbox.retry_parked([ids[1]], now=T0 + 100) == 1
    assert [s.event_id for s in inbox.list_parked()] == [ids[0]]
    again = {s.event_id: s for s in inbox.due(10, now=T0 + 100)}
    assert again[ids[1]].attempts == 0 and again[ids[1]].state is HandlerState.PENDING
    assert inbox.retry_parked(now=T0 + 100) == 1
    assert inbox.list_parked() == [] and inbox.counts().parked == 0


def test_the_same_quarantined_bytes_are_kept_once(inbox: Inbox) -> None:
    # No event id to de-duplicate by: a replay of the same authentic bytes must not add a row.
    first = inbox.quarantine(b"\x00not json", "body: not valid JSON", received_at=T0)
    again = inbox.quarantine(b"\x00not json", "body: not valid JSON", received_at=T0 + 5)
    other = inbox.quarantine(b"\x00not json!", "body: not valid JSON", received_at=T0 + 6)
    assert again == first != other
    assert inbox.counts().quarantined == 2
    assert [item.received_at for item in inbox.list_quarantined()] == [T0, T0 + 6]


def test_quarantine_keeps_raw_bytes_and_the_error(inbox: Inbox) -> None:
    first = inbox.quarantine(b"\x00not json", "body: not valid JSON", received_at=T0)
    second = inbox.quarantine(b"{}", "event_id: missing", received_at=T0 + 1)
    items = inbox.list_quarantined()
    assert [(q.id, q.raw, q.error, q.received_at) for q in items] == [
        (first, b"\x00not json", "body: not valid JSON", T0),
        (second, b"{}", "event_id: missing", T0 + 1),
    ]
    assert inbox.counts().quarantined == 2 and inbox.counts().pending == 0


def test_read_after_and_cursors(inbox: Inbox) -> None:
    events = [_event() for _ in range(4)]
    for e, raw in events:
        inbox.store(e, raw)
    everything = inbox.read_after(0, 100)
    assert [s.seq for s in everything] == sorted(s.seq for s in everything)
    assert inbox.cursor("lake") == 0
    inbox.set_cursor("lake", everything[1].seq)
    assert inbox.cursor("lake") == everything[1].seq
    rest = inbox.read_after(inbox.cursor("lake"), 100)
    assert [s.event_id for s in rest] == [e.event_id for e, _ in events[2:]]
    assert len(inbox.read_after(0, 2)) == 2


def test_prune_forgets_only_done_old_events_behind_every_cursor(inbox: Inbox) -> None:
    old_done, old_pending, old_behind_cursor, new_done = (_event() for _ in range(4))
    inbox.store(*old_done, received_at=T0)
    inbox.store(*old_pending, received_at=T0)
    inbox.store(*old_behind_cursor, received_at=T0)
    inbox.store(*new_done, received_at=T0 + 9 * DAY)
    inbox.mark_done([old_done[0].event_id, old_behind_cursor[0].event_id, new_done[0].event_id])
    seqs = {s.event_id: s.seq for s in inbox.read_after(0, 10)}
    inbox.set_cursor("lake", seqs[old_pending[0].event_id])  # the lake has not read the third
    assert inbox.prune(retention=8 * DAY, now=T0 + 9 * DAY) == 1
    remaining = {s.event_id for s in inbox.read_after(0, 10)}
    assert old_done[0].event_id not in remaining
    assert {
        old_pending[0].event_id,
        old_behind_cursor[0].event_id,
        new_done[0].event_id,
    } <= remaining
    # A pruned event id is forgotten: it may be stored again.
    assert inbox.store(*old_done, received_at=T0 + 9 * DAY) is True


def test_event_ids_are_remembered_for_at_least_seven_days(inbox: Inbox) -> None:
    event, raw = _event()
    inbox.store(event, raw, received_at=T0)
    inbox.mark_done([event.event_id])
    assert DEFAULT_RETENTION >= 7 * DAY
    assert inbox.prune(now=T0 + 7 * DAY + 3600) == 0
    assert inbox.store(event, raw, received_at=T0 + 7 * DAY + 3600) is False


def test_seqs_are_never_reused_after_pruning(inbox: Inbox) -> None:
    events = [_event() for _ in range(3)]
    for e, raw in events:
        inbox.store(e, raw, received_at=T0)
    inbox.mark_done([e.event_id for e, _ in events])
    last = inbox.read_after(0, 10)[-1].seq
    inbox.set_cursor("lake", last)
    assert inbox.prune(retention=DAY, now=T0 + 2 * DAY) == 2  # the newest one anchors the seqs
    assert [s.seq for s in inbox.read_after(0, 10)] == [last]
    fresh, raw = _event()
    inbox.store(fresh, raw)
    assert [s.event_id for s in inbox.read_after(inbox.cursor("lake"), 10)] == [fresh.event_id]
    assert inbox.read_after(0, 10)[-1].seq > last


def test_a_closed_inbox_refuses_writes(inbox: Inbox) -> None:
    inbox.close()
    event, raw = _event()
    with pytest.raises(InboxUnavailableError, match="closed"):
        inbox.store(event, raw)
    inbox.close()  # idempotent
