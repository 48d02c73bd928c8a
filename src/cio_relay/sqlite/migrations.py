"""Versioned schemas: each store lists its forward steps, ``migrate`` brings a file up to date.

A store's schema is a mapping from a version number to the statements that take a file from the
version before to it. A file's version is its ``PRAGMA user_version`` (0 in a new file), so each
store owns its file. ``migrate`` runs every step above the file's version in one
``BEGIN IMMEDIATE`` transaction (two processes opening a new file: one creates the schema, the
other then finds it), and refuses a file whose version is newer than the code knows: an older
cio-relay must not write into a schema it does not understand.

Steps only go forward. A shipped step is never edited; a change is a new step. A store whose
earlier releases kept no version starts with a step of ``CREATE ... IF NOT EXISTS`` statements,
which adopts a file those releases made as it is.

A feature that must share a store's file (so that one transaction writes both: the user sync
state beside the outbox) brings its own steps under a name, ``migrate_named``: its version is a
row of ``schema_versions`` in that file, and ``user_version`` stays the owner's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from cio_relay.errors import ConfigError

__all__ = ["Steps", "latest", "migrate", "migrate_named"]

#: version -> the statements that reach it from the version before.
Steps = Mapping[int, Sequence[str]]


def latest(steps: Steps) -> int:
    """The version a file has once every step ran."""
    return max(steps, default=0)


def migrate(conn: sqlite3.Connection, steps: Steps, *, store: str, path: str | Path) -> int:
    """Run the steps ``conn``'s file lacks; returns the version it had before.

    Raises ``ConfigError`` for a file newer than ``steps`` (written by a later cio-relay).
    """
    newest = latest(steps)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found: int = conn.execute("PRAGMA user_version").fetchone()[0]
        _refuse_newer(found, newest, store, path)
        for version in range(found + 1, newest + 1):
            for statement in steps[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def migrate_named(conn: sqlite3.Connection, steps: Steps, *, name: str, path: str | Path) -> int:
    """``migrate`` for the schema ``name`` inside another store's file (module docstring);
    returns the version it had before."""
    newest = latest(steps)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions"
            " (name TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
        )
        row = conn.execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchone()
        found: int = 0 if row is None else row[0]
        _refuse_newer(found, newest, name, path)
        for version in range(found + 1, newest + 1):
            for statement in steps[version]:
                conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO schema_versions (name, version) VALUES (?, ?)", (name, newest)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _refuse_newer(found: int, newest: int, store: str, path: str | Path) -> None:
    if found > newest:
        raise ConfigError(
            f"{path}: {store} schema version {found} is newer than this cio-relay "
            f"understands ({newest}); upgrade cio-relay"
        )
