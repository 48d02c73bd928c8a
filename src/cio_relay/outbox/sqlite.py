"""``SqliteOutbox``: the embedded default outbox, one SQLite file in WAL mode.

Durability. ``durability="process"`` runs ``synchronous=NORMAL``: a commit is in the WAL, in the
operating system's hands, before ``enqueue`` returns, so it survives ``kill -9`` of any process
(not a power cut). ``"power"`` runs ``synchronous=FULL``: every commit is fsynced, so it survives
power loss, at the price of one fsync per commit (group commit shares it between callers).

Many processes may open one file (the app enqueues, a worker leases and acks). Writes are short
``BEGIN IMMEDIATE`` transactions, so a writer waits on SQLite's lock (``busy_timeout``) up front
instead of failing half-way; each ``SqliteOutbox`` holds one connection guarded by a lock.

Group commit (group_commit.py). Concurrent ``enqueue`` calls share one transaction: the first
caller that finds no commit under way leads, writes every call queued so far in one transaction
and wakes their callers; a lone caller commits at once on its own thread, so one thread's latency
stays that of one small commit. ``enqueue_commits`` counts these transactions. An event loop
that gathers its own groups (group_writer.py) calls ``enqueue_nowait`` instead: the group is
written on the loop's thread when nothing else holds the file, without a thread hop.

Schema (version in ``PRAGMA user_version``):

- ``intake``: where ``enqueue`` (and ``replay``) append: a rowid table with one unique index
  (``op_id``, near-sequential since op ids are ULIDs), so an enqueue commit dirties few pages
  (measured with 100-operation batches: 7 us an operation against 13-15 us writing straight
  into ``ops``; one-operation commits 33 against 55 us). ``lease`` first moves the oldest
  ``ADMIT_BATCH`` into ``ops`` in order, in the lease's transaction, so the indexing work is done
  by the worker, on its own core, rather than by the caller waiting for its 202 or return.
  Enqueue is idempotent across both tables and ``dead`` (``INSERT OR IGNORE`` plus two
  ``NOT EXISTS`` probes).
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
SQLite page cache (``CACHE_KIB``) and nothing more (measured: 62 MB peak RSS, lease of 500 in
~5 ms, ``depth()`` in under 1 ms; benchmarks/bench_outbox.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from cio_relay.clock import now_or
from cio_relay.errors import ConfigError
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
from cio_relay.outbox.checkpoint import Checkpointer
from cio_relay.outbox.group_commit import GroupCommit

__all__ = ["SCHEMA_VERSION", "Durability", "SqliteOutbox"]

Durability = Literal["process", "power"]
_SYNCHRONOUS: dict[str, str] = {"process": "NORMAL", "power": "FULL"}

#: Small pages: each one-operation commit writes a handful of dirty pages to the WAL, so 1 KiB
#: pages write a quarter of the bytes of 4 KiB ones (measured ~35 % more commits per second).
PAGE_SIZE = 1024
CACHE_KIB = 16 * 1024
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is truncated back to after a checkpoint

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE ops (
            seq INTEGER PRIMARY KEY,
            op_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            person_key TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            env TEXT NOT NULL,
            available_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT)""",
        "CREATE INDEX ops_person ON ops (person_key, seq)",
        """CREATE TABLE heads (
            person_key TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            due_at REAL NOT NULL,
            token TEXT) WITHOUT ROWID""",
        "CREATE INDEX heads_due ON heads (due_at, seq)",
        """CREATE TRIGGER ops_new_head AFTER INSERT ON ops BEGIN
            INSERT OR IGNORE INTO heads (person_key, seq, due_at)
            VALUES (new.person_key, new.seq, new.available_at);
        END""",
        """CREATE TRIGGER ops_next_head AFTER DELETE ON ops BEGIN
            UPDATE heads SET (seq, due_at, token) = (
                SELECT seq, available_at, NULL FROM ops
                WHERE person_key = old.person_key ORDER BY seq LIMIT 1)
            WHERE person_key = old.person_key AND seq = old.seq
            AND EXISTS (SELECT 1 FROM ops WHERE person_key = old.person_key);
            DELETE FROM heads WHERE person_key = old.person_key AND seq = old.seq;
        END""",
        """CREATE TABLE dead (
            id INTEGER PRIMARY KEY,
            op_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            person_key TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            env TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            dead_at REAL NOT NULL)""",
        "CREATE INDEX dead_newest ON dead (dead_at)",
        """CREATE TABLE stats (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pending INTEGER NOT NULL,
            dead INTEGER NOT NULL)""",
        "INSERT INTO stats (id, pending, dead) VALUES (1, 0, 0)",
    ),
    2: (
        """CREATE TABLE intake (
            seq INTEGER PRIMARY KEY,
            op_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            person_key TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            env TEXT NOT NULL,
            available_at REAL NOT NULL)""",
    ),
}
SCHEMA_VERSION = max(_MIGRATIONS)

