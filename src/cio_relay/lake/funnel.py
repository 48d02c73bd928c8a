"""Delivery funnels: sent -> delivered -> opened -> clicked, and what went wrong, per message.

One row per UTC day and message (a campaign, a broadcast or a transactional message), counting
*distinct deliveries* per metric (``delivery_id``, or the event id when a payload has none), so a
person opening one email five times is one open, and a duplicate webhook changes nothing. Every
delivery channel counts (email, push, sms ...) unless ``channel`` names one; ``customer``
events (subscription changes without a message) never do. An event counts on the day it
happened: an email sent at 23:59 and opened at 00:01 counts its open on the next day.

Rates, each None when its denominator is zero: delivered/sent, opened/delivered,
clicked/opened, bounced/sent, spammed/delivered, unsubscribed/delivered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

__all__ = ["FUNNEL_METRICS", "FunnelBy", "FunnelRow", "funnel_query", "funnel_rows"]

FunnelBy = Literal["campaign", "broadcast", "transactional"]
FUNNEL_METRICS = ("sent", "delivered", "opened", "clicked", "bounced", "spammed", "unsubscribed")
ID_COLUMNS: dict[str, str] = {
    "campaign": "campaign_id",
    "broadcast": "broadcast_id",
    "transactional": "transactional_message_id",
}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class FunnelRow:
    day: date
    by: str  # campaign | broadcast | transactional
    message_id: str
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    spammed: int
    unsubscribed: int

    @property
    def delivery_rate(self) -> float | None:
        return _rate(self.delivered, self.sent)

    @property
    def open_rate(self) -> float | None:
        return _rate(self.opened, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return _rate(self.clicked, self.opened)

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.bounced, self.sent)

    @property
    def spam_rate(self) -> float | None:
        return _rate(self.spammed, self.delivered)

    @property
    def unsubscribe_rate(self) -> float | None:
        return _rate(self.unsubscribed, self.delivered)

    def as_dict(self) -> dict[str, Any]:
        """Counts and rates together (for JSON, the dashboard and tables)."""
        counts = asdict(self)
        return {
            **counts,
            "delivery_rate": self.delivery_rate,
            "open_rate": self.open_rate,
            "click_rate": self.click_rate,
            "bounce_rate": self.bounce_rate,
            "spam_rate": self.spam_rate,
            "unsubscribe_rate": self.unsubscribe_rate,
        }


def funnel_query(
    by: FunnelBy, days: int | None, channel: str | None, today: date | None
) -> tuple[str, list[Any]]:
    """The DuckDB SQL (over the ``events`` view) and its parameters."""
    if by not in ID_COLUMNS:
        raise ValueError(f"by: must be one of {', '.join(ID_COLUMNS)}, got {by!r}")
    if days is not None and days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    id_column = ID_COLUMNS[by]
    counts = ",\n".join(
        f"count(DISTINCT coalesce(delivery_id, event_id)) FILTER (WHERE metric = '{m}') AS {m}"
        for m in FUNNEL_METRICS
    )
    where = [f"{id_column} IS NOT NULL", "object_type <> 'customer'"]
    params: list[Any] = []
    if channel is not None:
        where.append("object_type = ?")
        params.append(channel)
    if days is not None:
        first_day = (today or datetime.now(UTC).date()) - timedelta(days=days - 1)
        where.append("date >= ?")
        params.append(first_day)
    sql = (
        f"SELECT date AS day, {id_column} AS message_id,\n"
        f"{counts}\nFROM events WHERE {' AND '.join(where)}\n"
        "GROUP BY day, message_id ORDER BY day, message_id"
    )
    return sql, params


def funnel_rows(by: FunnelBy, records: list[dict[str, Any]]) -> list[FunnelRow]:
    return [
        FunnelRow(
            day=r["day"],
            by=by,
            message_id=r["message_id"],
            **{m: int(r[m]) for m in FUNNEL_METRICS},
        )
        for r in records
    ]
