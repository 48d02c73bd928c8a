"""The ``Lake`` protocol: where every delivery event lands for analytics.

Backends: ``MemoryLake`` (tests), ``ParquetLake`` (the embedded default: Parquet partitioned by
day, queried with DuckDB). Every backend exposes the same SQL surface: a view named ``events``
with the columns of ``schema.COLUMNS`` plus ``date`` (the UTC day of ``occurred_at``).

Delivery into a lake is at least once (the pipeline re-sends what it cannot prove was flushed),
so a lake may briefly hold an ``event_id`` twice; ``compact`` removes such duplicates and the
funnel counts distinct deliveries, so neither changes a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, runtime_checkable

from cio_relay.lake.funnel import FunnelBy, FunnelRow, funnel_query, funnel_rows
from cio_relay.lake.schema import LakeEvent

__all__ = ["CompactionReport", "FunnelFromQuery", "Lake", "QueryResult"]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of a SQL query, with the column names in order."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What ``compact`` did: per day compacted, files before -> 1, rows kept and duplicates."""

    days: list[str] = field(default_factory=list)
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    duplicates_removed: int = 0


class FunnelFromQuery:
    """The funnel of every lake that answers SQL: one query (``funnel.py``) over ``events``."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        raise NotImplementedError

    def funnel(
        self,
        *,
        by: FunnelBy = "campaign",
        days: int | None = 30,
        channel: str | None = None,
        today: date | None = None,
    ) -> list[FunnelRow]:
        sql, params = funnel_query(by, days, channel, today)
        return funnel_rows(by, self.query(sql, params).as_dicts())


@runtime_checkable
class Lake(Protocol):
    """A sink for delivery events with SQL and funnel queries."""

    def write(self, events: Iterable[LakeEvent]) -> None:
        """Accept rows; they may be buffered until ``flush`` (or the backend's own policy)."""

    def flush(self) -> None:
        """Make every row written so far durable and visible to queries."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Run DuckDB SQL against the ``events`` view (buffered rows are flushed first)."""

    def funnel(
        self,
        *,
        by: FunnelBy = "campaign",
        days: int | None = 30,
        channel: str | None = None,
        today: date | None = None,
    ) -> list[FunnelRow]:
        """Sent/delivered/opened/... per message per day, with rates (see ``funnel.py``)."""

    def compact(self) -> CompactionReport:
        """Merge small files (one per day) and drop duplicate event ids, never losing a row."""

    def close(self) -> None:
        """Flush and release resources. Idempotent."""
