"""The checkpoint thread: the WAL stays bounded while writers go on."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cio_relay.sqlite.checkpoint import Checkpointer

ROW = b"x" * 500


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A WAL file with autocheckpoint off, as the layer's writer connections have it."""
    path = tmp_path / "wal.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA page_size = 1024")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    yield path, conn
    conn.close()


def _write(conn: sqlite3.Connection, lock: threading.Lock, commits: int) -> None:
    for _ in range(commits):
        with lock:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (v) VALUES (?)", [(ROW,), (ROW,)])
            conn.execute("COMMIT")


def _wal_bytes(path: Path) -> int:
    return path.with_name(path.name + "-wal").stat().st_size


def test_wal_stays_bounded_under_sustained_writes(db: tuple[Path, sqlite3.Connection]) -> None:
    path, conn = db
    lock = threading.Lock()
    checkpointer = Checkpointer(
        path, synchronous="NORMAL", writer_lock=lock, every_changes=1_000, every_commits=10**9
    )
    for _ in range(10_000):  # 20,000 rows of 500 bytes: a WAL past the bound without checkpoints
        _write(conn, lock, 1)
        checkpointer.wrote(conn.total_changes)
    checkpointer.close()
    assert checkpointer.rounds >= 1
    assert _wal_bytes(path) < 20 * 1024 * 1024
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 20_000


def test_a_round_copies_every_frame_so_the_wal_starts_over(
    db: tuple[Path, sqlite3.Connection],
) -> None:
    path, conn = db
    lock = threading.Lock()
    _write(conn, lock, 2_000)
    high_water = _wal_bytes(path)
    checkpointer = Checkpointer(path, synchronous="NORMAL", writer_lock=lock, every_changes=1)
    checkpointer.wrote(conn.total_changes)  # due: the round runs, even though close comes next
    checkpointer.close()
    assert checkpointer.rounds == 1
    _write(conn, lock, 2_000)  # the same again reuses the WAL from its start: no growth to 2x
    assert _wal_bytes(path) < high_water * 1.1


def test_nothing_is_due_before_the_threshold_and_close_without_a_thread_is_fine(
    db: tuple[Path, sqlite3.Connection],
) -> None:
    path, conn = db
    checkpointer = Checkpointer(
        path, synchronous="NORMAL", writer_lock=threading.Lock(), every_changes=10**6
    )
    _write(conn, threading.Lock(), 10)
    checkpointer.wrote(conn.total_changes)
    assert checkpointer._thread is None
    checkpointer.close()
    assert checkpointer.rounds == 0


def test_close_stops_the_thread_and_later_writes_start_none(
    db: tuple[Path, sqlite3.Connection],
) -> None:
    path, conn = db
    lock = threading.Lock()
    checkpointer = Checkpointer(path, synchronous="NORMAL", writer_lock=lock, every_changes=1)
    _write(conn, lock, 10)
    checkpointer.wrote(conn.total_changes)
    thread = checkpointer._thread
    assert thread is not None
    checkpointer.close()
    assert not thread.is_alive()
    checkpointer.wrote(conn.total_changes + 10)
    assert checkpointer._thread is thread and not thread.is_alive()


class _WatchedLock:
    """The writer's lock, telling the test when the checkpoint thread asks for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wanted = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.current_thread().name.startswith("checkpoint"):
            self.wanted.set()
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def test_a_large_commit_made_while_the_round_waited_for_the_lock_is_copied_unpaused(
    db: tuple[Path, sqlite3.Connection],
) -> None:
    path, conn = db
    lock = _WatchedLock()
    checkpointer = Checkpointer(
        path,
        synchronous="NORMAL",
        writer_lock=lock,  # type: ignore[arg-type]
        every_changes=1,
    )
    _write(conn, lock, 10)
    with lock:  # a writer's long transaction, as a lease admitting a backlog
        checkpointer.wrote(conn.total_changes)
        assert lock.wanted.wait(10)  # the unpaused rounds are done: the round waits to pause
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(ROW,)] * 5_000)
        conn.execute("COMMIT")
        checkpointer.wrote(conn.total_changes)
    checkpointer.close()
    assert checkpointer.rounds == 1
    # The large commit's thousands of frames were copied before the writers were paused.
    assert checkpointer.paused_frames < 100
