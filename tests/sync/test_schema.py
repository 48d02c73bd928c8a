"""The sync schema is versioned by name inside the outbox's file (``Database.add_schema``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.sync import SqliteUserStore, UserRepository
from cio_relay.sync.sqlite_store import SCHEMA_NAME, STEPS
from cio_relay.sync.store import attributes_hash


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


def test_a_file_of_the_first_schema_upgrades_with_its_people(tmp_path: Path) -> None:
    """A file written at sync schema 1 (the first slice) gains the preference stamps (2), the
    bulk marks and runs (3) and the rowid table (4), keeping every person."""
    path = tmp_path / "outbox.db"
    outbox = SqliteOutbox(path)
    outbox.database.add_schema(SCHEMA_NAME, {1: STEPS[1]})
    outbox.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO sync_people VALUES ('u1', ?, ?, '{\"topic_7\": false}', 1, 5.0)",
            (attributes_hash({"plan": "pro"}), b'{"plan": "pro"}'),
        )
    outbox = SqliteOutbox(path)
    store = SqliteUserStore(outbox)
    state = store.get("u1")
    assert state is not None
    assert (dict(state.attributes), dict(state.topics), state.unsubscribed) == (
        {"plan": "pro"},
        {"topic_7": False},
        True,
    )
    assert UserRepository(outbox).sync_user("u1", {"plan": "pro"}) is None  # same hash
    outbox.close()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT version FROM schema_versions WHERE name = 'sync'")
        (ddl,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'sync_people'")
    assert version == (max(STEPS),) and "WITHOUT ROWID" not in ddl[0]
