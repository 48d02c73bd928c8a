"""The reporting-webhook event model: one typed event per POST, parsed from the raw bytes.

Customer.io posts one JSON object per webhook (customerio-api.md §6; batching is UNCONFIRMED,
so a JSON array is treated as unparseable and quarantined rather than guessed at):

    {"event_id": "01H...", "object_type": "email", "metric": "bounced",
     "timestamp": 1700000000, "data": {"customer_id": "...", "delivery_id": "...", ...}}

Each known ``object_type`` has its own class (``EmailEvent``, ``PushEvent`` ...) so handlers can
narrow with ``isinstance``; the event's *name* is ``{object_type}_{metric}`` (``email_bounced``),
listed in ``EventName``. An object type or metric outside the table (``in_app``, ``whatsapp``,
``undeliverable`` are UNCONFIRMED) parses as an ``UnknownEvent``: stored and routed, never
rejected, so a new Customer.io metric cannot make us answer an error.

Why frozen slotted dataclasses and not pydantic models: parsing runs once per POST on the hot
path, the checks are few and hand-written with clear errors, and the dataclass parsed faster
than either pydantic route (docs/benchmarks.md, "Figures behind design choices").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from cio_relay.errors import EventParseError

__all__ = [
    "METRICS",
    "CustomerEvent",
    "EmailEvent",
    "Event",
    "EventName",
    "PushEvent",
    "SlackEvent",
    "SmsEvent",
    "UnknownEvent",
    "WebhookActionEvent",
    "parse_event",
]

MAX_EVENT_ID_LENGTH = 255
MAX_NAME_LENGTH = 100
MAX_TIMESTAMP = 10_000_000_000  # unix seconds: the year 2286

#: Object types and their metrics (customerio-api.md §6, from RudderStack's receiver config:
#: not an official list, hence ``UnknownEvent`` for everything else).
METRICS: Mapping[str, frozenset[str]] = {
    "customer": frozenset({"subscribed", "unsubscribed", "cio_subscription_preferences_changed"}),
    "email": frozenset(
        {
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "unsubscribed",
            "bounced",
            "dropped",
            "spammed",
            "failed",
        }
    ),
    "push": frozenset(
        {
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
        }
    ),
    "sms": frozenset(
        {"drafted", "attempted", "sent", "delivered", "clicked", "converted", "bounced", "failed"}
    ),
    "slack": frozenset({"drafted", "attempted", "sent", "clicked", "failed"}),
    "webhook": frozenset({"drafted", "attempted", "sent", "clicked", "failed"}),
}


class EventName(StrEnum):
    """Every known ``{object_type}_{metric}``: the names ``@router.on(...)`` accepts."""

    CUSTOMER_SUBSCRIBED = "customer_subscribed"
    CUSTOMER_UNSUBSCRIBED = "customer_unsubscribed"
    CUSTOMER_SUBSCRIPTION_PREFERENCES_CHANGED = "customer_cio_subscription_preferences_changed"
    EMAIL_DRAFTED = "email_drafted"
    EMAIL_ATTEMPTED = "email_attempted"
    EMAIL_SENT = "email_sent"
    EMAIL_DELIVERED = "email_delivered"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    EMAIL_CONVERTED = "email_converted"
    EMAIL_UNSUBSCRIBED = "email_unsubscribed"
    EMAIL_BOUNCED = "email_bounced"
    EMAIL_DROPPED = "email_dropped"
    EMAIL_SPAMMED = "email_spammed"
    EMAIL_FAILED = "email_failed"
    PUSH_DRAFTED = "push_drafted"
    PUSH_ATTEMPTED = "push_attempted"
    PUSH_SENT = "push_sent"
    PUSH_DELIVERED = "push_delivered"
    PUSH_OPENED = "push_opened"
    PUSH_CLICKED = "push_clicked"
    PUSH_CONVERTED = "push_converted"
    PUSH_BOUNCED = "push_bounced"
    PUSH_DROPPED = "push_dropped"
    PUSH_FAILED = "push_failed"
    SMS_DRAFTED = "sms_drafted"
    SMS_ATTEMPTED = "sms_attempted"
    SMS_SENT = "sms_sent"
    SMS_DELIVERED = "sms_delivered"
    SMS_CLICKED = "sms_clicked"
    SMS_CONVERTED = "sms_converted"
    SMS_BOUNCED = "sms_bounced"
    SMS_FAILED = "sms_failed"
    SLACK_DRAFTED = "slack_drafted"
    SLACK_ATTEMPTED = "slack_attempted"
    SLACK_SENT = "slack_sent"
    SLACK_CLICKED = "slack_clicked"
    SLACK_FAILED = "slack_failed"
    WEBHOOK_DRAFTED = "webhook_drafted"
    WEBHOOK_ATTEMPTED = "webhook_attempted"
    WEBHOOK_SENT = "webhook_sent"
    WEBHOOK_CLICKED = "webhook_clicked"
    WEBHOOK_FAILED = "webhook_failed"


_IDENTIFIER_KEYS = ("id", "email", "cio_id")


def _text(value: object) -> str | None:
    """Ids arrive as strings or numbers (``campaign_id: 23``); the lake keeps them as text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float):
        return str(value)
    return None


