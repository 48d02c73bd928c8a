"""The sync schema is versioned by name inside the outbox's file (``Database.add_schema``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.sync import SqliteUserStore, UserRepository


def test_reopening_keeps_the_state_and_runs_no_step_twice(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SqliteOutbox(path)
    UserRepository(outbox).sync_user("u1", {"plan": "pro"})
    outbox.close()
    outbox = SqliteOutbox(path)
    store = SqliteUserStore(outbox)  # steps already ran: CREATE TABLE would fail if run again
    state = store.get("u1")
    assert state is not None and state.attributes == {"plan": "pro"}
    outbox.close()


def test_a_newer_sync_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SqliteOutbox(path)
    SqliteUserStore(outbox)
    outbox.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE name = 'sync'")
    outbox = SqliteOutbox(path)
    try:
        with pytest.raises(ConfigError, match="sync schema version 99 is newer"):
            SqliteUserStore(outbox)
        assert outbox.enqueue([]) == 0  # the outbox itself still opens and works
    finally:
        outbox.close()
