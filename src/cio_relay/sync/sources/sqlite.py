"""``SqliteSource``: a bulk sync's rows from an application's SQLite file, opened read-only.

The file is opened as ``file:<path>?mode=ro`` (a write fails, the file is never created) and
read with the same statement as every source: ``SELECT * FROM (<query>) AS s`` (or ``FROM
<table> AS s``) ``WHERE <id> > ? [AND <updated_at> > ?] ORDER BY <id>``, identifiers quoted,
rows stepped ``batch_size`` at a time (SQLite produces them as they are asked for).

SQLite columns have no fixed type, so keys are checked row by row: an integer or a text is a
key; anything else (a REAL, a BLOB) is reported with its row (``SourceRow``). One column may mix
integers and texts: SQLite orders every integer before every text, both in ``ORDER BY`` and in
``> after``, so resuming is exact, but Python cannot compare such keys with each other. A NULL
id is skipped. The updated-at column may hold Unix seconds or ISO 8601 text (what
``CURRENT_TIMESTAMP`` writes, read as UTC); ``since`` compares both as seconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cio_relay.errors import ConfigError
from cio_relay.sync.sources.base import SourceRow
from cio_relay.sync.sources.shape import RowShape, quoted, since_column, statement_text
from cio_relay.sync.spec import SyncSpec

__all__ = ["SqliteSource"]

#: Unix seconds of an updated-at cell whether it holds a number or ISO 8601 text (read as UTC):
#: whole seconds from %s, plus the fraction %f adds to %S. julianday() would be shorter, but
#: its arithmetic is off by microseconds, and a row updated exactly at ``since`` must not pass.
_SECONDS_OF = (
    "(CASE WHEN typeof({column}) IN ('integer', 'real') THEN {column}"
    " ELSE CAST(strftime('%s', {column}) AS INTEGER)"
    " - CAST(strftime('%S', {column}) AS INTEGER) + CAST(strftime('%f', {column}) AS REAL) END)"
)


class SqliteSource:
    """The rows of ``spec`` from the SQLite file at ``path`` (``spec.source`` is
    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``).

    Raises ``ConfigError`` for a missing file, neither or both of ``query`` and ``table``, a
    query or table SQLite refuses, and an id or updated-at column the result lacks.
    """

    def __init__(self, spec: SyncSpec, path: Path) -> None:
        self.description = spec.source
        self._spec = spec
        self._relation = _relation(spec)
        if not path.is_file():
            raise ConfigError(f"source: no SQLite file at {str(path)!r}")
        # check_same_thread off: a run may open the source in one thread and read it in another.
        self._conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False
        )
        try:
            self._shape = RowShape.of(self._columns(), spec)
        except BaseException:
            self._conn.close()
            raise

    def _columns(self) -> list[str]:
        try:
            cursor = self._conn.execute(f"SELECT * FROM {self._relation} AS s LIMIT 0")  # noqa: S608
        except sqlite3.Error as exc:
            where = (
                f"table {self._spec.table!r}"
                if self._spec.table is not None
                else f"query {statement_text(self._spec.query or '')[:80]!r}"
            )
            raise ConfigError(f"{where}: {exc}") from None
        columns = [column[0] for column in cursor.description]
        cursor.close()
        return columns

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        """Rows with key > ``after`` and updated-at > ``since``, by key, ``batch_size`` a list."""
        statement, params = self._select(after, since)
        cursor = self._conn.execute(statement, params)
        try:
            while rows := cursor.fetchmany(batch_size):
                yield [self._shape.row(row) for row in rows]
        finally:
            cursor.close()

    def _select(self, after: Any | None, since: float | None) -> tuple[str, list[Any]]:
        key = quoted(self._spec.id_column)
        conditions = [f"{key} IS NOT NULL" if after is None else f"{key} > ?"]
        params: list[Any] = [] if after is None else [after]
        if since is not None:
            column = quoted(since_column(self._spec))
            conditions.append(_SECONDS_OF.format(column=column) + " > ?")
            params.append(since)
        where = " AND ".join(conditions)
        # Identifiers are quoted; values are parameters; the relation is the operator's own.
        statement = f"SELECT * FROM {self._relation} AS s WHERE {where} ORDER BY {key}"  # noqa: S608
        return statement, params

    def newest_updated_at(self) -> float | None:
        if self._spec.updated_at_column is None:
            return None
        seconds = _SECONDS_OF.format(column=quoted(self._spec.updated_at_column))
        (newest,) = self._conn.execute(
            f"SELECT max({seconds}) FROM {self._relation} AS s"  # noqa: S608 (quoted, as above)
        ).fetchone()
        return None if newest is None else float(newest)

    def close(self) -> None:
        self._conn.close()


def _relation(spec: SyncSpec) -> str:
    if spec.query is not None and spec.table is not None:
        raise ConfigError("source: give query or table, not both")
    if spec.table is not None:
        if not spec.table.strip():
            raise ConfigError("table: an empty name")
        return ".".join(quoted(part) for part in spec.table.split("."))
    if spec.query is None or not statement_text(spec.query):
        raise ConfigError(f"source {spec.source!r}: a database source needs a query or a table")
    return f"({statement_text(spec.query)})"
