"""The reporting-webhook event model: one typed event per POST, parsed from the raw bytes.

Customer.io posts one JSON object per webhook (``reporting-webhooks.json``, the published
document: ``webhooks.reportingWebhook``; batching is not documented, so a JSON array is
treated as unparseable and quarantined rather than guessed at):

    {"event_id": "01H...", "object_type": "email", "metric": "bounced",
     "timestamp": 1700000000, "data": {"customer_id": "...", "delivery_id": "...", ...}}

Each documented ``object_type`` has its own class (``EmailEvent``, ``InAppEvent`` ...) so
handlers can narrow with ``isinstance``; the event's *name* is ``{object_type}_{metric}``
(``email_bounced``), listed in ``EventName``. ``METRICS`` is every ``object_type`` x ``metric``
of the document. Subscription changes (``subscribed``, ``unsubscribed``,
``cio_subscription_preferences_changed``) are documented for *any* channel ``object_type``
(the channel whose message triggered the change; ``customer`` when none did), so they parse
as ``SubscriptionEvent`` whatever the channel (``CustomerEvent`` for ``customer``), and the
router's metric wildcard (``*.unsubscribed``) reaches them all with one registration.
Anything outside the table parses as an ``UnknownEvent``: stored and routed, never rejected,
so a new Customer.io metric cannot make us answer an error.

Most of the module's length is the two tables (``METRICS`` and ``EventName``), which are data.

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
    "SUBSCRIPTION_METRICS",
    "CustomerEvent",
    "EmailEvent",
    "Event",
    "EventName",
    "InAppEvent",
    "PushEvent",
    "SlackEvent",
    "SmsEvent",
    "SubscriptionEvent",
    "UnknownEvent",
    "WebhookActionEvent",
    "WhatsAppEvent",
    "parse_event",
]

MAX_EVENT_ID_LENGTH = 255
MAX_NAME_LENGTH = 100
MAX_TIMESTAMP = 10_000_000_000  # unix seconds: the year 2286

#: The metrics of a message of each channel (``{object_type}_event`` in reporting-webhooks.json).
_MESSAGE_METRICS: Mapping[str, tuple[str, ...]] = {
    "email": (
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
        "undeliverable",
    ),
    "push": (
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
        "undeliverable",
    ),
    "in_app": (
        "drafted",
        "attempted",
        "sent",
        "opened",
        "clicked",
        "converted",
        "failed",
        "undeliverable",
    ),
    "sms": (
        "drafted",
        "attempted",
        "sent",
        "delivered",
        "clicked",
        "converted",
        "bounced",
        "failed",
        "undeliverable",
        "replied",
    ),
    "slack": ("drafted", "attempted", "sent", "clicked", "failed", "undeliverable"),
    "webhook": ("drafted", "attempted", "sent", "clicked", "failed", "undeliverable"),
    "whatsapp": (
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
        "undeliverable",
        "replied",
    ),
}

#: A person's subscription changed (``customer_event``): its ``object_type`` is the channel whose
#: message triggered the change, or ``customer``. The schemas are named ``person_*``, so a
#: payload saying ``person`` is taken as the same thing rather than guessed to be new.
SUBSCRIPTION_METRICS = frozenset(
    {"subscribed", "unsubscribed", "cio_subscription_preferences_changed"}
)
_PERSON_TYPES = ("customer", "person")

#: Every documented ``object_type`` and its metrics; anything else is an ``UnknownEvent``.
METRICS: Mapping[str, frozenset[str]] = {
    **{kind: SUBSCRIPTION_METRICS for kind in _PERSON_TYPES},
    **{kind: SUBSCRIPTION_METRICS | set(names) for kind, names in _MESSAGE_METRICS.items()},
}


class EventName(StrEnum):
    """Every known ``{object_type}_{metric}``: the names ``@router.on(...)`` accepts."""

    CUSTOMER_SUBSCRIBED = "customer_subscribed"
    CUSTOMER_UNSUBSCRIBED = "customer_unsubscribed"
    CUSTOMER_SUBSCRIPTION_PREFERENCES_CHANGED = "customer_cio_subscription_preferences_changed"
    PERSON_SUBSCRIBED = "person_subscribed"
    PERSON_UNSUBSCRIBED = "person_unsubscribed"
    PERSON_SUBSCRIPTION_PREFERENCES_CHANGED = "person_cio_subscription_preferences_changed"
    EMAIL_SUBSCRIBED = "email_subscribed"
    EMAIL_UNSUBSCRIBED = "email_unsubscribed"
    EMAIL_SUBSCRIPTION_PREFERENCES_CHANGED = "email_cio_subscription_preferences_changed"
    EMAIL_DRAFTED = "email_drafted"
    EMAIL_ATTEMPTED = "email_attempted"
    EMAIL_SENT = "email_sent"
    EMAIL_DELIVERED = "email_delivered"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    EMAIL_CONVERTED = "email_converted"
    EMAIL_BOUNCED = "email_bounced"
    EMAIL_DROPPED = "email_dropped"
    EMAIL_SPAMMED = "email_spammed"
    EMAIL_FAILED = "email_failed"
    EMAIL_UNDELIVERABLE = "email_undeliverable"
    PUSH_SUBSCRIBED = "push_subscribed"
    PUSH_UNSUBSCRIBED = "push_unsubscribed"
    PUSH_SUBSCRIPTION_PREFERENCES_CHANGED = "push_cio_subscription_preferences_changed"
    PUSH_DRAFTED = "push_drafted"
    PUSH_ATTEMPTED = "push_attempted"
    PUSH_DELIVERED = "push_delivered"
    PUSH_SENT = "push_sent"
    PUSH_OPENED = "push_opened"
    PUSH_CLICKED = "push_clicked"
    PUSH_CONVERTED = "push_converted"
    PUSH_BOUNCED = "push_bounced"
    PUSH_DROPPED = "push_dropped"
    PUSH_FAILED = "push_failed"
    PUSH_UNDELIVERABLE = "push_undeliverable"
    IN_APP_SUBSCRIBED = "in_app_subscribed"
    IN_APP_UNSUBSCRIBED = "in_app_unsubscribed"
    IN_APP_SUBSCRIPTION_PREFERENCES_CHANGED = "in_app_cio_subscription_preferences_changed"
    IN_APP_DRAFTED = "in_app_drafted"
    IN_APP_ATTEMPTED = "in_app_attempted"
    IN_APP_SENT = "in_app_sent"
    IN_APP_OPENED = "in_app_opened"
    IN_APP_CLICKED = "in_app_clicked"
    IN_APP_CONVERTED = "in_app_converted"
    IN_APP_FAILED = "in_app_failed"
    IN_APP_UNDELIVERABLE = "in_app_undeliverable"
    SMS_SUBSCRIBED = "sms_subscribed"
    SMS_UNSUBSCRIBED = "sms_unsubscribed"
    SMS_SUBSCRIPTION_PREFERENCES_CHANGED = "sms_cio_subscription_preferences_changed"
    SMS_DRAFTED = "sms_drafted"
    SMS_ATTEMPTED = "sms_attempted"
    SMS_SENT = "sms_sent"
    SMS_DELIVERED = "sms_delivered"
    SMS_CLICKED = "sms_clicked"
    SMS_CONVERTED = "sms_converted"
    SMS_BOUNCED = "sms_bounced"
    SMS_FAILED = "sms_failed"
    SMS_UNDELIVERABLE = "sms_undeliverable"
    SMS_REPLIED = "sms_replied"
    SLACK_SUBSCRIBED = "slack_subscribed"
    SLACK_UNSUBSCRIBED = "slack_unsubscribed"
    SLACK_SUBSCRIPTION_PREFERENCES_CHANGED = "slack_cio_subscription_preferences_changed"
    SLACK_DRAFTED = "slack_drafted"
    SLACK_ATTEMPTED = "slack_attempted"
    SLACK_SENT = "slack_sent"
    SLACK_CLICKED = "slack_clicked"
    SLACK_FAILED = "slack_failed"
    SLACK_UNDELIVERABLE = "slack_undeliverable"
    WEBHOOK_SUBSCRIBED = "webhook_subscribed"
    WEBHOOK_UNSUBSCRIBED = "webhook_unsubscribed"
    WEBHOOK_SUBSCRIPTION_PREFERENCES_CHANGED = "webhook_cio_subscription_preferences_changed"
    WEBHOOK_DRAFTED = "webhook_drafted"
    WEBHOOK_ATTEMPTED = "webhook_attempted"
    WEBHOOK_SENT = "webhook_sent"
    WEBHOOK_CLICKED = "webhook_clicked"
    WEBHOOK_FAILED = "webhook_failed"
    WEBHOOK_UNDELIVERABLE = "webhook_undeliverable"
    WHATSAPP_SUBSCRIBED = "whatsapp_subscribed"
    WHATSAPP_UNSUBSCRIBED = "whatsapp_unsubscribed"
    WHATSAPP_SUBSCRIPTION_PREFERENCES_CHANGED = "whatsapp_cio_subscription_preferences_changed"
    WHATSAPP_DRAFTED = "whatsapp_drafted"
    WHATSAPP_ATTEMPTED = "whatsapp_attempted"
    WHATSAPP_SENT = "whatsapp_sent"
    WHATSAPP_DELIVERED = "whatsapp_delivered"
    WHATSAPP_OPENED = "whatsapp_opened"
    WHATSAPP_CLICKED = "whatsapp_clicked"
    WHATSAPP_CONVERTED = "whatsapp_converted"
    WHATSAPP_BOUNCED = "whatsapp_bounced"
    WHATSAPP_DROPPED = "whatsapp_dropped"
    WHATSAPP_FAILED = "whatsapp_failed"
    WHATSAPP_UNDELIVERABLE = "whatsapp_undeliverable"
    WHATSAPP_REPLIED = "whatsapp_replied"


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
    def channel(self) -> str:
        """The channel the event is about: its ``object_type`` (``email``, ``in_app`` ...), or
        ``customer`` for a subscription change that no message triggered."""
        return self.object_type

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
class SubscriptionEvent(Event):
    """``{channel}_subscribed``, ``_unsubscribed`` or ``_cio_subscription_preferences_changed``,
    from any channel: register for them once with ``*.unsubscribed`` (``Router``)."""

    @property
    def unsubscribed(self) -> bool | None:
        """True: unsubscribed; False: subscribed again; None: topic preferences changed."""
        return {"unsubscribed": True, "subscribed": False}.get(self.metric)


@dataclass(frozen=True, slots=True)
class CustomerEvent(SubscriptionEvent):
    """A subscription change no message triggered (``object_type`` ``customer``)."""


@dataclass(frozen=True, slots=True)
class EmailEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class PushEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class InAppEvent(Event):
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
class WhatsAppEvent(Event):
    pass


@dataclass(frozen=True, slots=True)
class UnknownEvent(Event):
    """An object type or metric outside ``METRICS``: kept and routed like any other."""

    KNOWN: ClassVar[bool] = False


_CLASSES: Mapping[str, type[Event]] = {
    "email": EmailEvent,
    "push": PushEvent,
    "in_app": InAppEvent,
    "sms": SmsEvent,
    "slack": SlackEvent,
    "webhook": WebhookActionEvent,
    "whatsapp": WhatsAppEvent,
}


def event_class(object_type: str, metric: str) -> type[Event]:
    """The class a payload of ``object_type`` and ``metric`` parses into."""
    if metric not in METRICS.get(object_type, ()):
        return UnknownEvent
    if metric in SUBSCRIPTION_METRICS:
        return CustomerEvent if object_type in _PERSON_TYPES else SubscriptionEvent
    return _CLASSES[object_type]


def _required_text(document: Mapping[str, Any], key: str, limit: int) -> str:
    value = document.get(key)
    if value is None:
        raise EventParseError(key, "missing")
    if not isinstance(value, str) or not value:
        raise EventParseError(key, f"must be a non-empty string, got {type(value).__name__}")
    if len(value) > limit:
        raise EventParseError(key, f"{len(value)} characters exceeds the limit of {limit}")
    return value


#: A quirk of the published document: ``person_cio_subscription_preferences_changed`` names its
#: channel field ``object_type_type`` and does not list ``object_type`` (every other event has
#: ``object_type``). Both spellings are read, ``object_type`` first; with neither, the change
#: came from no message, which the document calls ``customer``.
_PREFERENCES_CHANNEL_FIELDS = ("object_type", "object_type_type")


def _object_type(document: Mapping[str, Any], metric: str) -> str:
    if metric == "cio_subscription_preferences_changed":
        for key in _PREFERENCES_CHANNEL_FIELDS:
            if document.get(key) is not None:
                return _required_text(document, key, MAX_NAME_LENGTH)
        return "customer"
    return _required_text(document, "object_type", MAX_NAME_LENGTH)


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
    metric = _required_text(document, "metric", MAX_NAME_LENGTH)
    object_type = _object_type(document, metric)
    timestamp = _timestamp(document)
    data = document.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise EventParseError("data", f"must be a JSON object, got {type(data).__name__}")
    return event_class(object_type, metric)(event_id, object_type, metric, timestamp, data)


def parse_event(raw: bytes) -> Event:
    """Parse one webhook body; raises ``EventParseError`` naming what is wrong."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventParseError("body", f"not valid JSON ({exc})") from None
    return event_from_document(document)
