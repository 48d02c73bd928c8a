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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from cio_relay.errors import ConfigError

__all__ = ["Steps", "latest", "migrate"]

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
        if found > newest:
            raise ConfigError(
                f"{path}: {store} schema version {found} is newer than this cio-relay "
                f"understands ({newest}); upgrade cio-relay"
            )
        for version in range(found + 1, newest + 1):
            for statement in steps[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
