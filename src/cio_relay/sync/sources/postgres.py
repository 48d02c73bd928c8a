"""``PostgresSource``: a bulk sync's rows from PostgreSQL through a server-side cursor.

The rows are read as ``SELECT * FROM (<query>) AS s`` (or ``FROM <table> AS s``) ``WHERE <id>
> %s [AND <updated_at> > %s] ORDER BY <id>``, identifiers composed by ``psycopg.sql``, through
a named cursor: the server keeps the result and hands over ``batch_size`` rows per ``FETCH``, so
a table of millions is never held in memory here. Every transaction is ``READ ONLY``: a query
that would write (through a function, say) fails instead. One read is one transaction, held
open until its last batch (or until the generator is closed); read one at a time.

Opening reads the result's columns and their types once (no row): an id column that is not an
integer, text or uuid, or an updated-at column that is not a timestamp, date or number, is a
``ConfigError`` then. A NULL id is skipped: a row without an identifier is nobody to sync. Text
keys are ordered by the column's collation, in the database, both for ``ORDER BY`` and for
``> after``, so resuming is exact whatever the collation; it need not be Python's ``str`` order.

psycopg 3 (``pip install 'cio-relay[postgres]'``) is imported only when a source is opened.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from cio_relay.errors import ConfigError
from cio_relay.sync.sources.base import SourceRow, Unconvertible, without_password
from cio_relay.sync.sources.shape import RowShape, since_column, statement_text
from cio_relay.sync.sources.values import SinceAs, since_parameter, updated_at_seconds
from cio_relay.sync.spec import SyncSpec

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["PostgresSource"]

#: pg_type.typcategory of the types a key may have: strings (text, varchar, citext ...).
_TEXT_CATEGORY = "S"
_INT_TYPES = frozenset({"int2", "int4", "int8"})
#: How ``since`` is passed for an updated-at column of each type (the others are refused).
_SINCE_BY_TYPE: dict[str, SinceAs] = {"timestamptz": "aware", "timestamp": "naive", "date": "naive"}
_NUMBER_CATEGORY = "N"
_CONNECT_SECONDS = 10


class PostgresSource:
    """The rows of ``spec`` from the PostgreSQL database at ``spec.source``.

    Raises ``ConfigError`` when psycopg is not installed, when the spec names neither or both
    of ``query`` and ``table``, for a query or table the database refuses, and for an id or
    updated-at column the result lacks or cannot order by. A database that cannot be reached
    raises psycopg's ``OperationalError`` (its message names no password).
    """

    def __init__(self, spec: SyncSpec) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "source: a PostgreSQL source needs psycopg: pip install 'cio-relay[postgres]'"
            ) from None
        self.description = without_password(spec.source)
        self._spec = spec
        self._relation = _relation(spec)
        options: dict[str, Any] = {"application_name": f"cio-relay sync {spec.name}"}
        if "connect_timeout" not in _url_parameters(spec.source):
            options["connect_timeout"] = _CONNECT_SECONDS  # libpq would wait forever
        self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(spec.source, **options)
        self._conn.read_only = True
        _load_infinite_times_as_unconvertible(self._conn)
        _load_json_with_orjson(self._conn)
        try:
            self._shape, self._since_as = self._read_columns()
        except BaseException:
            self._conn.close()
            raise

    def _read_columns(self) -> tuple[RowShape, SinceAs | None]:
        import psycopg
        from psycopg import sql

        probe = sql.SQL("SELECT * FROM {} AS s LIMIT 0").format(self._relation)
        try:
            with self._conn.cursor() as cursor:
                cursor.execute(probe, ())
                described = cursor.description or []
                columns = [column.name for column in described]
                type_oids = [column.type_code for column in described]
                types = self._type_names(cursor, type_oids)
        except psycopg.errors.ProgrammingError as exc:
            raise ConfigError(f"{self._where()}: {exc.diag.message_primary or exc}") from None
        finally:
            self._conn.rollback()
        shape = RowShape.of(columns, self._spec, key_types=(int, str, uuid.UUID))
        _check_key_type(self._spec.id_column, *types[shape.key_index])
        since_as = None
        if shape.updated_at_index is not None:
            since_as = _since_kind(self._spec.updated_at_column, *types[shape.updated_at_index])
        return shape, since_as

    @staticmethod
    def _type_names(
        cursor: psycopg.Cursor[tuple[Any, ...]], oids: list[int]
    ) -> list[tuple[str, str]]:
        cursor.execute("SELECT oid, typname, typcategory FROM pg_type WHERE oid = ANY(%s)", (oids,))
        found = {oid: (name, category) for oid, name, category in cursor.fetchall()}
        return [found.get(oid, ("unknown", "X")) for oid in oids]

    def _where(self) -> str:
        if self._spec.table is not None:
            return f"table {self._spec.table!r}"
        return f"query {statement_text(self._spec.query or '')[:80]!r}"

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        """Rows with key > ``after`` and updated-at > ``since``, by key, ``batch_size`` per
        ``FETCH`` of one server-side cursor; one read-only transaction for the whole read."""
        statement, params = self._select(after, since)
        cursor = self._conn.cursor(name=f"cio_relay_sync_{uuid.uuid4().hex[:16]}")
        try:
            cursor.execute(statement, params)
            while rows := cursor.fetchmany(batch_size):
                yield [self._shape.row(row) for row in rows]
        finally:
            if not self._conn.closed:
                cursor.close()
                self._conn.rollback()

    def _select(self, after: Any | None, since: float | None) -> tuple[sql.Composed, list[Any]]:
        from psycopg import sql

        key = sql.Identifier(self._spec.id_column)
        if after is None:
            conditions = [sql.SQL("{} IS NOT NULL").format(key)]
            params: list[Any] = []
        else:
            conditions = [sql.SQL("{} > %s").format(key)]
            params = [after]
        if since is not None:
            column = sql.Identifier(since_column(self._spec))
            assert self._since_as is not None  # found whenever the spec names the column
            conditions.append(sql.SQL("{} > %s").format(column))
            params.append(since_parameter(since, self._since_as))
        statement = sql.SQL("SELECT * FROM {} AS s WHERE {} ORDER BY {}").format(
            self._relation, sql.SQL(" AND ").join(conditions), key
        )
        return statement, params

    def newest_updated_at(self) -> float | None:
        from psycopg import sql

        if self._spec.updated_at_column is None:
            return None
        column = sql.Identifier(self._spec.updated_at_column)
        statement = sql.SQL("SELECT max({}) FROM {} AS s").format(column, self._relation)
        try:
            (newest,) = self._conn.execute(statement).fetchone() or (None,)
        finally:
            self._conn.rollback()
        seconds = updated_at_seconds(newest)
        return seconds if isinstance(seconds, float) else None

    def close(self) -> None:
        self._conn.close()


def _url_parameters(url: str) -> dict[str, Any]:
    import psycopg

    try:
        return psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        # libpq quotes the whole URL, password and all.
        reason = str(exc).strip().replace(url, without_password(url))
        raise ConfigError(f"source {without_password(url)!r}: {reason}") from None


def _relation(spec: SyncSpec) -> sql.Composable:
    from psycopg import sql

    if spec.query is not None and spec.table is not None:
        raise ConfigError("source: give query or table, not both")
    if spec.table is not None:
        if not spec.table.strip():
            raise ConfigError("table: an empty name")
        # schema.table: each part quoted on its own, so a mixed-case name keeps its case.
        return sql.Identifier(*spec.table.split("."))
    if spec.query is None or not statement_text(spec.query):
        raise ConfigError(
            f"source {without_password(spec.source)!r}: a database source needs a query or a table"
        )
    # The query is the operator's own SQL; '%' is doubled because the statement has parameters.
    return sql.SQL("({})").format(sql.SQL(statement_text(spec.query).replace("%", "%%")))


def _check_key_type(column: str, type_name: str, category: str) -> None:
    if type_name in _INT_TYPES or type_name == "uuid" or category == _TEXT_CATEGORY:
        return
    raise ConfigError(
        f"id_column: {column!r} has type {type_name}; an identifier is an integer, text or uuid"
        f" (cast it in the query: {column}::text or {column}::bigint)"
    )


def _since_kind(column: str | None, type_name: str, category: str) -> SinceAs:
    if type_name in _SINCE_BY_TYPE:
        return _SINCE_BY_TYPE[type_name]
    if category == _NUMBER_CATEGORY:
        return "seconds"
    raise ConfigError(
        f"updated_at_column: {column!r} has type {type_name}; expected a timestamp, a date"
        " or a number of Unix seconds"
    )


def _load_infinite_times_as_unconvertible(conn: psycopg.Connection[Any]) -> None:
    """psycopg refuses ``infinity`` in a date or a timestamp (``DataError``, which would stop the
    whole read); these loaders make such a cell an ``Unconvertible``, so only its row is
    reported. Each wraps the loader psycopg would use (its compiled one when installed, which
    cannot be subclassed and parses several times faster than the pure-Python one)."""
    from psycopg import postgres
    from psycopg.pq import Format

    for type_name in ("date", "timestamp", "timestamptz"):
        oid = postgres.types[type_name].oid
        for format_ in (Format.TEXT, Format.BINARY):
            inner = conn.adapters.get_loader(oid, format_)
            if inner is not None:
                conn.adapters.register_loader(oid, _tolerant(inner, format_))


def _tolerant(inner: type[Any], format_: Any) -> type[Any]:
    import psycopg
    from psycopg.adapt import Loader

    class Tolerant(Loader):
        format = format_

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._inner_load = inner(oid, context).load

        def load(self, data: Any) -> Any:
            try:
                return self._inner_load(data)
            except psycopg.DataError:
                shown = bytes(data).decode(errors="replace")[:40] if format_ == 0 else "a value"
                return Unconvertible(f"{shown!r} has no JSON form (no finite time)")

    return Tolerant


#: 19 digits in a row: a number that may be an integer past 64 bits, which orjson would turn
#: into a float without a word; such a document is read by ``json`` (exact integers), and
#: values.py reports the integer.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _load_json_with_orjson(conn: psycopg.Connection[Any]) -> None:
    """json and jsonb cells parsed by orjson (psycopg's default is ``json.loads``)."""
    from psycopg.types.json import set_json_loads

    set_json_loads(_json_loads, conn)


def _json_loads(data: bytes | str) -> Any:
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_DIGITS.search(raw) is not None:
        return json.loads(raw)
    return orjson.loads(raw)