@dataclass(frozen=True, slots=True)
class Event:
    """One reporting-webhook event. ``data`` is the payload's ``data`` object, as sent."""

    event_id: str
    object_type: str
    metric: str
    timestamp: float  # unix seconds, when it happened at Customer.io
    data: Mapping[str, Any]

    KNOWN: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """``{object_type}_{metric}``, e.g. ``email_bounced``: what the router matches."""
        return f"{self.object_type}_{self.metric}"

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)

    def field(self, key: str) -> str | None:
        """A top-level ``data`` field as text (numbers become strings), or None."""
        return _text(self.data.get(key))

    @property
    def identifiers(self) -> dict[str, str]:
        """The person's ids: ``data.identifiers``, else ``customer_id`` and ``email_address``."""
        given = self.data.get("identifiers")
        found: dict[str, str] = {}
        if isinstance(given, Mapping):
            for key in _IDENTIFIER_KEYS:
                value = _text(given.get(key))
                if value is not None:
                    found[key] = value
        if "id" not in found and (customer_id := self.customer_id) is not None:
            found["id"] = customer_id
        if "email" not in found and (email := self.field("email_address")) is not None:
            found["email"] = email
        return found

    @property
    def customer_id(self) -> str | None:
        customer_id = self.field("customer_id")
        if customer_id is None and isinstance(ids := self.data.get("identifiers"), Mapping):
            return _text(ids.get("id"))
        return customer_id

    @property
    def email(self) -> str | None:
        email = self.field("email_address")
        if email is None and isinstance(ids := self.data.get("identifiers"), Mapping):
            return _text(ids.get("email"))
        return email

    @property
    def delivery_id(self) -> str | None:
        return self.field("delivery_id")

    @property
    def campaign_id(self) -> str | None:
        return self.field("campaign_id")

    @property
    def broadcast_id(self) -> str | None:
        return self.field("broadcast_id")

    @property
    def newsletter_id(self) -> str | None:
        return self.field("newsletter_id")

    @property
    def transactional_message_id(self) -> str | None:
        return self.field("transactional_message_id")

    @property
    def journey_id(self) -> str | None:
        return self.field("journey_id")

    @property
    def action_id(self) -> str | None:
        return self.field("action_id")

    @property
    def recipient(self) -> str | None:
        return self.field("recipient")

    @property
    def subject(self) -> str | None:
        return self.field("subject")

    @property
    def href(self) -> str | None:
        return self.field("href")

    @property
    def failure_message(self) -> str | None:
        return self.field("failure_message")


@dataclass(frozen=True, slots=True)
class CustomerEvent(Event):
    """``customer_subscribed``, ``customer_unsubscribed``, subscription preferences changed."""


@dataclass(frozen=True, slots=True)
class EmailEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class PushEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class SmsEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class SlackEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class WebhookActionEvent(Event):
    """A webhook *action* in a campaign (``object_type`` ``webhook``), not this receiver."""


@dataclass(frozen=True, slots=True)
class UnknownEvent(Event):
    """An object type or metric outside ``METRICS``: kept and routed like any other."""

    KNOWN: ClassVar[bool] = False


_CLASSES: Mapping[str, type[Event]] = {
    "customer": CustomerEvent,
    "email": EmailEvent,
    "push": PushEvent,
    "sms": SmsEvent,
    "slack": SlackEvent,
    "webhook": WebhookActionEvent,
}


def _required_text(document: Mapping[str, Any], key: str, limit: int) -> str:
    value = document.get(key)
    if value is None:
        raise EventParseError(key, "missing")
    if not isinstance(value, str) or not value:
        raise EventParseError(key, f"must be a non-empty string, got {type(value).__name__}")
    if len(value) > limit:
        raise EventParseError(key, f"{len(value)} characters exceeds the limit of {limit}")
    return value


def _timestamp(document: Mapping[str, Any]) -> float:
    value = document.get("timestamp")
    if value is None:
        raise EventParseError("timestamp", "missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventParseError("timestamp", f"must be unix seconds, got {type(value).__name__}")
    if not 0 <= value < MAX_TIMESTAMP:
        # Catches milliseconds sent as seconds before they become a partition in year 55,000.
        raise EventParseError(
            "timestamp", f"{value} is outside unix seconds 0..{MAX_TIMESTAMP} (milliseconds?)"
        )
    return value


def event_from_document(document: object) -> Event:
    """The typed event for an already-decoded JSON value; raises ``EventParseError``."""
    if not isinstance(document, dict):
        raise EventParseError("body", f"must be a JSON object, got {type(document).__name__}")
    event_id = _required_text(document, "event_id", MAX_EVENT_ID_LENGTH)
    object_type = _required_text(document, "object_type", MAX_NAME_LENGTH)
    metric = _required_text(document, "metric", MAX_NAME_LENGTH)
    timestamp = _timestamp(document)
    data = document.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise EventParseError("data", f"must be a JSON object, got {type(data).__name__}")
    known = metric in METRICS.get(object_type, ())
    cls = _CLASSES[object_type] if known else UnknownEvent
    return cls(event_id, object_type, metric, timestamp, data)


def parse_event(raw: bytes) -> Event:
    """Parse one webhook body; raises ``EventParseError`` naming what is wrong."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventParseError("body", f"not valid JSON ({exc})") from None
    return event_from_document(document)