_INSERT = (
    "INSERT OR IGNORE INTO intake (op_id, kind, person_key, payload, created_at, env, available_at)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM ops WHERE op_id = ?1)"
    " AND NOT EXISTS (SELECT 1 FROM dead WHERE op_id = ?1)"
)
#: Operations moved from ``intake`` into ``ops`` at a time by ``lease``: enough to stay ahead
#: of any lease size, small enough that the move (~10 us an operation) holds the write lock for
#: a few milliseconds, not a backlog's worth, unless the lease finds too few due heads (a
#: person's backlog ahead of the rest), when it admits further until it has enough.
ADMIT_BATCH = 2_000
_ADMIT_UNTIL = "SELECT max(seq) FROM (SELECT seq FROM intake ORDER BY seq LIMIT ?)"
_ADMIT = (
    "INSERT OR IGNORE INTO ops (op_id, kind, person_key, payload, created_at, env, available_at)"
    " SELECT op_id, kind, person_key, payload, created_at, env, available_at FROM intake"
    " WHERE seq <= ? ORDER BY seq"
)
_DUE_HEADS = (
    "SELECT h.person_key, o.op_id, o.kind, o.payload, o.created_at, o.env, o.attempts, o.last_error"
    " FROM heads h JOIN ops o ON o.seq = h.seq"
    " WHERE h.due_at <= ? ORDER BY h.due_at, h.seq LIMIT ?"
)
_OP_COLUMNS = "op_id, kind, person_key, payload, created_at, env"
_DEAD_COLUMNS = "op_id, kind, payload, created_at, env, reason, detail, attempts, dead_at"


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
        busy_timeout: float = 10.0,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ConfigError(f"durability must be 'process' or 'power', not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._lock = threading.Lock()  # the connection
        self._group = GroupCommit(self._insert_groups)
        self._closed = False
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._nowait_commits = 0
        self._conn = self._connect(busy_timeout)
        self._checkpointer = Checkpointer(
            self.path, synchronous=_SYNCHRONOUS[durability], writer_lock=self._lock
        )

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path)!r}, durability={self.durability!r})"

    # --- connection and schema ----------------------------------------------------------------

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,  # shared between threads under self._lock
        )
        try:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise ConfigError(f"{self.path}: SQLite cannot use WAL here (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.durability]}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's thread does it
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # two processes opening a new file: one creates it
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: outbox schema version {version} is newer than this "
                    f"cio-relay understands ({SCHEMA_VERSION}); upgrade cio-relay"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[number]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _write(self, work: Any) -> Any:
        """Run ``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction under the connection lock."""
        with self._lock:
            conn = self._open_connection()
            conn.execute("BEGIN IMMEDIATE")
            return self._finish(conn, work)

    def _finish(self, conn: sqlite3.Connection, work: Any) -> Any:
        """The rest of a transaction begun on ``conn``: ``work``, then COMMIT (or ROLLBACK)."""
        try:
            result = work(conn)
            conn.execute("COMMIT")
            self._checkpointer.wrote(conn.total_changes)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _open_connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return self._conn

    # --- enqueue (group commit) ---------------------------------------------------------------

    @property
    def enqueue_commits(self) -> int:
        """Transactions written by ``enqueue`` (and ``enqueue_nowait``): fewer than calls when
        callers shared commits."""
        return self._group.commits + self._nowait_commits

    def enqueue(self, ops: Sequence[Operation]) -> int:
        records = _records(ops)
        return self._group.submit(records) if records else 0

    def enqueue_nowait(self, ops: Sequence[Operation]) -> int | None:
        """``enqueue``, if that needs no waiting; else None, and nothing is stored.

        For an event loop, which must never block: with ``durability="process"`` a commit does
        not fsync, so an uncontended enqueue is a few microseconds of CPU an operation. Waiting
        would be needed when another thread of this process holds the connection (a worker's
        lease, a checkpoint's short pause) or another process holds the write lock; then this
        returns None at once (the caller hands the write to a thread that may wait), as it
        does always with ``durability="power"`` (an fsync per commit).
        """
        if self.durability != "process":
            return None  # before serialising: the caller's thread path serialises again
        records = _records(ops)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._open_connection()
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # SQLITE_BUSY: another process is writing
                return None
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            counts: list[int] = self._finish(conn, self._insert([records]))
            self._nowait_commits += 1
            return counts[0]
        finally:
            self._lock.release()

    def _insert_groups(self, groups: list[Sequence[Any]]) -> list[int]:
        """One transaction for a whole group of ``enqueue`` calls (see group_commit.py)."""
        counts: list[int] = self._write(self._insert(groups))
        return counts

    @staticmethod
    def _insert(groups: list[Sequence[Any]]) -> Callable[[sqlite3.Connection], list[int]]:
        def insert(conn: sqlite3.Connection) -> list[int]:
            now = time.time()
            counts = [
                conn.executemany(_INSERT, [(*record, now) for record in records]).rowcount
                for records in groups
            ]
            if added := sum(counts):
                conn.execute("UPDATE stats SET pending = pending + ?", (added,))
            return counts

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
            rows = conn.execute(_DUE_HEADS, (at, limit)).fetchall()
            # Short of due heads while operations wait in intake (one person's backlog ahead of
            # everyone else's, say): admit more until there are enough or intake is empty.
            while len(rows) < limit and _admit(conn):
                rows = conn.execute(_DUE_HEADS, (at, limit)).fetchall()
            conn.executemany(
                "UPDATE heads SET due_at = ?, token = ? WHERE person_key = ?",
                [(until, token, row[0]) for row in rows],
            )
            return rows

        rows: list[Any] = self._write(take)
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

        self._write(delete)

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

        self._write(give_back)

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        until = now_or(now) + lease_seconds
        rows = [(until, lease.op.person_key, lease.token) for lease in leases]
        if rows:
            self._write(
                lambda conn: conn.executemany(
                    "UPDATE heads SET due_at = MAX(due_at, ?) WHERE person_key = ? AND token = ?",
                    rows,
                )
            )

    def mark_sending(self, lease: Lease) -> None:
        self._write(
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

        self._write(schedule)

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

        self._write(bury)

    # --- dead letters -------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            return self._open_connection().execute(sql, params).fetchall()

    def list_dead(
        self,
        where: DeadLetterFilter = EVERY_DEAD_LETTER,
        *,
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> list[DeadLetter]:
        clause, params = _dead_clause(where, now_or(now))
        rows = self._read(
            f"SELECT {_DEAD_COLUMNS} FROM dead WHERE {clause}"  # noqa: S608 (see _dead_clause)
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
            count: int = self._read("SELECT dead FROM stats", ())[0][0]
            return count
        clause, params = _dead_clause(where, now_or(now))
        found: int = self._read(
            f"SELECT count(*) FROM dead WHERE {clause}",  # noqa: S608 (see _dead_clause)
            params,
        )[0][0]
        return found

    def replay(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        at = now_or(now)
        clause, params = _dead_clause(where, at)

        def put_back(conn: sqlite3.Connection) -> int:
            # Oldest dead letter first, so one person's replayed operations keep their order.
            select = f"SELECT {_OP_COLUMNS}, ? FROM dead WHERE {clause}"  # noqa: S608
            added = conn.execute(
                f"INSERT OR IGNORE INTO intake ({_OP_COLUMNS}, available_at)"
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

        replayed: int = self._write(put_back)
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

        purged: int = self._write(delete)
        return purged

    # --- inspection ---------------------------------------------------------------------------

    def depth(self, *, now: float | None = None) -> Depth:
        at = now_or(now)
        with self._lock:
            conn = self._open_connection()
            conn.execute("BEGIN")  # one snapshot for all three reads
            try:
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
            finally:
                conn.execute("COMMIT")
        leased, scheduled = waiting.get(1, 0), waiting.get(0, 0)
        return Depth(
            ready=pending - leased - scheduled,
            scheduled=scheduled,
            leased=leased,
            dead=dead,
            oldest_waiting_age=None if oldest is None else max(0.0, at - oldest[0]),
        )

    def close(self) -> None:
        self._checkpointer.close()  # first, and outside the lock its last round may be taking
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _admit(conn: sqlite3.Connection) -> bool:
    """Move the oldest ``ADMIT_BATCH`` operations of ``intake`` into ``ops`` (in order);
    whether there were any."""
    until = conn.execute(_ADMIT_UNTIL, (ADMIT_BATCH,)).fetchone()[0]
    if until is None:
        return False
    conn.execute(_ADMIT, (until,))
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
