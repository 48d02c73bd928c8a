"""The delivery-event schema: defined once here, mirrored by every lake backend.

One row per reporting-webhook event. ``LakeEvent`` is the row as Python sees it; ``COLUMNS``
lists name, type and meaning; ``arrow_schema()`` is the Parquet schema and
``bigquery_schema()`` the same as BigQuery ``TableFieldSchema`` dicts (a table partitioned by
DAY on ``occurred_at`` mirrors the Parquet ``date=YYYY-MM-DD/`` layout).

Ids are text everywhere: Customer.io sends some as numbers (``campaign_id: 23``) and some as
strings, and a warehouse column must not change type with the payload. Timestamps are unix
seconds (float) in ``LakeEvent`` because that is what webhooks carry and what converts to Arrow
fastest (vectorised, no datetime objects per row); the stored type is a UTC timestamp.

``LakeEvent`` is a NamedTuple, not a dataclass, because ingest reads rows into columns at C
speed (``itemgetter`` over tuples), far faster than building and reading dataclasses with
datetimes (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "TIMESTAMP_COLUMNS",
    "Column",
    "LakeEvent",
    "arrow_schema",
    "bigquery_schema",
]


class LakeEvent(NamedTuple):
    """One delivery event as a lake row (field order = column order)."""

    event_id: str
    object_type: str
    metric: str
    occurred_at: float  # unix seconds UTC: the webhook's ``timestamp``
    received_at: float  # unix seconds UTC: when our receiver stored it
    customer_id: str | None
    email: str | None
    delivery_id: str | None
    campaign_id: str | None
    broadcast_id: str | None
    journey_id: str | None
    action_id: str | None
    transactional_message_id: str | None
    recipient: str | None
    subject: str | None
    href: str | None
    failure_message: str | None
    raw: str  # the webhook body as received (JSON text)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # "string" or "timestamp"
    required: bool
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column("event_id", "string", True, "Customer.io's unique event id (ULID); the dedupe key."),
    Column("object_type", "string", True, "customer, email, push, sms, slack, webhook ..."),
    Column("metric", "string", True, "sent, delivered, opened, clicked, bounced ..."),
    Column("occurred_at", "timestamp", True, "When it happened (webhook timestamp), UTC."),
    Column("received_at", "timestamp", True, "When cio-relay stored the webhook, UTC."),
    Column("customer_id", "string", False, "data.customer_id, else data.identifiers.id."),
    Column("email", "string", False, "data.email_address, else data.identifiers.email."),
    Column("delivery_id", "string", False, "The message delivery this event is about."),
    Column("campaign_id", "string", False, "Campaign that sent the message, if any."),
    Column("broadcast_id", "string", False, "Broadcast that sent the message, if any."),
    Column("journey_id", "string", False, "Journey (campaign run) id, if any."),
    Column("action_id", "string", False, "Campaign/broadcast action (workflow step) id."),
    Column(
        "transactional_message_id",
        "string",
        False,
        "Transactional message (template) id, if sent through the transactional API.",
    ),
    Column("recipient", "string", False, "Address or device the message went to."),
    Column("subject", "string", False, "Email subject, when reported."),
    Column("href", "string", False, "Link clicked (clicked events)."),
    Column("failure_message", "string", False, "Why it bounced, failed or was dropped."),
    Column("raw", "string", True, "The whole webhook body as received, JSON text."),
)

COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)
TIMESTAMP_COLUMNS = frozenset(c.name for c in COLUMNS if c.type == "timestamp")

_BIGQUERY_TYPES: Mapping[str, str] = {"string": "STRING", "timestamp": "TIMESTAMP"}


@lru_cache(maxsize=1)
def arrow_schema() -> Any:
    """The ``pyarrow.Schema`` of every Parquet file in the lake (the ``date`` partition aside)."""
    import pyarrow as pa

    types = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema(
        [
            pa.field(c.name, types[c.type], nullable=not c.required, metadata={"doc": c.doc})
            for c in COLUMNS
        ]
    )


def bigquery_schema() -> list[dict[str, str]]:
    """``COLUMNS`` as BigQuery schema fields; partition the table by DAY on ``occurred_at``."""
    return [
        {
            "name": c.name,
            "type": _BIGQUERY_TYPES[c.type],
            "mode": "REQUIRED" if c.required else "NULLABLE",
            "description": c.doc,
        }
        for c in COLUMNS
    ]
