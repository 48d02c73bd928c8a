"""``Database``: group-committed writes, writes that never wait, reads beside writes, closing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cio_relay.sqlite import ClosedError, Database
from cio_relay.sqlite.group_commit import Failed
from cio_relay.sqlite.migrations import Steps

STEPS: Steps = {1: ("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",)}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    opened = Database(tmp_path / "deep" / "store.db", store="test store", steps=STEPS)
    yield opened
    opened.close()


def _add(name: str) -> Callable[[sqlite3.Connection], int]:
    def add(conn: sqlite3.Connection) -> int:
        return int(conn.execute("INSERT INTO items (name) VALUES (?)", (name,)).lastrowid or 0)

    return add


def _names(db: Database) -> list[str]:
    return [row[0] for row in db.read("SELECT name FROM items ORDER BY id")]


def test_writes_commit_and_return_their_results(db: Database) -> None:
    assert db.write(_add("a")) == 1
    outcomes = db.write_many([_add("b"), _add("a"), _add("c")])
    assert outcomes[0] == 2 and outcomes[2] == 3  # "a" again broke only itself
    assert isinstance(outcomes[1], Failed) and isinstance(outcomes[1].error, sqlite3.Error)
    assert _names(db) == ["a", "b", "c"]


def test_write_nowait_writes_at_once_on_the_calling_thread(db: Database) -> None:
    seen: list[int] = []

    def add(conn: sqlite3.Connection) -> str:
        seen.append(threading.get_ident())
        conn.execute("INSERT INTO items (name) VALUES ('now')")
        return "written"

    before = db.commits
    assert db.write_nowait([add, _add("too")]) == ["written", 2]
    assert seen == [threading.get_ident()] and db.commits == before + 1
    assert _names(db) == ["now", "too"]


def test_write_nowait_writes_nothing_while_this_process_holds_the_file(db: Database) -> None:
    with db.lock:  # as a thread's write or a checkpoint's pause holds it
        assert db.write_nowait([_add("never")]) is None
    assert _names(db) == []


def test_write_nowait_writes_nothing_while_another_process_writes(db: Database) -> None:
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert db.write_nowait([_add("never")]) is None
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert db.writer.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000  # restored
    assert _names(db) == []


def test_write_nowait_leaves_a_failing_batch_to_write_many(db: Database) -> None:
    db.write(_add("a"))
    assert db.write_nowait([_add("b"), _add("a")]) is None
    assert _names(db) == ["a"]  # rolled back as a whole: "b" is not half-written


def test_write_nowait_never_runs_an_fsyncing_commit(tmp_path: Path) -> None:
    power = Database(tmp_path / "power.db", store="test store", steps=STEPS, durability="power")
    try:
        assert power.write_nowait([_add("never")]) is None
    finally:
        power.close()


def test_reads_do_not_wait_for_this_processs_writes(db: Database) -> None:
    db.write(_add("committed"))
    inside, leave = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (name) VALUES ('uncommitted')")
        inside.set()
        assert leave.wait(10)

    writer = threading.Thread(target=db.write, args=(slow,))
    writer.start()
    try:
        assert inside.wait(10)
        assert _names(db) == ["committed"]  # the last commit, while the write holds the lock
    finally:
        leave.set()
        writer.join()
    assert _names(db) == ["committed", "uncommitted"]


def test_read_together_sees_one_snapshot(db: Database) -> None:
    db.write(_add("a"))

    def twice(conn: sqlite3.Connection) -> tuple[int, int]:
        first = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        db.write(_add("b"))  # committed between the two reads
        return first, conn.execute("SELECT count(*) FROM items").fetchone()[0]

    assert db.read_together(twice) == (1, 1)
    assert len(_names(db)) == 2


def test_a_closed_database_refuses_everything_and_closes_once(db: Database) -> None:
    db.close()
    db.close()
    assert db.closed
    with pytest.raises(ClosedError, match=r"the test store at .* is closed"):
        db.write(_add("a"))
    with pytest.raises(ClosedError):
        db.write_nowait([_add("a")])
    with pytest.raises(ClosedError):
        db.read("SELECT 1")


def test_an_in_memory_database_has_one_connection_and_no_checkpoints() -> None:
    db = Database(":memory:", store="test store", steps=STEPS)
    try:
        db.write(_add("a"))
        assert _names(db) == ["a"]
        assert db._checkpointer is None and db._reader is db.writer
    finally:
        db.close()
