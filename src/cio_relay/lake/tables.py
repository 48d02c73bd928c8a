"""Rich tables for ``cio-relay lake query`` and ``cio-relay lake funnel`` (and the dashboard)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from rich import box
from rich.table import Table

from cio_relay.lake.base import QueryResult
from cio_relay.lake.funnel import FunnelRow

__all__ = ["funnel_table", "query_table"]

#: (column header, count attribute, rate attribute or None); the rate follows the count.
_FUNNEL_COLUMNS = (
    ("sent", "sent", None),
    ("deliv", "delivered", "delivery_rate"),
    ("opened", "opened", "open_rate"),
    ("clicked", "clicked", "click_rate"),
    ("bounced", "bounced", "bounce_rate"),
    ("spam", "spammed", "spam_rate"),
    ("unsub", "unsubscribed", "unsubscribe_rate"),
)
_RATE_NOTE = (
    "rates: deliv/sent, opened/deliv, clicked/opened, bounced/sent, spam/deliv, unsub/deliv"
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def query_table(result: QueryResult, *, limit: int | None = None) -> Table:
    """A query's rows (up to ``limit``), with the total in the caption."""
    table = Table(*result.columns, caption=f"{len(result.rows)} rows", box=box.SIMPLE_HEAD)
    shown = result.rows if limit is None else result.rows[:limit]
    for row in shown:
        table.add_row(*(_cell(value) for value in row))
    return table


def _count_and_rate(row: FunnelRow, count: str, rate: str | None) -> str:
    value = str(getattr(row, count))
    if rate is None:
        return value
    share = getattr(row, rate)
    return value if share is None else f"{value} [dim]({share:.0%})[/]"


def funnel_table(rows: list[FunnelRow], *, by: str) -> Table:
    """One row per day and message: counts, each with its rate in brackets."""
    caption = _RATE_NOTE if rows else "no deliveries in this window"
    table = Table(title="Delivery funnel", caption=caption, box=box.SIMPLE_HEAD)
    table.add_column("day", no_wrap=True)
    table.add_column(by, no_wrap=True)
    for header, _, _ in _FUNNEL_COLUMNS:
        table.add_column(header, justify="right")  # narrow terminals wrap "3 (60%)" in two
    for row in rows:
        table.add_row(
            row.day.isoformat(),
            row.message_id,
            *(_count_and_rate(row, count, rate) for _, count, rate in _FUNNEL_COLUMNS),
        )
    return table
