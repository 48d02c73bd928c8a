"""DuckDB plumbing shared by the lake backends: a UTC connection, the ``events`` view, results.

The connection is a sandbox, because lake queries run the operator's SQL (``cio-relay lake
query``) and DuckDB can otherwise read any file on the host (``read_csv('/etc/passwd')``),
write one (``COPY ... TO``), attach databases and install extensions. External access is off,
with no directory or path allowed, not even the lake's: the lake's rows reach DuckDB as Arrow
data (a registered ``pyarrow.dataset`` that pyarrow reads, see ``parquet.py``), so no SQL can
overwrite or add a lake file either. Extension auto-loading, Python variables as tables and the
spill directory (a writable place) are off too, and the configuration is locked so the SQL
cannot turn any of it back on. Queries therefore run in memory (DuckDB's default limit, 80 % of
RAM); the funnel and compaction already work on bounded data.

Results are fetched through Arrow (``to_arrow_table``) because DuckDB's own conversion of
``TIMESTAMP WITH TIME ZONE`` values needs ``pytz``, which we do not depend on; Arrow converts
them with the standard ``zoneinfo``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from cio_relay.lake.schema import COLUMN_NAMES, TIMESTAMP_COLUMNS, LakeEvent, arrow_schema

__all__ = ["connect", "create_events_view", "run_query", "to_arrow_table"]

#: The ``date`` column every backend's ``events`` view adds: the UTC day of ``occurred_at``.
DATE_EXPRESSION = "CAST(timezone('UTC', occurred_at) AS DATE)"


_SANDBOX: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
    "temp_directory": "",
}


def connect() -> Any:
    """An in-memory DuckDB connection in UTC that can reach no file (see the module docstring)."""
    import duckdb

    con = duckdb.connect(":memory:", config=_SANDBOX)
    con.execute("SET TimeZone = 'UTC'")  # not accepted in ``config``
    con.execute("SET lock_configuration = true")
    return con


def to_arrow_table(events: Sequence[LakeEvent]) -> Any:
    """Rows to a ``pyarrow.Table`` of ``arrow_schema()``: column-wise, no per-row objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = arrow_schema()
    if not events:
        return schema.empty_table()
    arrays = []
    for index, (name, field) in enumerate(zip(COLUMN_NAMES, schema, strict=True)):
        # One C-level pass per column. Not zip(*events): that makes an iterator object per
        # row, and 10^5 of them set off full garbage collections.
        values = list(map(itemgetter(index), events))
        if name in TIMESTAMP_COLUMNS:
            seconds = pa.array(values, pa.float64())
            micros = pc.round(pc.multiply(seconds, 1_000_000.0)).cast(pa.int64())
            arrays.append(micros.cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def create_events_view(con: Any, source: str, *, add_date: bool) -> None:
    """``events`` = ``source`` (a table expression), plus ``date`` unless the source has it.

    Hive-partitioned Parquet already has ``date`` (from ``date=YYYY-MM-DD/``), and filtering on
    it lets DuckDB skip whole days of files.
    """
    select = f"SELECT *, {DATE_EXPRESSION} AS date" if add_date else "SELECT *"
    con.execute(f"CREATE OR REPLACE VIEW events AS {select} FROM {source}")


def register_rows(con: Any, name: str, events: Iterable[LakeEvent]) -> None:
    con.register(name, to_arrow_table(list(events)))


def run_query(
    con: Any, sql: str, params: Sequence[Any] = ()
) -> tuple[list[str], list[tuple[Any, ...]]]:
    relation = con.sql(sql, params=list(params) if params else None)
    if relation is None:
        return [], []
    table = relation.to_arrow_table()
    columns = list(table.column_names)
    rows = list(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)), strict=True))
    return columns, rows
