"""Builders of the Track v1 operations that name no one person: manual segment membership
(``POST /api/v1/segments/{segment_id}/add_customers`` and ``remove_customers``) and delivery
metrics (``POST /api/v1/metrics`` and the legacy ``POST /api/v1/push/events``).

Ordering (``Operation.person_key``): segment changes are ordered by the segment
(``segment:{id}``), so adding people and removing them again arrive in that order. They are not
ordered against the people's own operations (one call names up to 1,000 of them): add someone
to a segment after their identify has been delivered, not in the same breath (the emulator
skips an id it does not know; what Customer.io does with one is not documented).
Metrics are ordered by delivery (``delivery:{id}``): delivered, then opened, then clicked.

Neither has a v2 form that carries it whole (kinds.py ``V2_KINDS``): they travel on v1.
These are ``OperationFactory`` methods (this mixin).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from cio_relay.digits import whole_number
from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations.kinds import Kind
from cio_relay.operations.limits import LIMITS
from cio_relay.operations.model import Operation, OperationMaker
from cio_relay.operations.validation import NOT_PHONE, Timestamp, person_identifiers, unix_seconds

__all__ = [
    "METRICS",
    "PUSH_METRICS",
    "SEGMENT_ID_TYPES",
    "Metric",
    "PushMetric",
    "SegmentIdType",
    "SegmentMetricBuilders",
]

#: How a segment change names its people (track-api.json ``id_type_segment``; default ``id``).
SegmentIdType = Literal["id", "email", "cio_id"]
SEGMENT_ID_TYPES: tuple[SegmentIdType, ...] = ("id", "email", "cio_id")
#: Every metric ``/api/v1/metrics`` takes, over its channels (email's list holds all the others).
Metric = Literal[
    "bounced", "clicked", "converted", "deferred", "delivered", "dropped", "opened", "spammed"
]
METRICS: tuple[Metric, ...] = (
    "bounced", "clicked", "converted", "deferred", "delivered", "dropped", "opened", "spammed"
)  # fmt: skip
#: The device-side metrics of the legacy ``/api/v1/push/events``.
PushMetric = Literal["opened", "converted", "delivered"]
PUSH_METRICS: tuple[PushMetric, ...] = ("opened", "converted", "delivered")
#: A segment id is an int32 path parameter.
_MAX_SEGMENT_ID = 2**31 - 1


def segment_number(segment_id: int | str) -> int:
    """A segment id as the path takes it: a whole number from 1 to 2**31 - 1 (an int, or ASCII
    digits)."""
    number: int | None = None
    if isinstance(segment_id, str):
        number = whole_number(segment_id)
    elif isinstance(segment_id, int) and not isinstance(segment_id, bool):
        number = segment_id
    if number is None or not 1 <= number <= _MAX_SEGMENT_ID:
        raise ValidationError(
            "segment_id",
            f"must be a whole number from 1 to {_MAX_SEGMENT_ID}; got {segment_id!r:.40}",
        )
    return number


def _segment_ids(ids: Sequence[str], id_type: str) -> list[str]:
    """1 to 1,000 people, each an ``id_type`` (an id at most 150 bytes)."""
    if id_type not in SEGMENT_ID_TYPES:
        raise ValidationError("id_type", f"must be one of {', '.join(SEGMENT_ID_TYPES)}")
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence) or not ids:
        raise ValidationError("ids", "must be a non-empty list of identifiers")
    if len(ids) > LIMITS.segment_ids_per_call:
        raise LimitExceeded("ids", LIMITS.segment_ids_per_call, len(ids), "ids")
    return [
        person_identifiers({id_type: value}, f"ids[{index}]", NOT_PHONE)[id_type]
        for index, value in enumerate(ids)
    ]


def _text(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field_name, "must be a non-empty string")
    return value


class SegmentMetricBuilders(OperationMaker):
    """``OperationFactory``'s builders of segment membership and delivery metrics."""

    __slots__ = ()

    def add_to_segment(
        self,
        segment_id: int | str,
        ids: Sequence[str],
        *,
        id_type: SegmentIdType = "id",
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Add up to 1,000 people, named by ``id_type``, to a manual segment (which must exist:
        data-driven segments cannot be changed through the API). Ordered by the segment."""
        return self._segment(Kind.ADD_TO_SEGMENT, segment_id, ids, id_type, op_id, created_at)

    def remove_from_segment(
        self,
        segment_id: int | str,
        ids: Sequence[str],
        *,
        id_type: SegmentIdType = "id",
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Remove up to 1,000 people from a manual segment. Customer.io documents that this
        needs people to have an ``id``. Ordered by the segment."""
        return self._segment(Kind.REMOVE_FROM_SEGMENT, segment_id, ids, id_type, op_id, created_at)

    def _segment(
        self,
        kind: Kind,
        segment_id: int | str,
        ids: Sequence[str],
        id_type: str,
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        payload = {
            "segment_id": segment_number(segment_id),
            "ids": _segment_ids(ids, id_type),
            "id_type": id_type,
        }
        return self._op(kind, {}, payload, op_id, created_at)

    def track_metric(
        self,
        delivery_id: str,
        metric: Metric,
        *,
        recipient: str | int | None = None,
        reason: str | None = None,
        href: str | None = None,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Report a metric of a delivery (its ``CIO-Delivery-ID``) sent through a channel that
        does not report back itself: ``recipient`` (an address, a device, a phone), ``reason``
        of a failure, ``href`` of a click. ``timestamp`` is when it happened (the second of
        ``created_at`` when not given). Ordered by the delivery."""
        if metric not in METRICS:
            raise ValidationError("metric", f"must be one of {', '.join(METRICS)}")
        created = time.time() if created_at is None else created_at
        payload: dict[str, Any] = {
            "delivery_id": _text(delivery_id, "delivery_id"),
            "metric": metric,
            "timestamp": _timestamp(timestamp, created),
        }
        if recipient is not None:
            # SMS documents its recipient as an integer, the other channels as text.
            if isinstance(recipient, bool) or not isinstance(recipient, str | int):
                raise ValidationError("recipient", "must be text or, for SMS, a number")
            payload["recipient"] = recipient
        for name, value in (("reason", reason), ("href", href)):
            if value is not None:
                payload[name] = _text(value, name)
        return self._op(Kind.TRACK_METRIC, {}, payload, op_id, created)

    def track_push_metric(
        self,
        delivery_id: str,
        event: PushMetric,
        device_id: str,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Report a device-side push metric the legacy way (``/api/v1/push/events``, deprecated
        by Customer.io in favour of ``track_metric``): the notification's ``CIO-Delivery-ID``
        and ``CIO-Delivery-Token`` (``device_id``). Ordered by the delivery."""
        if event not in PUSH_METRICS:
            raise ValidationError("event", f"must be one of {', '.join(PUSH_METRICS)}")
        created = time.time() if created_at is None else created_at
        payload = {
            "delivery_id": _text(delivery_id, "delivery_id"),
            "event": event,
            "device_id": _text(device_id, "device_id"),
            "timestamp": _timestamp(timestamp, created),
        }
        return self._op(Kind.TRACK_PUSH_METRIC, {}, payload, op_id, created)


def _timestamp(given: Timestamp | None, created: float) -> int:
    return int(created) if given is None else unix_seconds(given, "timestamp")
