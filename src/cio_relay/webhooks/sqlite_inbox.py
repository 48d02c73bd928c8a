"""``SQLiteInbox``: the default, embedded ``Inbox`` (one SQLite file, WAL, group commit).

The file is opened, migrated, written and checkpointed by the SQLite layer (``cio_relay.sqlite``),
as the outbox's is; this module holds the inbox's tables and SQL only. Writes from threads share
transactions (group commit), and the receiver's writes from the event loop (``store_async``,
``quarantine_async``) are gathered per loop iteration and committed on the loop's thread when
nothing can make them wait, else on a thread (loop_writes.py). So concurrent webhook requests
share commits, and the receiver and the handler worker never fight over the write lock inside
one process. Any write that fails raises ``InboxUnavailableError`` (the receiver answers 503 and
Customer.io retries); one bad write does not fail the others committed with it.

``durability``: ``"process"`` (default) is ``synchronous=NORMAL`` in WAL mode: a committed event
survives the process being killed, not a power cut. ``"power"`` is ``synchronous=FULL``: an
fsync per commit, so it survives power loss too; its commits never run on the event loop.

Event seqs are rowids, and SQLite gives a new row the highest rowid + 1; so ``prune`` never
deletes the newest event, and seqs are never reused (a reused seq would hide new events behind
a consumer's saved cursor). That rule is cheaper than ``AUTOINCREMENT``, which updates
``sqlite_sequence`` on every insert.

Schema (version in ``PRAGMA user_version``): version 1 is the schema of the releases that kept
no version, written with ``IF NOT EXISTS`` so that it adopts their files as they are (including
those made before ``webhook_quarantine_digests`` existed, which gain the table). Version 2 adds
``webhook_events.truncated`` (an event kept as its fields from a body too large to keep whole).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cio_relay.clock import now_or
from cio_relay.errors import InboxUnavailableError
from cio_relay.sqlite import BUSY_TIMEOUT, ClosedError, Database, Durability, LoopWrites, Steps
from cio_relay.webhooks.events import Event
from cio_relay.webhooks.inbox import (
    DEFAULT_RETENTION,
    HandlerState,
    InboxCounts,
    QuarantinedPayload,
    StoredEvent,
    clip_error,
    quarantine_digest,
)

__all__ = ["Durability", "SQLiteInbox"]

log = logging.getLogger("cio_relay.webhooks")

T = TypeVar("T")
_PRUNE_CHUNK = 5_000

_STEPS: Steps = {
    1: (
        """CREATE TABLE IF NOT EXISTS webhook_events (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            raw BLOB NOT NULL,
            received_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT)""",
        """CREATE INDEX IF NOT EXISTS webhook_events_pending ON webhook_events (seq)
            WHERE state = 'pending'""",
        """CREATE INDEX IF NOT EXISTS webhook_events_parked ON webhook_events (seq)
            WHERE state = 'parked'""",
        """CREATE TABLE IF NOT EXISTS webhook_quarantine (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            raw BLOB NOT NULL,
            error TEXT NOT NULL,
            received_at REAL NOT NULL)""",
        # Keyed by the digest in a side table, not a column of webhook_quarantine, because files
        # from before de-duplication had no digests; their earlier rows stay as they are.
        """CREATE TABLE IF NOT EXISTS webhook_quarantine_digests (
            digest BLOB PRIMARY KEY,
            id INTEGER NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS webhook_cursors (
            name TEXT PRIMARY KEY,
            seq INTEGER NOT NULL)""",
    ),
    # Events stored from a body larger than the receiver keeps are marked (webhooks/truncated.py).
    2: ("ALTER TABLE webhook_events ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0",),
}

_EVENT_COLUMNS = (
    "seq, event_id, name, raw, received_at, state, attempts, next_attempt_at, last_error, truncated"
)


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    (seq, event_id, name, raw, received_at, state, attempts, next_attempt_at, last_error, cut) = row
    return StoredEvent(
        seq,
        event_id,
        name,
        bytes(raw),
        received_at,
        HandlerState(state),
        attempts,
        next_attempt_at,
        last_error,
        truncated=bool(cut),
    )


class SQLiteInbox:
    """The embedded ``Inbox``: ``SQLiteInbox("cio-relay-data/webhooks.db")``.

    ``busy_timeout``: how long a write waits for another process's lock on the file before it
    fails (the receiver then answers 503 and Customer.io retries). ``inline_writes=False``
    sends the event loop's writes to a thread even when they could be written on the loop.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        durability: Durability = "process",
        busy_timeout: float = BUSY_TIMEOUT,
        inline_writes: bool = True,
    ) -> None:
        self._db = Database(
            path,
            store="webhook inbox",
            steps=_STEPS,
            durability=durability,
            busy_timeout=busy_timeout,
        )
        self.path = self._db.path
        self._loop_writes = LoopWrites(self._db, on_loop=inline_writes)

    def __repr__(self) -> str:
        return f"SQLiteInbox({str(self.path)!r})"

    # --- the layer's calls, with its failures as the inbox's -------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return self._db.write(work)
        except Exception as exc:
            raise _unavailable(exc) from exc

    async def _write_async(
        self, work: Callable[[sqlite3.Connection], T], timeout: float | None = None
    ) -> T:
        try:
            return await self._loop_writes.write(work, timeout)
        except Exception as exc:
            raise _unavailable(exc) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.read(sql, params)
        except ClosedError as exc:
            raise _unavailable(exc) from exc

    # --- the Inbox protocol ---------------------------------------------------------------

    @staticmethod
    def _insert(
        event: Event, raw: bytes, at: float, truncated: bool
    ) -> Callable[[sqlite3.Connection], bool]:
        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO webhook_events"
                " (event_id, name, raw, received_at, next_attempt_at, truncated)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event.event_id, event.name, raw, at, at, int(truncated)),
            )
            return cursor.rowcount == 1

        return insert

    def store(
        self,
        event: Event,
        raw: bytes,
        *,
        received_at: float | None = None,
        truncated: bool = False,
    ) -> bool:
        return self._write(self._insert(event, raw, now_or(received_at), truncated))

    async def store_async(
        self,
        event: Event,
        raw: bytes,
        *,
        received_at: float | None = None,
        timeout: float | None = None,
        truncated: bool = False,
    ) -> bool:
        insert = self._insert(event, raw, now_or(received_at), truncated)
        return await self._write_async(insert, timeout)

    @staticmethod
    def _quarantine(raw: bytes, error: str, at: float) -> Callable[[sqlite3.Connection], int]:
        digest = quarantine_digest(raw)

        def insert(conn: sqlite3.Connection) -> int:
            seen = conn.execute(
                "SELECT id FROM webhook_quarantine_digests WHERE digest = ?", (digest,)
            ).fetchone()
            if seen is not None:
                return int(seen[0])
            cursor = conn.execute(
                "INSERT INTO webhook_quarantine (raw, error, received_at) VALUES (?, ?, ?)",
                (raw, clip_error(error), at),
            )
            item_id = int(cursor.lastrowid or 0)
            conn.execute(
                "INSERT INTO webhook_quarantine_digests (digest, id) VALUES (?, ?)",
                (digest, item_id),
            )
            return item_id

        return insert

    def quarantine(self, raw: bytes, error: str, *, received_at: float | None = None) -> int:
        return self._write(self._quarantine(raw, error, now_or(received_at)))

    async def quarantine_async(
        self,
        raw: bytes,
        error: str,
        *,
        received_at: float | None = None,
        timeout: float | None = None,
    ) -> int:
        return await self._write_async(self._quarantine(raw, error, now_or(received_at)), timeout)

    def due(self, limit: int, *, now: float | None = None) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM webhook_events"  # noqa: S608 - fixed column list
            " WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY seq LIMIT ?",
            (now_or(now), limit),
        )
        return [_stored(row) for row in rows]

    def next_due_at(self) -> float | None:
        rows = self._read("SELECT min(next_attempt_at) FROM webhook_events WHERE state = 'pending'")
        value = rows[0][0]
        return None if value is None else float(value)

    def mark_done(self, event_ids: Sequence[str]) -> None:
        params = [(event_id,) for event_id in event_ids]
        self._write(
            lambda conn: conn.executemany(
                "UPDATE webhook_events SET state = 'done' WHERE event_id = ?", params
            )
        )

    def retry_later(self, event_id: str, *, error: str, retry_at: float) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE webhook_events SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? WHERE event_id = ?",
                (clip_error(error), retry_at, event_id),
            )
        )

    def park(self, event_id: str, *, error: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE webhook_events SET state = 'parked', attempts = attempts + 1,"
                " last_error = ? WHERE event_id = ?",
                (clip_error(error), event_id),
            )
        )

    def list_parked(self, *, limit: int = 100, offset: int = 0) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM webhook_events"  # noqa: S608 - fixed column list
            " WHERE state = 'parked' ORDER BY seq LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_stored(row) for row in rows]

    def retry_parked(self, event_ids: Sequence[str] = (), *, now: float | None = None) -> int:
        at = now_or(now)
        reset = "UPDATE webhook_events SET state = 'pending', attempts = 0, next_attempt_at = ?"

        def requeue(conn: sqlite3.Connection) -> int:
            if not event_ids:
                return conn.execute(reset + " WHERE state = 'parked'", (at,)).rowcount
            changed = 0
            for event_id in event_ids:
                changed += conn.execute(
                    reset + " WHERE state = 'parked' AND event_id = ?", (at, event_id)
                ).rowcount
            return changed

        return self._write(requeue)

    def list_quarantined(self, *, limit: int = 100, offset: int = 0) -> list[QuarantinedPayload]:
        rows = self._read(
            "SELECT id, raw, error, received_at FROM webhook_quarantine"
            " ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [QuarantinedPayload(row[0], bytes(row[1]), row[2], row[3]) for row in rows]

    def read_after(self, seq: int, limit: int) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM webhook_events"  # noqa: S608 - fixed column list
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [_stored(row) for row in rows]

    def cursor(self, name: str) -> int:
        rows = self._read("SELECT seq FROM webhook_cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, name: str, seq: int) -> None:
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO webhook_cursors (name, seq) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                (name, seq),
            )
        )

    def prune(self, *, retention: float = DEFAULT_RETENTION, now: float | None = None) -> int:
        cutoff = now_or(now) - retention

        def delete_chunk(conn: sqlite3.Connection) -> int:
            behind = conn.execute("SELECT min(seq) FROM webhook_cursors").fetchone()[0]
            newest = conn.execute("SELECT max(seq) FROM webhook_events").fetchone()[0] or 0
            limit = min(newest - 1, behind if behind is not None else newest)
            return conn.execute(
                "DELETE FROM webhook_events WHERE seq IN (SELECT seq FROM webhook_events"
                " WHERE seq <= ? AND state = 'done' AND received_at < ? ORDER BY seq LIMIT ?)",
                (limit, cutoff, _PRUNE_CHUNK),
            ).rowcount

        # In chunks, each its own write, so webhooks arriving meanwhile are not held up.
        total = 0
        while (deleted := self._write(delete_chunk)) > 0:
            total += deleted
        return total

    def counts(self) -> InboxCounts:
        by_state = dict(self._read("SELECT state, count(*) FROM webhook_events GROUP BY state"))
        quarantined = self._read("SELECT count(*) FROM webhook_quarantine")[0][0]
        return InboxCounts(
            pending=by_state.get("pending", 0),
            done=by_state.get("done", 0),
            parked=by_state.get("parked", 0),
            quarantined=quarantined,
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteInbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _unavailable(error: Exception) -> InboxUnavailableError:
    if isinstance(error, ClosedError):
        return InboxUnavailableError("the inbox is closed")
    if isinstance(error, TimeoutError):
        return InboxUnavailableError(f"inbox {error}")
    log.warning("inbox write failed: %s: %s", type(error).__name__, error)
    return InboxUnavailableError(f"inbox write failed: {type(error).__name__}: {error}")
