"""Lake rows for the tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from cio_relay.lake.schema import LakeEvent

_ids = itertools.count(1)


def at(text: str) -> float:
    """Unix seconds of an ISO time in UTC, e.g. ``at("2024-05-01 23:59:59")``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def row(
    metric: str = "sent",
    when: str = "2024-05-01 12:00:00",
    *,
    object_type: str = "email",
    event_id: str | None = None,
    delivery_id: str | None = None,
    campaign_id: str | None = None,
    broadcast_id: str | None = None,
    transactional_message_id: str | None = None,
    customer_id: str | None = "u1",
    received_offset: float = 1.0,
) -> LakeEvent:
    occurred = at(when)
    eid = event_id or f"ev-{next(_ids):06d}"
    return LakeEvent(
        event_id=eid,
        object_type=object_type,
        metric=metric,
        occurred_at=occurred,
        received_at=occurred + received_offset,
        customer_id=customer_id,
        email=None,
        delivery_id=delivery_id,
        campaign_id=campaign_id,
        broadcast_id=broadcast_id,
        journey_id=None,
        action_id=None,
        transactional_message_id=transactional_message_id,
        recipient=None,
        subject=None,
        href=None,
        failure_message=None,
        raw=f'{{"event_id":"{eid}"}}',
    )
