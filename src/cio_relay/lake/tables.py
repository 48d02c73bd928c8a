"""Rich tables for ``cio-relay lake query`` and ``cio-relay lake funnel`` (and the dashboard)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from rich.table import Table

from cio_relay.lake.base import QueryResult
from cio_relay.lake.funnel import FUNNEL_METRICS, FunnelRow

__all__ = ["funnel_table", "query_table"]

_RATES = (
    ("delivered/sent", "delivery_rate"),
    ("opened/delivered", "open_rate"),
    ("clicked/opened", "click_rate"),
    ("bounced/sent", "bounce_rate"),
    ("spam/delivered", "spam_rate"),
    ("unsub/delivered", "unsubscribe_rate"),
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def query_table(result: QueryResult, *, limit: int | None = None) -> Table:
    """A query's rows (up to ``limit``), with the total in the caption."""
    table = Table(*result.columns, caption=f"{len(result.rows)} rows")
    shown = result.rows if limit is None else result.rows[:limit]
    for row in shown:
        table.add_row(*(_cell(value) for value in row))
    return table


def funnel_table(rows: list[FunnelRow], *, by: str) -> Table:
    table = Table("day", by, *FUNNEL_METRICS, *(label for label, _ in _RATES), title="Funnel")
    for row in rows:
        table.add_row(
            row.day.isoformat(),
            row.message_id,
            *(str(getattr(row, metric)) for metric in FUNNEL_METRICS),
            *(_percent(getattr(row, rate)) for _, rate in _RATES),
        )
    if not rows:
        table.caption = "no deliveries in this window"
    return table
