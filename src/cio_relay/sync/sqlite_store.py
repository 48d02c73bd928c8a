"""``SqliteUserStore``: the user sync state in the SQLite outbox's own file.

The state is a table of that file (its schema is named ``sync``: ``Database.add_schema``), so
``apply`` writes the person's row and the outbox's rows (``SqliteOutbox.enqueue_in``, the
outbox's one insert) in one ``BEGIN IMMEDIATE`` transaction of the outbox's writer: both
commit, or neither does. The plan runs inside that transaction, on the state as it is under
the write lock, so two processes syncing one person never diff against a stale state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from cio_relay.kept_json import dumps
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.sqlite import Steps
from cio_relay.sync.runs import RunStatus, SourceMark, SyncRun
from cio_relay.sync.store import Change, Plan, PreferenceStamp, UserState

__all__ = ["SCHEMA_NAME", "STEPS", "SqliteUserStore"]

SCHEMA_NAME = "sync"
_COLUMNS = (
    "person_id, attributes_hash, attributes, topics, unsubscribed, updated_at, preference_times"
)
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
    # Bulk sync: the sync and run that last read each person (runs.SourceMark), and the runs.
    3: (
        "ALTER TABLE sync_people ADD COLUMN sync_name TEXT",
        "ALTER TABLE sync_people ADD COLUMN seen_run TEXT",
        """CREATE INDEX sync_people_by_source ON sync_people (sync_name, person_id, seen_run)
            WHERE sync_name IS NOT NULL""",
        """CREATE TABLE sync_runs (
            run_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            started_at REAL NOT NULL,
            record BLOB NOT NULL)""",
        "CREATE INDEX sync_runs_by_name ON sync_runs (name, started_at)",
    ),
    # A rowid table: a person's row (the attributes) is larger than a WITHOUT ROWID table
    # suits, which split its pages on every other insert (docs/benchmarks.md, issue 14).
    4: (
        """CREATE TABLE sync_people_rowid (
            person_id TEXT PRIMARY KEY,
            attributes_hash TEXT NOT NULL,
            attributes BLOB NOT NULL,
            topics BLOB NOT NULL,
            unsubscribed INTEGER,
            updated_at REAL NOT NULL,
            preference_times BLOB NOT NULL DEFAULT '{}',
            sync_name TEXT,
            seen_run TEXT)""",
        f"INSERT INTO sync_people_rowid SELECT {_COLUMNS}, sync_name, seen_run FROM sync_people",  # noqa: S608
        "DROP TABLE sync_people",
        "ALTER TABLE sync_people_rowid RENAME TO sync_people",
        """CREATE INDEX sync_people_by_source ON sync_people (sync_name, person_id, seen_run)
            WHERE sync_name IS NOT NULL""",
        # A run's status beside its record: the last completed run is looked up by it.
        "ALTER TABLE sync_runs ADD COLUMN status TEXT NOT NULL DEFAULT 'completed'",
        "CREATE INDEX sync_runs_by_status ON sync_runs (name, status, started_at)",
    ),
}
# The f-strings below join constants only (S608 cannot tell).
_SELECT = f"SELECT {_COLUMNS} FROM sync_people WHERE person_id = ?"  # noqa: S608
# An upsert, not INSERT OR REPLACE: a person's mark (sync_name, seen_run) outlives a change.
_UPSERT = (
    f"INSERT INTO sync_people ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
    " ON CONFLICT (person_id) DO UPDATE SET attributes_hash = excluded.attributes_hash,"
    " attributes = excluded.attributes, topics = excluded.topics,"
    " unsubscribed = excluded.unsubscribed, updated_at = excluded.updated_at,"
    " preference_times = excluded.preference_times"
)
# The same, marking the person with a bulk sync's run (runs.SourceMark) in the same statement.
_UPSERT_MARKED = (
    f"INSERT INTO sync_people ({_COLUMNS}, sync_name, seen_run)"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (person_id) DO UPDATE SET attributes_hash = excluded.attributes_hash,"
    " attributes = excluded.attributes, topics = excluded.topics,"
    " unsubscribed = excluded.unsubscribed, updated_at = excluded.updated_at,"
    " preference_times = excluded.preference_times, sync_name = excluded.sync_name,"
    " seen_run = CASE WHEN sync_people.sync_name IS excluded.sync_name"
    " AND sync_people.seen_run > excluded.seen_run THEN sync_people.seen_run"
    " ELSE excluded.seen_run END"
)
# A mark only moves forward within a sync (runs.SourceMark): run ids sort by start.
_MARK = (
    "UPDATE sync_people SET sync_name = ?1, seen_run = CASE WHEN sync_name IS ?1"
    " AND seen_run > ?2 THEN seen_run ELSE ?2 END WHERE person_id = ?3"
)
_UNSEEN = (
    f"SELECT {_COLUMNS} FROM sync_people WHERE sync_name = ? AND seen_run < ?"  # noqa: S608
    " AND person_id > ? ORDER BY person_id LIMIT ?"
)
_SAVE_RUN = (
    "INSERT OR REPLACE INTO sync_runs (run_id, name, started_at, record, status)"
    " VALUES (?, ?, ?, ?, ?)"
)
#: Keys per ``IN (...)``: well under SQLite's bound on a statement's variables.
_KEYS_PER_SELECT = 500


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
        return self.apply_batch([(person_id, plan)], None, None)[0]

    def states(self, keys: Sequence[str]) -> dict[str, UserState]:
        return self._db.read_together(lambda conn: _states_on(conn, keys))

    def apply_batch(
        self,
        plans: Sequence[tuple[str, Plan]],
        mark: SourceMark | None,
        checkpoint: Callable[[], SyncRun] | None,
    ) -> list[Change | None]:
        def write(conn: sqlite3.Connection) -> list[Change | None]:
            current = _states_on(conn, [key for key, _ in plans])
            changes = [plan(current.get(key)) for key, plan in plans]
            run = None if checkpoint is None else checkpoint()
            _store_changes(conn, plans, changes, current, mark)
            operations = [op for change in changes if change for op in change.operations]
            if operations:  # a webhook's change enqueues nothing
                self._sqlite_outbox.enqueue_in(conn, operations)
            if run is not None:
                conn.execute(_SAVE_RUN, _run_row(run))
            return changes

        changes: list[Change | None] = self._db.write(write)
        return changes

    def unseen(self, mark: SourceMark, after: str | None, limit: int) -> list[UserState]:
        rows = self._db.read(_UNSEEN, (mark.name, mark.run_id, after or "", limit))
        return [_state(row) for row in rows]

    def save_run(self, run: SyncRun) -> None:
        self._db.write(lambda conn: conn.execute(_SAVE_RUN, _run_row(run)).rowcount)

    def runs(
        self, name: str | None = None, limit: int = 20, status: RunStatus | None = None
    ) -> list[SyncRun]:
        conditions = [(c, v) for c, v in (("name", name), ("status", status)) if v is not None]
        where = " AND ".join(f"{column} = ?" for column, _ in conditions)
        rows = self._db.read(
            f"SELECT record FROM sync_runs {'WHERE ' + where if where else ''}"  # noqa: S608
            " ORDER BY started_at DESC, run_id DESC LIMIT ?",
            (*(value for _, value in conditions), limit),
        )
        return [SyncRun.from_json(orjson.loads(record)) for (record,) in rows]

    def forget_runs(self, name: str) -> int:
        count: int = self._db.write(
            lambda conn: conn.execute("DELETE FROM sync_runs WHERE name = ?", (name,)).rowcount
        )
        return count

    def close(self) -> None:
        """Nothing to release: the file is the outbox's, closed by its owner."""


