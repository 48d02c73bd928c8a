"""``SQLiteWriter``: group-committed writes to one SQLite file, for threads and event loops.

Two paths, both batching many callers' writes into one transaction and one commit:

- **The writer thread** (every sync caller, and async callers when inline writes are off or the
  file is busy): it takes whatever writes are waiting (up to ``max_batch``), runs them in one
  transaction, commits once and wakes every waiter. 64 concurrent requests share a handful of
  commits (SQLite WAL here: ~100,000 rows/s at one row per commit, ~577,000 at 1,000).
- **Inline on the event loop** (async callers, ``inline=True``): the writes of every request
  that arrived in one loop iteration run in one transaction at the end of that iteration, on
  the loop's thread. Measured, the thread path's latency varied 2-3x under load: each SQLite
  call releases the GIL and the writer must win it back from a busy event loop (the GIL convoy).
  Inline writes never wait for another thread. They never block on a lock either: the inline
  connection has ``busy_timeout=0``, and a batch that finds the file busy (another process, or
  the writer thread mid-transaction) is handed to the writer thread, which may wait.
  Only for ``synchronous=NORMAL`` (no fsync per commit; the caller decides): an fsync would
  stall the loop. WAL checkpoints (which fsync) are never run inline: the inline connection has
  autocheckpoint off and asks the writer thread for a passive checkpoint every 2,000 rows,
  which runs alongside new inline commits. Under steady load such a checkpoint never catches
  up with the end of the WAL, so the file would only grow; once it is past ``wal_limit_frames``
  the writer thread checkpoints while holding the inline lock (inline batches meanwhile go to
  the writer thread's queue), the checkpoint completes, and the WAL is reused from the start.
  Most of the copying thus happens concurrently, and the pause is short.

One bad write in a batch does not fail its neighbours: the batch is redone one write at a
time. A batch that fails because the file is busy, locked, full or unreadable fails as a whole,
at once (redoing each write would multiply the wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from cio_relay.errors import InboxUnavailableError

__all__ = ["SQLiteWriter"]

log = logging.getLogger("cio_relay.webhooks")

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
_AsyncWaiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Waiter = Future[Any] | _AsyncWaiter
_Job = tuple[Write, _Waiter]
_InlineJob = tuple[Write, "asyncio.Future[Any]", float | None]
_STOP = object()
_CHECKPOINT = object()
_CHECKPOINT_EVERY_ROWS = 2_000  # ~2 MB of WAL at typical webhook sizes
_WAL_LIMIT_FRAMES = 4_096  # 16 MB of 4 KiB pages: past this, a checkpoint pauses inline writes


def _settle_async(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in items:
        if future.done():  # the caller gave up waiting (timeout or disconnect)
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


def _expire(futures: list[asyncio.Future[Any]], timeout: float) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(InboxUnavailableError(f"inbox write not done within {timeout} s"))


#: SQLite primary result codes that say the *file* cannot take writes now (busy, locked,
#: read-only, I/O error, full, cannot open), as opposed to one write being wrong.
_ENVIRONMENTAL = frozenset({5, 6, 8, 10, 13, 14})


def _environmental(error: Exception) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _ENVIRONMENTAL


def _unavailable(error: BaseException) -> InboxUnavailableError:
    log.warning("inbox write failed: %s: %s", type(error).__name__, error)
    return InboxUnavailableError(f"inbox write failed: {type(error).__name__}: {error}")


class SQLiteWriter:
    """Connections, the writer thread and the inline path for one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        busy_timeout: float,
        max_batch: int,
        write_timeout: float,
        inline: bool,
        schema: str,
        wal_limit_frames: int = _WAL_LIMIT_FRAMES,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._max_batch = max_batch
        self._write_timeout = write_timeout
        self._writer = self._connect(self._busy_timeout_ms)
        self._writer.executescript(schema)
        self._reader = self._connect(self._busy_timeout_ms)
        self._read_lock = threading.Lock()
        self._inline = self._connect(0) if inline else None
        self._inline_lock = threading.Lock()
        # Per event loop: the writes of this loop iteration, with each caller's timeout.
        self._inline_pending: dict[asyncio.AbstractEventLoop, list[_InlineJob]] = {}
        self._inline_rows = 0
        # Set from the request of a checkpoint until the writer thread has run it: inline
        # writes past another interval meanwhile go behind it (see _checkpoint_overdue).
        self._checkpoint_requested = threading.Event()
        self._wal_limit_frames = wal_limit_frames
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(target=self._write_loop, name="inbox-writer", daemon=True)
        self._thread.start()

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if busy_timeout_ms == 0:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the inline connection: see above
        return conn

    # --- the writer thread ----------------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            job = self._queue.get()
            batch: list[_Job] = []
            while True:
                if job is _STOP:
                    stopping = True
                    break
                if job is _CHECKPOINT:
                    self._checkpoint()
                else:
                    batch.append(job)
                if len(batch) >= self._max_batch:
                    break
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        values, error = self._transaction(self._writer, [write for write, _ in batch])
        if error is None:
            done = zip(batch, values, strict=True)
            self._settle([(waiter, value, None) for (_, waiter), value in done])
        elif len(batch) > 1 and not _environmental(error):
            for job in batch:  # one bad write must not fail its neighbours
                self._run_batch([job])
        else:
            failure = _unavailable(error)
            self._settle([(waiter, None, failure) for _, waiter in batch])

    def _checkpoint(self) -> None:
        checkpoint = "PRAGMA wal_checkpoint(PASSIVE)"
        try:
            with contextlib.suppress(sqlite3.Error):
                _, wal_frames, _ = self._writer.execute(checkpoint).fetchone()
                if wal_frames > self._wal_limit_frames:
                    with self._inline_lock:  # no inline commit can append while this catches up
                        self._writer.execute(checkpoint)
        finally:
            self._checkpoint_requested.clear()

    def _checkpoint_overdue(self) -> bool:
        """A checkpoint was asked for a whole interval ago and the writer thread has not run it
        yet (a busy machine starves that thread): write through the thread, behind the
        checkpoint, so the WAL stays bounded however late the thread gets its turn."""
        return self._checkpoint_requested.is_set() and self._inline_rows >= _CHECKPOINT_EVERY_ROWS

    @staticmethod
    def _transaction(
        conn: sqlite3.Connection, writes: Sequence[Write]
    ) -> tuple[list[Any], Exception | None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [], exc
        try:
            values = [write(conn) for write in writes]
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [], exc
        return values, None

    @staticmethod
    def _settle(results: list[tuple[_Waiter, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for waiter, value, error in results:
            if isinstance(waiter, Future):
                if error is None:
                    waiter.set_result(value)
                else:
                    waiter.set_exception(error)
            else:
                loop, future = waiter
                by_loop.setdefault(loop, []).append((future, value, error))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle_async, items)

    def _submit(self, job: Any) -> None:
        with self._submit_lock:
            if self.closed:
                raise InboxUnavailableError("the inbox is closed")
            self._queue.put(job)

    # --- the inline path ------------------------------------------------------------------

    def _flush_inline(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._inline_pending.pop(loop)
        conn = self._inline
        if (
            conn is None
            or self._checkpoint_overdue()
            or not self._inline_lock.acquire(blocking=False)
        ):
            self._hand_over(loop, batch)  # a catching-up checkpoint, or another loop, holds it
            return
        values: list[Any]
        error: Exception | None
        try:
            if self.closed:
                values, error = [], InboxUnavailableError("the inbox is closed")
            else:
                values, error = self._transaction(conn, [write for write, _, _ in batch])
        finally:
            self._inline_lock.release()
        if isinstance(error, InboxUnavailableError):
            _settle_async([(future, None, error) for _, future, _ in batch])
        elif error is not None:
            self._hand_over(loop, batch)  # busy or failed: the writer thread waits and sorts it
        else:
            done = zip(batch, values, strict=True)
            _settle_async([(future, value, None) for (_, future, _), value in done])
            self._inline_rows += len(batch)
            if (
                self._inline_rows >= _CHECKPOINT_EVERY_ROWS
                and not self._checkpoint_requested.is_set()
            ):
                self._inline_rows = 0
                self._checkpoint_requested.set()
                with contextlib.suppress(InboxUnavailableError):
                    self._submit(_CHECKPOINT)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, batch: list[_InlineJob]) -> None:
        """Send an inline batch to the writer thread; only now can it take long, so only now
        does it get a timer (one per batch, not one per request)."""
        timeouts = [timeout for _, _, timeout in batch if timeout is not None]
        if timeouts:
            futures = [future for _, future, _ in batch]
            loop.call_later(min(timeouts), _expire, futures, min(timeouts))
        for write, future, _ in batch:
            try:
                self._submit((write, (loop, future)))
            except InboxUnavailableError as exc:
                _settle_async([(future, None, exc)])

    # --- what callers use -----------------------------------------------------------------

    def write(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``write`` in a group-committed transaction; block until it is committed."""
        future: Future[T] = Future()
        self._submit((write, future))
        try:
            return future.result(self._write_timeout)
        except FutureTimeout:
            raise InboxUnavailableError(
                f"inbox write not done within {self._write_timeout} s"
            ) from None

    async def write_async(
        self, write: Callable[[sqlite3.Connection], T], timeout: float | None = None
    ) -> T:
        """``write`` for an event loop; raises ``InboxUnavailableError`` after ``timeout``."""
        if self.closed:
            raise InboxUnavailableError("the inbox is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._inline is not None:
            pending = self._inline_pending.get(loop)
            if pending is None:
                pending = self._inline_pending[loop] = []
                loop.call_soon(self._flush_inline, loop)
            pending.append((write, future, timeout))
            return await future  # the flush at the end of this loop iteration settles it
        self._submit((write, (loop, future)))
        if timeout is None:
            return await future
        guard = loop.call_later(timeout, _expire, [future], timeout)
        try:
            return await future
        finally:
            guard.cancel()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            if self.closed:
                raise InboxUnavailableError("the inbox is closed")
            return self._reader.execute(sql, params).fetchall()

    def close(self) -> None:
        """Finish the queued writes, stop the thread, close the connections. Idempotent."""
        with self._submit_lock:
            if self.closed:
                return
            self.closed = True
            self._queue.put(_STOP)
        self._thread.join()
        with self._read_lock:
            self._reader.close()
        with self._inline_lock:
            if self._inline is not None:
                self._inline.close()
        self._writer.close()
