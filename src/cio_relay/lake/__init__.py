"""The delivery-event data lake: one schema, a ``Lake`` protocol and its backends.

``ParquetLake`` (the embedded default) needs the ``lake`` extra (pyarrow, duckdb); they are
imported when a lake is used, not when this package is.
"""

from cio_relay.lake.base import CompactionReport, Lake, QueryResult
from cio_relay.lake.factory import open_lake
from cio_relay.lake.funnel import FUNNEL_METRICS, FunnelBy, FunnelRow
from cio_relay.lake.memory import MemoryLake
from cio_relay.lake.parquet import ParquetLake
from cio_relay.lake.schema import COLUMNS, LakeEvent, arrow_schema, bigquery_schema

__all__ = [
    "COLUMNS",
    "FUNNEL_METRICS",
    "CompactionReport",
    "FunnelBy",
    "FunnelRow",
    "Lake",
    "LakeEvent",
    "MemoryLake",
    "ParquetLake",
    "QueryResult",
    "arrow_schema",
    "bigquery_schema",
    "open_lake",
]
