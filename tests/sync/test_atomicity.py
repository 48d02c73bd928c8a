"""A state change and its outbox rows commit together, on the real SQLite file.

Failures are real SQLite errors raised inside the transaction by a trigger (no mock): one on
the outbox's ``intake`` insert must leave the person's state as it was, and one on the state
table must leave the outbox empty. The file is opened again afterwards to read what is on disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cio_relay.config import Settings
from cio_relay.errors import StorageUnavailableError
from cio_relay.outbox.sqlite import SCHEMA_VERSION, SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import SqliteUserStore, UserRepository
from tests.sync.conftest import take_all


def _fail_inserts_into(path: Path, table: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE TRIGGER injected_failure BEFORE INSERT ON {table}"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )


def _heal(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER injected_failure")


def _reopened(path: Path) -> tuple[SqliteOutbox, UserRepository]:
    outbox = SqliteOutbox(path)
    return outbox, UserRepository(Relay(Settings(stamp_env=False), outbox=outbox))


def test_failed_outbox_insert_leaves_the_state_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox, users = _reopened(path)
    users.sync_user("u1", {"plan": "pro"})
    take_all(outbox)
    _fail_inserts_into(path, "intake")
    with pytest.raises(StorageUnavailableError):
        users.sync_user("u1", {"plan": "team"})
    with pytest.raises(StorageUnavailableError):
        users.delete_user("u1")
    outbox.close()
    _heal(path)

    outbox, users = _reopened(path)
    state = users.get("u1")
    assert state is not None and state.attributes == {"plan": "pro"}
    assert outbox.depth().pending == 0
    # Nothing was recorded, so the same change goes out once the file takes writes again.
    op_id = users.sync_user("u1", {"plan": "team"})
    [op] = take_all(outbox)
    assert op.op_id == op_id and op.payload["attributes"] == {"plan": "team"}
    outbox.close()


def test_failed_state_write_enqueues_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox, users = _reopened(path)
    _fail_inserts_into(path, "sync_people")
    with pytest.raises(StorageUnavailableError):
        users.sync_user("u1", {"plan": "pro"})
    with pytest.raises(StorageUnavailableError):
        users.update_preferences("u1", unsubscribed=True)
    outbox.close()
    _heal(path)

    outbox, users = _reopened(path)
    assert outbox.depth().pending == 0 and take_all(outbox) == []
    assert users.get("u1") is None
    outbox.close()


def test_state_lives_in_the_outbox_file_beside_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SqliteOutbox(path)
    SqliteUserStore(outbox)
    outbox.close()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        versions = dict(conn.execute("SELECT name, version FROM schema_versions").fetchall())
        user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert {"sync_people", "intake", "ops"} <= names
    assert versions == {"sync": 4}  # 2: preference stamps; 3: bulk sync marks and runs; 4: rowid
    # The outbox keeps its own version: the sync schema is counted beside it.
    assert user_version == SCHEMA_VERSION
