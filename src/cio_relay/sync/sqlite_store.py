"""``SqliteUserStore``: the user sync state in the SQLite outbox's own file.

The state is a table of that file (its schema is named ``sync``: ``Database.add_schema``), so
``apply`` writes the person's row and the outbox's rows (``SqliteOutbox.enqueue_in``, the
outbox's one insert) in one ``BEGIN IMMEDIATE`` transaction of the outbox's writer: both
commit, or neither does. The plan runs inside that transaction, on the state as it is under
the write lock, so two processes syncing one person never diff against a stale state.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from cio_relay.kept_json import dumps
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.sqlite import Steps
from cio_relay.sync.store import Change, Plan, PreferenceStamp, UserState

__all__ = ["SCHEMA_NAME", "STEPS", "SqliteUserStore"]

SCHEMA_NAME = "sync"
STEPS: Steps = {
    1: (
        """CREATE TABLE sync_people (
            person_id TEXT PRIMARY KEY,
            attributes_hash TEXT NOT NULL,
            attributes BLOB NOT NULL,
            topics BLOB NOT NULL,
            unsubscribed INTEGER,
            updated_at REAL NOT NULL) WITHOUT ROWID""",
    ),
    # Two-way preferences: each preference field's PreferenceStamp, {"topic_7": [at, source]}.
    2: ("ALTER TABLE sync_people ADD COLUMN preference_times BLOB NOT NULL DEFAULT '{}'",),
}
_SELECT = (
    "SELECT person_id, attributes_hash, attributes, topics, unsubscribed, updated_at,"
    " preference_times FROM sync_people WHERE person_id = ?"
)
_UPSERT = (
    "INSERT OR REPLACE INTO sync_people"
    " (person_id, attributes_hash, attributes, topics, unsubscribed, updated_at,"
    " preference_times) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SqliteUserStore:
    """The ``UserStore`` in ``outbox``'s file (see the module docstring)."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self._sqlite_outbox = outbox
        self.outbox: Outbox = outbox
        self._db = outbox.database
        self._db.add_schema(SCHEMA_NAME, STEPS)

    def __repr__(self) -> str:
        return f"SqliteUserStore({str(self._db.path)!r})"

    def get(self, person_id: str) -> UserState | None:
        rows = self._db.read(_SELECT, (person_id,))
        return _state(rows[0]) if rows else None

    def apply(self, person_id: str, plan: Plan) -> Change | None:
        def write(conn: sqlite3.Connection) -> Change | None:
            row = conn.execute(_SELECT, (person_id,)).fetchone()
            change = plan(None if row is None else _state(row))
            if change is None:
                return None
            if change.state is None:
                conn.execute("DELETE FROM sync_people WHERE person_id = ?", (person_id,))
            else:
                conn.execute(_UPSERT, _row(change.state))
            if change.operations:  # a webhook's change enqueues nothing
                self._sqlite_outbox.enqueue_in(conn, change.operations)
            return change

        change: Change | None = self._db.write(write)
        return change

    def close(self) -> None:
        """Nothing to release: the file is the outbox's, closed by its owner."""


def _row(state: UserState) -> tuple[Any, ...]:
    return (
        state.person_id,
        state.attributes_hash,
        dumps(dict(state.attributes)),
        dumps(dict(state.topics)),
        None if state.unsubscribed is None else int(state.unsubscribed),
        state.updated_at,
        dumps({k: [stamp.at, stamp.source] for k, stamp in state.preference_times.items()}),
    )


def _state(row: Any) -> UserState:
    person_id, hashed, attributes, topics, unsubscribed, updated_at, times = row
    return UserState(
        person_id,
        orjson.loads(attributes),
        hashed,
        orjson.loads(topics),
        None if unsubscribed is None else bool(unsubscribed),
        updated_at,
        {k: PreferenceStamp(at, source) for k, (at, source) in orjson.loads(times).items()},
    )
