"""``MemoryLake``: the ``Lake`` protocol in process memory, queried with the same DuckDB SQL.

For tests and examples. Rows are kept as written (duplicates included, as a real lake may hold
them before compaction); ``compact`` drops duplicate event ids, keeping the first received.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from cio_relay.lake.base import CompactionReport, FunnelFromQuery, QueryResult
from cio_relay.lake.duck import connect, create_events_view, run_query, to_arrow_table
from cio_relay.lake.schema import LakeEvent

__all__ = ["MemoryLake"]


class MemoryLake(FunnelFromQuery):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[LakeEvent] = []

    def write(self, events: Iterable[LakeEvent]) -> None:
        with self._lock:
            self.events.extend(events)

    def flush(self) -> None:
        """Nothing to do: rows are visible as soon as they are written."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        with self._lock:
            table = to_arrow_table(self.events)
        con = connect()
        try:
            con.register("lake_rows", table)
            create_events_view(con, "lake_rows", add_date=True)
            columns, rows = run_query(con, sql, params)
        finally:
            con.close()
        return QueryResult(columns, rows)

    def compact(self) -> CompactionReport:
        with self._lock:
            kept: dict[str, LakeEvent] = {}
            for event in sorted(self.events, key=lambda e: e.received_at):
                kept.setdefault(event.event_id, event)
            removed = len(self.events) - len(kept)
            self.events = sorted(kept.values(), key=lambda e: e.occurred_at)
            return CompactionReport(rows=len(self.events), duplicates_removed=removed)

    def close(self) -> None:
        """Nothing to release."""
