"""Operator views of the webhook inbox: parked events and quarantined payloads as Rich tables.

Used by ``cio-relay webhooks parked|quarantined``. Payloads are shown as a short preview only:
they are customer data, and the operator can read the full bytes from the inbox if needed.
Every value that came in a webhook (ids, names, errors, payloads) goes through ``plain_text``:
shown literally, never read as Rich markup, control characters made visible.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from cio_relay.plain_text import plain_text
from cio_relay.webhooks.inbox import QuarantinedPayload, StoredEvent

__all__ = ["parked_table", "quarantine_table"]

_PREVIEW = 80


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(sep=" ", timespec="seconds")


def parked_table(events: list[StoredEvent], *, total: int) -> Table:
    table = Table(caption=f"{total} parked")
    table.add_column("event id", no_wrap=True)
    for header in ("event", "received", "attempts", "last error"):
        table.add_column(header)
    for event in events:
        table.add_row(
            plain_text(event.event_id),
            plain_text(event.name),
            _when(event.received_at),
            str(event.attempts),
            plain_text(event.last_error or ""),
        )
    return table


def quarantine_table(items: list[QuarantinedPayload], *, total: int) -> Table:
    table = Table("id", "received", "error", "payload (preview)", caption=f"{total} quarantined")
    for item in items:
        preview = item.raw[:_PREVIEW].decode("utf-8", "replace")
        if len(item.raw) > _PREVIEW:
            preview += "..."
        table.add_row(
            str(item.id), _when(item.received_at), plain_text(item.error), plain_text(preview)
        )
    return table
