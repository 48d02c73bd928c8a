"""``SqliteOutbox``: the embedded default outbox, one SQLite file in WAL mode.

The file is opened, migrated, written and checkpointed by the SQLite layer (``cio_relay.sqlite``):
its pragmas and durability levels (``durability="process"`` survives ``kill -9`` of any process,
``"power"`` survives power loss: connection.py), group commit (concurrent ``enqueue`` calls share
one transaction; a lone caller commits at once on its own thread), and WAL checkpoints on a
thread beside the writers. This module holds the outbox's tables and SQL only.

Many processes may open one file (the app enqueues, a worker leases and acks). Writes are short
``BEGIN IMMEDIATE`` transactions, so a writer waits on SQLite's lock (``busy_timeout``) up front
instead of failing half-way. An event loop that gathers its own groups (group_writer.py) calls
``enqueue_nowait``: the group is written on the loop's thread when nothing else holds the file,
without a thread hop.

Schema (sqlite_schema.py; version in ``PRAGMA user_version``):

- ``intake``: where ``enqueue`` (and ``replay``) append: a rowid table with one unique index
  (``op_id``, near-sequential since op ids are ULIDs), so an enqueue commit dirties few pages,
  far fewer than writing straight into ``ops`` with its indexes and triggers
  (docs/benchmarks.md). ``lease`` first moves the oldest ``ADMIT_BATCH`` into ``ops`` in order,
  in the lease's transaction, so the indexing work is done by the worker, on its own core,
  rather than by the caller waiting for its 202 or return. Enqueue is idempotent across both
  tables and ``dead`` (``INSERT OR IGNORE`` plus two ``NOT EXISTS`` probes).
- ``ops``: every admitted pending operation; ``seq`` (the rowid) is the enqueue order (intake
  keeps its order on the way in); unique ``op_id``; ``(person_key, seq)`` finds a person's
  next.
- ``heads``: one row per person with pending work (keyed by ``person_key``): the ``seq`` of the
  person's oldest operation, its ``due_at`` (``available_at`` when free, ``lease_until`` when
  leased, so an expired lease is simply due) and the lease ``token``. Triggers keep it right: an
  insert into ``ops`` adds a head if the person had none; a delete from ``ops`` (ack, dead
  letter) promotes the person's next operation in place. ``lease`` reads the ``(due_at, seq)``
  index from its start, so it costs O(limit) however deep the queue: a person with 900,000
  operations behind a leased or retrying head is one row whose ``due_at`` lies in the future,
  outside the range ``lease`` reads. A token is drawn per ``lease`` call and a person has one
  head, so ``(person_key, token)`` names a live lease; a stale one matches no row.
- ``dead``: dead letters (the operation's columns plus reason, detail, attempts, dead_at), listed
  newest first through the ``dead_at`` index; filters by kind and reason scan that index (dead
  letters are an operator's volume, not a firehose).
- ``stats``: one row of maintained counters (pending, dead), updated once per transaction, so
  ``depth()`` does not count a million rows: ``leased`` and ``scheduled`` are indexed counts of
  heads due in the future; ``oldest_waiting_age`` reads the first row by ``seq``: the age of
  the operation enqueued earliest (as in ``MemoryOutbox``; an index on ``created_at`` would cost
  every enqueue a page write for a figure that differs only for back-dated or replayed ops).

Operations live in the file, never in Python memory: a million waiting operations cost the
SQLite page cache and nothing more (peak memory, lease and ``depth()`` times with a million
waiting: benchmarks/bench_outbox.py and docs/benchmarks.md).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from cio_relay.clock import now_or
from cio_relay.operations import Operation
from cio_relay.outbox.base import (
    EVERY_DEAD_LETTER,
    NO_ATTEMPT_REASONS,
    SENDING_MARK,
    DeadLetter,
    DeadLetterFilter,
    DeadReason,
    Depth,
    Lease,
    new_lease,
    new_lease_token,
)
from cio_relay.outbox.sqlite_schema import (
    ADMIT,
    ADMIT_UNTIL,
    DEAD_COLUMNS,
    DUE_HEADS,
    INSERT,
    OP_COLUMNS,
    SCHEMA_VERSION,
    STEPS,
)
from cio_relay.sqlite import BUSY_TIMEOUT, Database, Durability

__all__ = ["ADMIT_BATCH", "SCHEMA_VERSION", "Durability", "SqliteOutbox"]

#: Operations moved from ``intake`` into ``ops`` at a time by ``lease``: enough to stay ahead
#: of any lease size, small enough that the move holds the write lock briefly rather than for a
#: backlog's worth, unless the lease finds too few due heads (a person's backlog ahead of the
#: rest), when it admits further until it has enough.
ADMIT_BATCH = 2_000


class SqliteOutbox:
    """The ``Outbox`` protocol over one SQLite file; see the module docstring.

    >>> outbox = SqliteOutbox("cio-relay-data/outbox.db", durability="power")
    >>> outbox.enqueue([operations.track("user-1", "signed_up")])
    1
    """

    def __init__(
        self,
        path: str | Path,
        *,
        durability: Durability = "process",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self._db = Database(
            path, store="outbox", steps=STEPS, durability=durability, busy_timeout=busy_timeout
        )
        self.path = self._db.path
        self.durability = self._db.durability
        # The writer connection and its lock, under the names tests of the callers use.
        self._lock = self._db.lock
        self._conn = self._db.writer
        self._enqueue_commits = 0
        self._last_enqueue_commit = -1

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path)!r}, durability={self.durability!r})"

    # --- enqueue ------------------------------------------------------------------------------

    @property
    def enqueue_commits(self) -> int:
        """Transactions that wrote ``enqueue`` (or ``enqueue_nowait``) calls: fewer than calls
        when callers shared commits."""
        return self._enqueue_commits

    def enqueue(self, ops: Sequence[Operation]) -> int:
        records = _records(ops)
        if not records:
            return 0
        added: int = self._db.write(self._insert(records))
        return added

    @property
    def database(self) -> Database:
        """The file's ``Database``: a feature sharing the file (``cio_relay.sync``) writes its
        own rows and ``enqueue_in`` in one of its transactions."""
        return self._db

    def enqueue_in(self, conn: sqlite3.Connection, ops: Sequence[Operation]) -> int:
        """``enqueue`` inside the caller's transaction on ``database``'s writer: its rows and
        the caller's commit (or roll back) together."""
        records = _records(ops)
        return self._insert(records)(conn) if records else 0

    def enqueue_nowait(self, ops: Sequence[Operation]) -> int | None:
        """``enqueue``, if that needs no waiting; else None, and nothing is stored.

        For an event loop, which must never block: with ``durability="process"`` a commit does
        not fsync, so an uncontended enqueue is a short burst of CPU and nothing more. Waiting
        would be needed when another thread of this process holds the connection (a worker's
        lease, a checkpoint's short pause) or another process holds the write lock; then this
        returns None at once (the caller hands the write to a thread that may wait), as it
        does always with ``durability="power"`` (an fsync per commit).
        """
        if self.durability != "process":
            return None  # before serialising: the caller's thread path serialises again
        records = _records(ops)
        if not records:
            return 0
        counts = self._db.write_nowait([self._insert(records)])
        return None if counts is None else int(counts[0])

    def _insert(self, records: list[tuple[Any, ...]]) -> Callable[[sqlite3.Connection], int]:
        def insert(conn: sqlite3.Connection) -> int:
            # Commits are counted as they are being written: several calls in one group commit
            # see the same number of earlier commits, and count once.
            if self._last_enqueue_commit != self._db.commits:
                self._last_enqueue_commit = self._db.commits
                self._enqueue_commits += 1
            now = time.time()
            added: int = conn.executemany(INSERT, [(*record, now) for record in records]).rowcount
            if added:
                conn.execute("UPDATE stats SET pending = pending + ?", (added,))
            return added

        return insert

    # --- leasing ------------------------------------------------------------------------------

    def lease(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[Lease]:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        if limit <= 0:
            return []
        at = now_or(now)
        until = at + lease_seconds
        token = new_lease_token()

        def take(conn: sqlite3.Connection) -> list[Any]:
            _admit(conn)
            rows = conn.execute(DUE_HEADS, (at, limit)).fetchall()
            # Short of due heads while operations wait in intake (one person's backlog ahead of
            # everyone else's, say): admit more until there are enough or intake is empty.
            while len(rows) < limit and _admit(conn):
                rows = conn.execute(DUE_HEADS, (at, limit)).fetchall()
            conn.executemany(
                "UPDATE heads SET due_at = ?, token = ? WHERE person_key = ?",
                [(until, token, row[0]) for row in rows],
            )
            return rows

        rows: list[Any] = self._db.write(take)
        # Decoded after the commit: the connection (and the write lock) are not held meanwhile.
        from_record = Operation.from_record
        return [
            new_lease(from_record(op_id, kind, payload, created, env), token, n, until, e)
            for _, op_id, kind, payload, created, env, n, e in rows
        ]

    def ack(self, leases: Iterable[Lease]) -> None:
        op_ids = [(lease.op.op_id,) for lease in leases]
        if not op_ids:
            return

        def delete(conn: sqlite3.Connection) -> None:
            removed = conn.executemany("DELETE FROM ops WHERE op_id = ?", op_ids).rowcount
            if removed < len(op_ids):  # an acked op id enqueued again meanwhile: delivered
                removed += conn.executemany("DELETE FROM intake WHERE op_id = ?", op_ids).rowcount
            if removed:
                conn.execute("UPDATE stats SET pending = pending - ?", (removed,))

        self._db.write(delete)

    def release(
        self, leases: Iterable[Lease], *, delay: float = 0.0, now: float | None = None
    ) -> None:
        not_before = now_or(now) + delay if delay > 0 else 0.0
        rows = [(not_before, lease.op.person_key, lease.token) for lease in leases]
        if not rows:
            return

        def give_back(conn: sqlite3.Connection) -> None:
            if not_before:  # the deferral sticks: a later release(delay=0) does not undo it
                conn.executemany(
                    "UPDATE ops SET available_at = MAX(available_at, ?) WHERE seq ="
                    " (SELECT seq FROM heads WHERE person_key = ? AND token = ?)",
                    rows,
                )
            conn.executemany(
                "UPDATE heads SET token = NULL,"
                " due_at = MAX(?, (SELECT available_at FROM ops WHERE ops.seq = heads.seq))"
                " WHERE person_key = ? AND token = ?",
                rows,
            )

        self._db.write(give_back)

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        until = now_or(now) + lease_seconds
        rows = [(until, lease.op.person_key, lease.token) for lease in leases]
        if rows:
            self._db.write(
                lambda conn: conn.executemany(
                    "UPDATE heads SET due_at = MAX(due_at, ?) WHERE person_key = ? AND token = ?",
                    rows,
                )
            )

    def mark_sending(self, lease: Lease) -> None:
        self._db.write(
            lambda conn: conn.execute(
                "UPDATE ops SET last_error = ? WHERE op_id = ? AND EXISTS (SELECT 1 FROM heads"
                " WHERE heads.person_key = ? AND heads.token = ? AND heads.seq = ops.seq)",
                (SENDING_MARK, lease.op.op_id, lease.op.person_key, lease.token),
            )
        )

    def retry_later(
        self, lease: Lease, *, retry_at: float, error: str, now: float | None = None
    ) -> None:
        def schedule(conn: sqlite3.Connection) -> None:
            held = conn.execute(
                "UPDATE heads SET token = NULL, due_at = ? WHERE person_key = ? AND token = ?",
                (retry_at, lease.op.person_key, lease.token),
            ).rowcount
            if held:
                conn.execute(
                    "UPDATE ops SET attempts = attempts + 1, last_error = ?, available_at = ?"
                    " WHERE op_id = ?",
                    (error, retry_at, lease.op.op_id),
                )

        self._db.write(schedule)

    def dead_letter(
        self, lease: Lease, reason: DeadReason, detail: str, *, now: float | None = None
    ) -> None:
        reason = DeadReason(reason)
        extra_attempt = 0 if reason in NO_ATTEMPT_REASONS else 1
        at = now_or(now)

        def bury(conn: sqlite3.Connection) -> None:
            held = conn.execute(
                "INSERT INTO dead (op_id, kind, person_key, payload, created_at, env,"
                " reason, detail, attempts, dead_at)"
                " SELECT o.op_id, o.kind, o.person_key, o.payload, o.created_at, o.env,"
                " ?, ?, o.attempts + ?, ? FROM heads h JOIN ops o ON o.seq = h.seq"
                " WHERE h.person_key = ? AND h.token = ?",
                (reason.value, detail, extra_attempt, at, lease.op.person_key, lease.token),
            ).rowcount
            if held:
                conn.execute("DELETE FROM ops WHERE op_id = ?", (lease.op.op_id,))
                conn.execute("UPDATE stats SET pending = pending - 1, dead = dead + 1")

        self._db.write(bury)

    # --- dead letters -------------------------------------------------------------------------

    def list_dead(
        self,
        where: DeadLetterFilter = EVERY_DEAD_LETTER,
        *,
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> list[DeadLetter]:
        clause, params = _dead_clause(where, now_or(now))
        rows = self._db.read(
            f"SELECT {DEAD_COLUMNS} FROM dead WHERE {clause}"  # noqa: S608 (see _dead_clause)
            " ORDER BY dead_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, max(limit, 0), max(offset, 0)],
        )
        return [
            DeadLetter(
                Operation.from_record(op_id, kind, payload, created, env),
                DeadReason(reason),
                detail,
                attempts,
                dead_at,
            )
            for op_id, kind, payload, created, env, reason, detail, attempts, dead_at in rows
        ]

    def count_dead(
        self, where: DeadLetterFilter = EVERY_DEAD_LETTER, *, now: float | None = None
    ) -> int:
        if where == EVERY_DEAD_LETTER:
            count: int = self._db.read("SELECT dead FROM stats", ())[0][0]
            return count
        clause, params = _dead_clause(where, now_or(now))
        found: int = self._db.read(
            f"SELECT count(*) FROM dead WHERE {clause}",  # noqa: S608 (see _dead_clause)
            params,
        )[0][0]
        return found

    def replay(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        at = now_or(now)
        clause, params = _dead_clause(where, at)

        def put_back(conn: sqlite3.Connection) -> int:
            # Oldest dead letter first, so one person's replayed operations keep their order.
            select = f"SELECT {OP_COLUMNS}, ? FROM dead WHERE {clause}"  # noqa: S608
            added = conn.execute(
                f"INSERT OR IGNORE INTO intake ({OP_COLUMNS}, available_at)"
                f" {select} ORDER BY dead_at, id",
                [at, *params],
            ).rowcount
            removed = conn.execute(
                f"DELETE FROM dead WHERE {clause}",  # noqa: S608 (see _dead_clause)
                params,
            ).rowcount
            conn.execute(
                "UPDATE stats SET pending = pending + ?, dead = dead - ?", (added, removed)
            )
            return removed

        replayed: int = self._db.write(put_back)
        return replayed

    def purge(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        clause, params = _dead_clause(where, now_or(now))

        def delete(conn: sqlite3.Connection) -> int:
            removed: int = conn.execute(
                f"DELETE FROM dead WHERE {clause}",  # noqa: S608 (see _dead_clause)
                params,
            ).rowcount
            conn.execute("UPDATE stats SET dead = dead - ?", (removed,))
            return removed

        purged: int = self._db.write(delete)
        return purged

    # --- inspection ---------------------------------------------------------------------------

    def depth(self, *, now: float | None = None) -> Depth:
        at = now_or(now)

        def count(conn: sqlite3.Connection) -> tuple[Any, ...]:
            pending, dead = conn.execute("SELECT pending, dead FROM stats").fetchone()
            waiting = dict(
                conn.execute(
                    "SELECT token IS NOT NULL, count(*) FROM heads WHERE due_at > ? GROUP BY 1",
                    (at,),
                ).fetchall()
            )
            # Everything in ``ops`` was enqueued before everything still in ``intake``.
            oldest = (
                conn.execute("SELECT created_at FROM ops ORDER BY seq LIMIT 1").fetchone()
                or conn.execute("SELECT created_at FROM intake ORDER BY seq LIMIT 1").fetchone()
            )
            return pending, dead, waiting, oldest

        pending, dead, waiting, oldest = self._db.read_together(count)  # one snapshot
        leased, scheduled = waiting.get(1, 0), waiting.get(0, 0)
        return Depth(
            ready=pending - leased - scheduled,
            scheduled=scheduled,
            leased=leased,
            dead=dead,
            oldest_waiting_age=None if oldest is None else max(0.0, at - oldest[0]),
        )

    def close(self) -> None:
        self._db.close()


def _admit(conn: sqlite3.Connection) -> bool:
    """Move the oldest ``ADMIT_BATCH`` operations of ``intake`` into ``ops`` (in order);
    whether there were any."""
    until = conn.execute(ADMIT_UNTIL, (ADMIT_BATCH,)).fetchone()[0]
    if until is None:
        return False
    conn.execute(ADMIT, (until,))
    conn.execute("DELETE FROM intake WHERE seq <= ?", (until,))
    return True


def _records(ops: Sequence[Operation]) -> list[tuple[Any, ...]]:
    """Serialise every operation before any is written: a bad element stores nothing."""
    records = []
    for op in ops:
        if not isinstance(op, Operation):
            raise TypeError(f"enqueue takes Operations, not {type(op).__name__}")
        records.append(op.to_record())
    return records


def _dead_clause(where: DeadLetterFilter, now: float) -> tuple[str, list[Any]]:
    """The SQL condition and parameters equivalent to ``where.matches(dead, now)``.

    The condition is joined from the constant fragments below only; every value travels as a
    parameter, so the f-strings that embed it carry no input (hence their ``noqa: S608``).
    """
    clauses: list[str] = []
    params: list[Any] = []
    if where.op_ids:
        clauses.append("op_id IN (SELECT value FROM json_each(?))")
        params.append(orjson.dumps(list(where.op_ids)).decode())
    if where.kind is not None:
        clauses.append("kind = ?")
        params.append(where.kind)
    if where.reason is not None:
        clauses.append("reason = ?")
        params.append(where.reason)
    if where.older_than is not None:
        clauses.append("dead_at <= ?")
        params.append(now - where.older_than)
    return " AND ".join(clauses) or "1", params
