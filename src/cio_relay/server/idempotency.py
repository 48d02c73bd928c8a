"""``Idempotency-Key``: the same key sends the same operations once, for ``retention`` seconds.

The outbox cannot be the memory for this: it forgets an op id once the operation is delivered.
So a small SQLite table beside it maps (API key scope, idempotency key) to the request's
fingerprint and the op ids it was given. The key itself is stored hashed.

A claim is written as *pending* before its operations are enqueued and marked *done* after, in
the same thread and with the group's other claims. If the process dies between the two, the
pending row still holds the op ids: a retry with the same key re-enqueues the operations under
those same ids (the outbox stores an op id once), instead of minting new ids and sending twice.
The one window left is a crash after the enqueue and before ``done`` while a worker has already
delivered: the retry then re-enqueues ids the outbox has forgotten. Track events carry the op id
as their event id, so Customer.io drops the duplicate; a transactional send in that short window
could go twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from cio_relay.sqlite import Database, Durability, Steps

__all__ = ["Claim", "IdempotencyStore", "Remembered", "fingerprint"]

#: Version 1 is the schema of the releases that kept no version (``IF NOT EXISTS``: it adopts
#: their files as they are).
_STEPS: Steps = {
    1: (
        """CREATE TABLE IF NOT EXISTS idempotency (
            scope TEXT NOT NULL,
            key_hash TEXT NOT NULL,
            fingerprint BLOB NOT NULL,
            op_ids BLOB NOT NULL,
            done INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (scope, key_hash)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS idempotency_created_at ON idempotency (created_at)",
    ),
}
_EXPIRE_EVERY = 60.0  # seconds between sweeps of expired keys


def fingerprint(method: str, path: str, canonical_body: bytes) -> bytes:
    """What makes two requests "the same": method, path and the body's canonical JSON."""
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical_body).digest()


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Remembered:
    fingerprint: bytes
    op_ids: list[str]
    done: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A key taken by a request: written pending with the group, then marked done."""

    scope: str
    key: str
    fingerprint: bytes
    op_ids: tuple[str, ...]

    @property
    def key_hash(self) -> str:
        return _key_hash(self.key)


class IdempotencyStore:
    """Idempotency keys in SQLite (the SQLite layer: ``cio_relay.sqlite``), in their own file,
    with the outbox's ``durability``. Thread-safe; lookups do not wait for writes."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention: float = 24 * 3600.0,
        durability: Durability = "process",
    ) -> None:
        self.retention = retention
        self._db = Database(path, store="idempotency store", steps=_STEPS, durability=durability)
        self._expired_at = 0.0

    def lookup(self, scope: str, key: str, now: float | None = None) -> Remembered | None:
        """What ``key`` was used for within the retention, or None."""
        oldest = (time.time() if now is None else now) - self.retention
        rows = self._db.read(
            "SELECT fingerprint, op_ids, done FROM idempotency "
            "WHERE scope = ? AND key_hash = ? AND created_at >= ?",
            (scope, _key_hash(key), oldest),
        )
        if not rows:
            return None
        fingerprint, op_ids, done = rows[0]
        return Remembered(bytes(fingerprint), orjson.loads(op_ids), bool(done))

    def reserve(self, claims: Sequence[Claim], now: float | None = None) -> None:
        """Write ``claims`` as pending, in one transaction."""
        if not claims:
            return
        created = time.time() if now is None else now
        rows = [
            (c.scope, c.key_hash, c.fingerprint, orjson.dumps(list(c.op_ids)), created)
            for c in claims
        ]
        self._write_rows(
            "INSERT OR REPLACE INTO idempotency "
            "(scope, key_hash, fingerprint, op_ids, done, created_at) VALUES (?, ?, ?, ?, 0, ?)",
            rows,
        )
        self._maybe_expire(created)

    def complete(self, claims: Sequence[Claim]) -> None:
        """The claims' operations are durable: later requests with the keys are replays."""
        self._write_rows(
            "UPDATE idempotency SET done = 1 WHERE scope = ? AND key_hash = ?",
            [(c.scope, c.key_hash) for c in claims],
        )

    def forget(self, claims: Sequence[Claim]) -> None:
        """The operations were refused (backpressure): the keys are free again."""
        self._write_rows(
            "DELETE FROM idempotency WHERE scope = ? AND key_hash = ?",
            [(c.scope, c.key_hash) for c in claims],
        )

    def expire(self, now: float | None = None) -> int:
        """Delete keys older than the retention; returns how many."""
        oldest = (time.time() if now is None else now) - self.retention

        def delete(conn: sqlite3.Connection) -> int:
            deleted: int = conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (oldest,)
            ).rowcount
            return deleted

        return self._db.write(delete)

    def _maybe_expire(self, now: float) -> None:
        if now - self._expired_at >= _EXPIRE_EVERY:
            self._expired_at = now
            self.expire(now)

    def _write_rows(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        if rows:
            self._db.write(lambda conn: conn.executemany(sql, rows))

    def close(self) -> None:
        self._db.close()
