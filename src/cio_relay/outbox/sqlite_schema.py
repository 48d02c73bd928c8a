"""The SQLite outbox's schema (versioned steps) and the SQL of its hot paths, in one place.

Tables (see outbox/sqlite.py for why they are shaped so):

- ``intake``: where ``enqueue`` and ``replay`` append; ``lease`` moves its oldest rows into
  ``ops`` (version 2);
- ``ops``: every admitted pending operation, ``seq`` its enqueue order;
- ``heads``: one row per person with pending work, kept right by two triggers;
- ``dead``: dead letters;
- ``stats``: one row of maintained counters (pending, dead).
"""

from __future__ import annotations

from cio_relay.sqlite.migrations import Steps, latest

__all__ = [
    "ADMIT",
    "ADMIT_UNTIL",
    "DEAD_COLUMNS",
    "DUE_HEADS",
    "INSERT",
    "OP_COLUMNS",
    "SCHEMA_VERSION",
    "STEPS",
]

STEPS: Steps = {
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
SCHEMA_VERSION = latest(STEPS)

#: Enqueue: idempotent across ``intake``, ``ops`` and ``dead``.
INSERT = (
    "INSERT OR IGNORE INTO intake (op_id, kind, person_key, payload, created_at, env, available_at)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM ops WHERE op_id = ?1)"
    " AND NOT EXISTS (SELECT 1 FROM dead WHERE op_id = ?1)"
)
#: The last ``seq`` of the oldest N operations in ``intake``, and moving them into ``ops``.
ADMIT_UNTIL = "SELECT max(seq) FROM (SELECT seq FROM intake ORDER BY seq LIMIT ?)"
ADMIT = (
    "INSERT OR IGNORE INTO ops (op_id, kind, person_key, payload, created_at, env, available_at)"
    " SELECT op_id, kind, person_key, payload, created_at, env, available_at FROM intake"
    " WHERE seq <= ? ORDER BY seq"
)
#: The heads due by a time, oldest due first, with their operations: read from the start of
#: the ``heads_due`` index, so it costs O(limit) however deep the queue.
DUE_HEADS = (
    "SELECT h.person_key, o.op_id, o.kind, o.payload, o.created_at, o.env, o.attempts, o.last_error"
    " FROM heads h JOIN ops o ON o.seq = h.seq"
    " WHERE h.due_at <= ? ORDER BY h.due_at, h.seq LIMIT ?"
)
OP_COLUMNS = "op_id, kind, person_key, payload, created_at, env"
DEAD_COLUMNS = "op_id, kind, payload, created_at, env, reason, detail, attempts, dead_at"
