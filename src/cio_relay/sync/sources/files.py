"""``FileSource``: a bulk sync's rows from a CSV or Parquet file, read by DuckDB.

The file is the table: ``SELECT * FROM read_csv(path) AS s`` (or ``read_parquet``) ``WHERE <id>
> ? [AND <updated_at> > ?] ORDER BY <id>``, identifiers quoted, ``batch_size`` rows per
``fetchmany``. A path with ``*``, ``?`` or ``[`` is a glob, read as one table.

Parquet columns carry their types. CSV columns get theirs from DuckDB's sniffer, which reads
the whole file for it (``sample_size=-1``): a column is BIGINT only when every cell is an
integer (``007`` keeps it text), TIMESTAMP when every cell is a time, and so on; an empty cell
is NULL. Keys of one file therefore share one type: integers ordered as numbers, or texts
ordered by their bytes (DuckDB's binary collation, which is Python's ``str`` order). The
session time zone is UTC, so a time without zone reads as UTC. A NULL id is skipped.

DuckDB (``pip install 'cio-relay[lake]'``) is imported only when a source is opened.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cio_relay.errors import ConfigError
from cio_relay.sync.sources.base import SourceRow
from cio_relay.sync.sources.shape import RowShape, quoted, since_column
from cio_relay.sync.sources.values import SinceAs, since_parameter, updated_at_seconds
from cio_relay.sync.spec import SyncSpec

if TYPE_CHECKING:
    import duckdb

__all__ = ["FileKind", "FileSource"]

FileKind = Literal["csv", "parquet"]

_READERS: dict[FileKind, str] = {
    "csv": "read_csv(?, sample_size=-1)",
    "parquet": "read_parquet(?)",
}
_INT_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_KEY_TYPES = _INT_TYPES | {"VARCHAR", "UUID"}
#: How ``since`` is passed for an updated-at column of each type (numbers: as seconds).
_TIME_TYPES: dict[str, SinceAs] = {
    "TIMESTAMP WITH TIME ZONE": "aware",
    "TIMESTAMP": "naive",
    "TIMESTAMP_S": "naive",
    "TIMESTAMP_MS": "naive",
    "TIMESTAMP_NS": "naive",
    "DATE": "naive",
}
_NUMBER_TYPES = _INT_TYPES | {"FLOAT", "DOUBLE"}


class FileSource:
    """The rows of the ``kind`` file (or glob) at ``path``.

    Raises ``ConfigError`` when DuckDB is not installed, for a ``query`` or ``table`` (a file
    is its own table), a path that matches no file, a file DuckDB cannot read, and an id or
    updated-at column the file lacks or cannot order by.
    """

    def __init__(self, spec: SyncSpec, path: str, kind: FileKind) -> None:
        try:
            import duckdb
        except ImportError:
            raise ConfigError(
                f"source: a {kind} source needs DuckDB: pip install 'cio-relay[lake]'"
            ) from None
        for field in ("query", "table"):
            if getattr(spec, field) is not None:
                raise ConfigError(f"{field}: a {kind} file is its own table; give no {field}")
        if not _matches_a_file(path):
            raise ConfigError(f"source: no {kind} file at {path!r}")
        self.description = spec.source
        self._spec = spec
        self._path = path
        self._reader = _READERS[kind]
        self._conn: duckdb.DuckDBPyConnection = duckdb.connect(":memory:")
        try:
            self._conn.execute("SET TimeZone = 'UTC'")
            self._shape, self._since_as = self._read_columns(duckdb.Error)
        except BaseException:
            self._conn.close()
            raise

    def _read_columns(self, duckdb_error: type[Exception]) -> tuple[RowShape, SinceAs | None]:
        try:
            described = self._conn.execute(
                f"DESCRIBE SELECT * FROM {self._reader} AS s",  # noqa: S608 (a fixed reader)
                [self._path],
            ).fetchall()
        except duckdb_error as exc:
            raise ConfigError(f"source: {self._path!r} cannot be read: {exc}") from None
        columns = [str(row[0]) for row in described]
        types = [str(row[1]) for row in described]
        shape = RowShape.of(columns, self._spec, key_types=(object,))
        key_type = types[shape.key_index]
        if key_type not in _KEY_TYPES:
            raise ConfigError(
                f"id_column: {self._spec.id_column!r} has type {key_type}; an identifier is an"
                " integer, text or UUID"
            )
        if shape.updated_at_index is None:
            return shape, None
        return shape, _since_kind(self._spec.updated_at_column, types[shape.updated_at_index])

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        """Rows with key > ``after`` and updated-at > ``since``, by key, ``batch_size`` a list."""
        statement, params = self._select(after, since)
        # A cursor of its own: another read on the connection must not end this one's result.
        cursor = self._conn.cursor()
        try:
            cursor.execute(statement, params)
            while rows := cursor.fetchmany(batch_size):
                yield [self._shape.row(row) for row in rows]
        finally:
            cursor.close()

    def _select(self, after: Any | None, since: float | None) -> tuple[str, list[Any]]:
        key = quoted(self._spec.id_column)
        conditions = [f"{key} IS NOT NULL" if after is None else f"{key} > ?"]
        params: list[Any] = [self._path] if after is None else [self._path, after]
        if since is not None:
            column = since_column(self._spec)
            assert self._since_as is not None  # found whenever the spec names the column
            conditions.append(f"{quoted(column)} > ?")
            params.append(since_parameter(since, self._since_as))
        where = " AND ".join(conditions)
        statement = f"SELECT * FROM {self._reader} AS s WHERE {where} ORDER BY {key}"  # noqa: S608
        return statement, params

    def newest_updated_at(self) -> float | None:
        if self._spec.updated_at_column is None:
            return None
        column = quoted(self._spec.updated_at_column)
        (newest,) = self._conn.execute(
            f"SELECT max({column}) FROM {self._reader} AS s",  # noqa: S608 (a fixed reader)
            [self._path],
        ).fetchone() or (None,)
        seconds = updated_at_seconds(newest)
        return seconds if isinstance(seconds, float) else None

    def close(self) -> None:
        self._conn.close()


def _matches_a_file(path: str) -> bool:
    if any(char in path for char in "*?["):
        return any(Path(found).is_file() for found in glob.iglob(path, recursive=True))
    return Path(path).is_file()


def _since_kind(column: str | None, type_name: str) -> SinceAs:
    if type_name in _TIME_TYPES:
        return _TIME_TYPES[type_name]
    if type_name in _NUMBER_TYPES or type_name.startswith("DECIMAL"):
        return "seconds"
    raise ConfigError(
        f"updated_at_column: {column!r} has type {type_name}; expected a timestamp, a date or"
        " a number of Unix seconds"
    )