def _store_changes(
    conn: sqlite3.Connection,
    plans: Sequence[tuple[str, Plan]],
    changes: list[Change | None],
    current: dict[str, UserState],
    mark: SourceMark | None,
) -> None:
    """Write the changed states (marked, with a ``mark``), delete the forgotten people, and
    mark the unchanged people that exist."""
    states = [c.state for c in changes if c is not None and c.state is not None]
    gone = [(key,) for (key, _), c in zip(plans, changes, strict=True) if c and c.state is None]
    conn.executemany("DELETE FROM sync_people WHERE person_id = ?", gone)
    if mark is None:
        conn.executemany(_UPSERT, [_row(state) for state in states])
        return
    conn.executemany(_UPSERT_MARKED, [(*_row(state), mark.name, mark.run_id) for state in states])
    unchanged = [
        (mark.name, mark.run_id, key)
        for (key, _), c in zip(plans, changes, strict=True)
        if c is None and key in current
    ]
    conn.executemany(_MARK, unchanged)


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
        StoredJson(attributes),
        hashed,
        {} if topics == b"{}" else orjson.loads(topics),
        None if unsubscribed is None else bool(unsubscribed),
        updated_at,
        {}
        if times in (b"{}", "{}")
        else {k: PreferenceStamp(at, s) for k, (at, s) in orjson.loads(times).items()},
    )


class StoredJson(Mapping[str, Any]):
    """A stored JSON object, parsed on first use: a bulk sync compares most people by their
    hash alone and never needs their attributes."""

    __slots__ = ("_parsed", "_raw")

    def __init__(self, raw: bytes | str) -> None:
        self._raw = raw
        self._parsed: dict[str, Any] | None = None

    def _value(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = orjson.loads(self._raw)
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        return self._value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __eq__(self, other: object) -> bool:
        return self._value() == other

    def __repr__(self) -> str:
        return repr(self._value())


def _states_on(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, UserState]:
    found: dict[str, UserState] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT {_COLUMNS} FROM sync_people WHERE person_id IN ({marks})"  # noqa: S608
        found.update((row[0], _state(row)) for row in conn.execute(sql, chunk))
    return found


def _run_row(run: SyncRun) -> tuple[Any, ...]:
    return (run.run_id, run.name, run.started_at, dumps(run.to_json()), run.status)
