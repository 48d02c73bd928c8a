"""Versioned schemas: forward steps from the file's version, all or nothing; newer is refused."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.sqlite.connection import connect
from cio_relay.sqlite.migrations import Steps, latest, migrate

STEPS: Steps = {
    1: ("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",),
    2: ("ALTER TABLE items ADD COLUMN size INTEGER NOT NULL DEFAULT 0",),
}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    opened = connect(tmp_path / "store.db", "process")
    yield opened
    opened.close()


def _version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _columns(conn: sqlite3.Connection) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA table_info(items)")]


def test_a_new_file_runs_every_step(conn: sqlite3.Connection) -> None:
    assert migrate(conn, STEPS, store="test store", path="store.db") == 0
    assert _version(conn) == latest(STEPS) == 2
    assert _columns(conn) == ["id", "name", "size"]
    assert migrate(conn, STEPS, store="test store", path="store.db") == 2  # nothing left to do


def test_a_file_runs_only_the_steps_above_its_version(conn: sqlite3.Connection) -> None:
    migrate(conn, {1: STEPS[1]}, store="test store", path="store.db")
    conn.execute("INSERT INTO items (name) VALUES ('kept')")
    assert migrate(conn, STEPS, store="test store", path="store.db") == 1
    assert conn.execute("SELECT name, size FROM items").fetchall() == [("kept", 0)]


def test_a_file_of_a_release_without_versions_is_adopted(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.execute("INSERT INTO items (name) VALUES ('from before')")
    migrate(conn, STEPS, store="test store", path="store.db")
    assert conn.execute("SELECT name FROM items").fetchall() == [("from before",)]
    assert _version(conn) == 2


def test_a_newer_file_is_refused_and_left_alone(conn: sqlite3.Connection) -> None:
    migrate(conn, STEPS, store="test store", path="store.db")
    conn.execute("PRAGMA user_version = 3")
    with pytest.raises(ConfigError, match="test store schema version 3 is newer than this"):
        migrate(conn, STEPS, store="test store", path="store.db")
    assert _version(conn) == 3 and not conn.in_transaction


def test_a_failing_step_leaves_the_file_as_it_was(conn: sqlite3.Connection) -> None:
    broken = {**STEPS, 3: ("CREATE TABLE more (x)", "nonsense")}
    migrate(conn, {1: STEPS[1]}, store="test store", path="store.db")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken, store="test store", path="store.db")
    assert _version(conn) == 1
    assert _columns(conn) == ["id", "name"]  # step 2 ran in the same transaction: undone too
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["items"]
