"""What only ``SQLiteInbox`` promises: durability, restart, real lock contention, its file's
schema and checkpoints. The ``Inbox`` contract itself runs in test_inbox.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.sqlite import checkpoint
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import InboxUnavailableError
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.sqlite.old_layout import CREATED_AT, QUARANTINED, WEBHOOK_IDS, restore
from tests.webhooks.helpers import payload

T0 = 1_700_000_000.0


def _event(**kwargs: object) -> tuple[Event, bytes]:
    raw = payload(**kwargs)  # type: ignore[arg-type]
    return parse_event(raw), raw


def test_sqlite_restart_keeps_events_and_their_state(tmp_path: Path) -> None:
    path = tmp_path / "in.db"
    (a, raw_a), (b, raw_b), (c, raw_c) = _event(), _event(), _event()
    with SQLiteInbox(path) as first:
        for e, raw in ((a, raw_a), (b, raw_b), (c, raw_c)):
            first.store(e, raw, received_at=T0)
        first.mark_done([a.event_id])
        first.retry_later(b.event_id, error="later", retry_at=T0 + 30)
        first.quarantine(b"??", "body: not valid JSON", received_at=T0)
        first.set_cursor("lake", 2)
    with SQLiteInbox(path, durability="power") as second:
        assert second.store(a, raw_a) is False  # still remembered
        assert [s.event_id for s in second.due(10, now=T0)] == [c.event_id]
        assert second.due(10, now=T0 + 30)[0].attempts == 1
        assert second.counts().quarantined == 1 and second.cursor("lake") == 2


def test_sqlite_write_fails_cleanly_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "in.db"
    with SQLiteInbox(path, busy_timeout=0.05) as inbox:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            event, raw = _event()
            with pytest.raises(InboxUnavailableError, match="locked"):
                inbox.store(event, raw)
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        assert inbox.store(event, raw) is True  # the retry succeeds once the lock is gone


def test_sqlite_one_failing_write_does_not_fail_its_batch_neighbours(tmp_path: Path) -> None:
    """Group commit: a batch with a bad write is redone one by one; the good ones land."""
    with SQLiteInbox(tmp_path / "in.db") as inbox:

        async def run() -> list[object]:
            good = [_event() for _ in range(20)]
            bad = asyncio.ensure_future(inbox._write_async(lambda conn: conn.execute("nonsense")))
            stores = [inbox.store_async(e, raw) for e, raw in good]
            return await asyncio.gather(bad, *stores, return_exceptions=True)

        results = asyncio.run(run())
        assert isinstance(results[0], InboxUnavailableError)
        assert results[1:] == [True] * 20
        assert inbox.counts().pending == 20


def test_sqlite_rejects_an_unknown_durability(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="durability must be 'process' or 'power'"):
        SQLiteInbox(tmp_path / "x.db", durability="sometimes")  # type: ignore[arg-type]


def test_sqlite_repr_names_the_file_only(tmp_path: Path) -> None:
    with SQLiteInbox(tmp_path / "in.db") as inbox:
        assert repr(inbox) == f"SQLiteInbox({str(tmp_path / 'in.db')!r})"


async def test_sqlite_inline_writes_hand_over_to_the_writer_thread_when_busy(
    tmp_path: Path,
) -> None:
    """The event loop never waits for a lock: a busy file sends the batch to the writer thread,
    which waits for the lock and commits."""
    path = tmp_path / "in.db"
    with SQLiteInbox(path, busy_timeout=10) as inbox:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            events = [_event() for _ in range(10)]
            stores = asyncio.gather(*(inbox.store_async(e, raw) for e, raw in events))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not stores.done()  # handed over, waiting for the lock: the loop is free
            blocker.execute("ROLLBACK")
            assert await stores == [True] * 10
        finally:
            blocker.close()
        assert inbox.counts().pending == 10


async def test_sqlite_inline_writes_keep_the_wal_checkpointed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_EVERY_CHANGES", 1_000)  # read by new inboxes
    path = tmp_path / "in.db"
    with SQLiteInbox(path) as inbox:
        for _ in range(20):
            events = [_event(subject="x" * 500) for _ in range(500)]
            await asyncio.gather(*(inbox.store_async(e, raw) for e, raw in events))
        assert inbox.counts().pending == 10_000
        checkpointer = inbox._db._checkpointer
        assert checkpointer is not None and checkpointer.rounds >= 2
        # The WAL was reused from its start after each checkpoint: it holds a round's rows, not
        # every row (as it would without checkpoints, and be larger than the database file).
        wal = path.with_name(path.name + "-wal").stat().st_size
        assert wal < path.stat().st_size / 2


def test_sqlite_a_file_written_before_the_sqlite_layer_opens_with_its_events(
    tmp_path: Path,
) -> None:
    path = restore("webhooks", tmp_path / "webhooks.db")
    with SQLiteInbox(path) as inbox:
        done, parked, pending = WEBHOOK_IDS
        assert [s.event_id for s in inbox.due(10, now=CREATED_AT)] == [pending]
        assert [(s.event_id, s.last_error) for s in inbox.list_parked()] == [
            (parked, "handler failed")
        ]
        assert inbox.cursor("lake") == 1
        [item] = inbox.list_quarantined()
        assert inbox.quarantine(QUARANTINED, "again", received_at=CREATED_AT) == item.id
        old = next(s for s in inbox.read_after(0, 10) if s.event_id == done)
        assert inbox.store(parse_event(old.raw), old.raw) is False  # still remembered
        event, raw = _event()
        assert inbox.store(event, raw) is True
        assert [s.event_id for s in inbox.read_after(3, 10)] == [event.event_id]
    conn = sqlite3.connect(path)
    try:
        # adopted, not rebuilt, then migrated forward (2: webhook_events.truncated)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    finally:
        conn.close()
