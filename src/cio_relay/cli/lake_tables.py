"""Rich tables for ``cio-relay lake query`` and ``cio-relay lake funnel``.

Cells and query column names come from webhooks and the operator's SQL (a ``PIVOT`` makes
column names of data values), so they go through ``plain_text``: shown literally, never read
as Rich markup, control characters made visible.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from cio_relay.lake.base import QueryResult
from cio_relay.lake.funnel import FunnelRow
from cio_relay.plain_text import plain_text

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


def _cell(value: Any) -> Text:
    if value is None:
        return Text()
    if isinstance(value, datetime):
        return Text(value.isoformat(sep=" ", timespec="seconds"))
    if isinstance(value, date):
        return Text(value.isoformat())
    return plain_text(value)


def query_table(result: QueryResult, *, limit: int | None = None) -> Table:
    """A query's rows (up to ``limit``), with the total in the caption."""
    table = Table(caption=f"{len(result.rows)} rows", box=box.SIMPLE_HEAD)
    for name in result.columns:
        table.add_column(plain_text(name))
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
            plain_text(row.message_id),
            *(_count_and_rate(row, count, rate) for _, count, rate in _FUNNEL_COLUMNS),
        )
    return table
