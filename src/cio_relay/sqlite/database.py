"""``Database``: one store's SQLite file, written three ways and read without waiting.

Each SQLite store (``SqliteOutbox``, ``SQLiteInbox``, ``IdempotencyStore``) holds one
``Database``, which owns:

- the *writer* connection (pragmas: connection.py), migrated to the store's schema when the
  file is opened (migrations.py), and guarded by ``lock``. Every write is one
  ``BEGIN IMMEDIATE`` transaction, so a writer waits for SQLite's lock (``busy_timeout``) up
  front instead of failing half-way;
- ``write`` and ``write_many``, for threads: group commit (group_commit.py) on the caller's own
  thread, so concurrent callers share transactions and a lone caller pays one small commit;
- ``write_nowait``, for an event loop, which must never block: the works run right away on the
  calling thread if nothing can make them wait, and otherwise nothing is written and the caller
  is told so (loop_writes.py hands such writes to a thread). Only with ``durability="process"``:
  a commit with an fsync would stall the loop;
- the *reader* connection, with a lock of its own: reads see the last commit and never wait
  for this process's writes (WAL);
- the file's ``Checkpointer`` (checkpoint.py), told after every commit.

An in-memory database (``":memory:"``) has one connection for both, and no checkpoints.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cio_relay.sqlite.checkpoint import Checkpointer
from cio_relay.sqlite.connection import (
    BUSY_TIMEOUT,
    IN_MEMORY,
    SYNCHRONOUS,
    ClosedError,
    Durability,
    check_durability,
    connect,
)
from cio_relay.sqlite.group_commit import GroupCommit, unwrap
from cio_relay.sqlite.migrations import Steps, migrate, migrate_named

__all__ = ["Database", "Work"]

T = TypeVar("T")
#: A write: runs inside a transaction on the connection it is given, returns its result.
Work = Callable[[sqlite3.Connection], Any]


class Database:
    """One SQLite file of ``store`` (a name for messages) with the schema ``steps``."""

    def __init__(
        self,
        path: str | Path,
        *,
        store: str,
        steps: Steps,
        durability: Durability = "process",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.durability = check_durability(durability)
        self.store = store
        in_memory = str(path) == IN_MEMORY
        self.path = Path(path)
        target = IN_MEMORY if in_memory else self.path
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self.lock = threading.Lock()  # the writer connection
        self._closed = False
        self.writer = connect(target, durability, busy_timeout=busy_timeout)
        try:
            migrate(self.writer, steps, store=store, path=self.path)
            self._reader = self.writer if in_memory else connect(target, durability)
        except BaseException:
            self.writer.close()
            raise
        self._read_lock = self.lock if in_memory else threading.Lock()
        self._group = GroupCommit(self._transaction)
        self._checkpointer = (
            None
            if in_memory
            else Checkpointer(self.path, synchronous=SYNCHRONOUS[durability], writer_lock=self.lock)
        )
        self.commits = 0  # write transactions committed, on every path (tests, diagnostics)

    def add_schema(self, name: str, steps: Steps) -> None:
        """Bring the schema ``name`` of a feature sharing this file up to date
        (``migrations.migrate_named``)."""
        with self.lock:
            migrate_named(self._open_writer(), steps, name=name, path=self.path)

    # --- writes ---------------------------------------------------------------------------

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a transaction, shared with concurrent callers; its result."""
        result: T = unwrap(self._group.submit([work])[0])
        return result

    def write_many(self, works: Sequence[Work]) -> list[Any]:
        """``write`` for several works at once; each one's result, or ``Failed`` (its error):
        one failing work does not fail the others (group_commit.py)."""
        return self._group.submit(works)

    def write_nowait(self, works: Sequence[Work]) -> list[Any] | None:
        """The works' results if they could be written at once without waiting, else None and
        nothing is written (the caller then writes them through ``write_many``).

        Waiting would be needed when another thread of this process holds the connection (a
        write, a checkpoint's short pause), another process holds the write lock, or commits
        fsync (``durability="power"``). A transaction that fails is rolled back and None is
        returned too: the caller's ``write_many`` then sorts out which work failed and why.
        """
        if self.durability != "process" or not self.lock.acquire(blocking=False):
            return None
        try:
            conn = self._open_writer()
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # SQLITE_BUSY: another process is writing
                return None
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            try:
                return self._finish(conn, works)
            except Exception:
                return None
        finally:
            self.lock.release()

    def _transaction(self, works: list[Work]) -> list[Any]:
        with self.lock:
            conn = self._open_writer()
            conn.execute("BEGIN IMMEDIATE")
            return self._finish(conn, works)

    def _finish(self, conn: sqlite3.Connection, works: Sequence[Work]) -> list[Any]:
        """The rest of a transaction begun on ``conn``: the works, then COMMIT (or ROLLBACK)."""
        try:
            results = [work(conn) for work in works]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        if self._checkpointer is not None:
            self._checkpointer.wrote(conn.total_changes)
        return results

    def _open_writer(self) -> sqlite3.Connection:
        if self._closed:
            raise ClosedError(f"the {self.store} at {self.path} is closed")
        return self.writer

    # --- reads ----------------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query on the reader connection."""
        with self._read_lock:
            if self._closed:
                raise ClosedError(f"the {self.store} at {self.path} is closed")
            return self._reader.execute(sql, params).fetchall()

    def read_together(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(conn)`` on the reader connection in one read transaction: its queries all
        see the same snapshot of the file."""
        with self._read_lock:
            if self._closed:
                raise ClosedError(f"the {self.store} at {self.path} is closed")
            self._reader.execute("BEGIN")
            try:
                return work(self._reader)
            finally:
                self._reader.execute("COMMIT")

    # --- closing --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connections once the write in progress (if any) is done. Idempotent."""
        if self._checkpointer is not None:
            self._checkpointer.close()  # first, outside the lock its last round may take
        with self.lock:
            if self._closed:
                return
            self._closed = True
            if self._reader is not self.writer:
                with self._read_lock:
                    self._reader.close()
            self.writer.close()
