"""The event model: typed events for every known object type and metric, clear parse errors."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from cio_relay.webhooks.events import (
    METRICS,
    CustomerEvent,
    EmailEvent,
    Event,
    EventName,
    EventParseError,
    InAppEvent,
    PushEvent,
    SlackEvent,
    SmsEvent,
    SubscriptionEvent,
    UnknownEvent,
    WebhookActionEvent,
    WhatsAppEvent,
    parse_event,
)
from tests.webhooks.helpers import payload

CLASSES = {
    "email": EmailEvent,
    "push": PushEvent,
    "in_app": InAppEvent,
    "sms": SmsEvent,
    "slack": SlackEvent,
    "webhook": WebhookActionEvent,
    "whatsapp": WhatsAppEvent,
}
SUBSCRIPTION = ("subscribed", "unsubscribed", "cio_subscription_preferences_changed")


def _expected_class(object_type: str, metric: str) -> type[Event]:
    if metric in SUBSCRIPTION:
        return CustomerEvent if object_type in ("customer", "person") else SubscriptionEvent
    return CLASSES[object_type]


def test_event_names_list_every_known_object_type_and_metric() -> None:
    from_table = {f"{t}_{m}" for t, metrics in METRICS.items() for m in metrics}
    assert {name.value for name in EventName} == from_table


@pytest.mark.parametrize(
    ("object_type", "metric"), [(t, m) for t, metrics in METRICS.items() for m in sorted(metrics)]
)
def test_every_known_metric_parses_to_its_typed_class(object_type: str, metric: str) -> None:
    event = parse_event(payload(object_type, metric))
    assert type(event) is _expected_class(object_type, metric)
    assert event.name == f"{object_type}_{metric}" and event.KNOWN
    assert event.channel == object_type


@pytest.mark.parametrize(
    ("object_type", "metric"), [("email", "replied"), ("in_app", "delivered"), ("x", "y")]
)
def test_unknown_object_types_and_metrics_are_kept_as_generic_events(
    object_type: str, metric: str
) -> None:
    event = parse_event(payload(object_type, metric, customer_id="u1"))
    assert type(event) is UnknownEvent and not event.KNOWN
    assert event.name == f"{object_type}_{metric}" and event.customer_id == "u1"


def test_fields_are_read_from_data_and_ids_become_text() -> None:
    event = parse_event(
        payload(
            "email",
            "clicked",
            timestamp=1_700_000_000,
            customer_id="user-1",
            email_address="ada@example.com",
            identifiers={"id": "user-1", "email": "ada@example.com", "cio_id": "c1"},
            delivery_id="d-1",
            campaign_id=23,
            broadcast_id=None,
            journey_id="j-1",
            action_id=42,
            transactional_message_id=7,
            recipient="ada@example.com",
            subject="Hi",
            href="https://example.com",
            failure_message="",
        )
    )
    assert isinstance(event, EmailEvent)
    assert event.occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (event.customer_id, event.email, event.delivery_id) == (
        "user-1",
        "ada@example.com",
        "d-1",
    )
    assert (event.campaign_id, event.action_id, event.transactional_message_id) == ("23", "42", "7")
    assert event.broadcast_id is None and event.failure_message is None  # null and "" are absent
    assert (event.journey_id, event.recipient, event.subject) == ("j-1", "ada@example.com", "Hi")
    assert event.href == "https://example.com"
    assert event.identifiers == {"id": "user-1", "email": "ada@example.com", "cio_id": "c1"}


def test_identifiers_fall_back_to_customer_id_and_email_address() -> None:
    event = parse_event(payload(customer_id="u9", email_address="u9@example.com"))
    assert event.identifiers == {"id": "u9", "email": "u9@example.com"}
    only_ids = parse_event(payload(identifiers={"email": "x@example.com", "id": 5}))
    assert only_ids.identifiers == {"id": "5", "email": "x@example.com"}
    assert only_ids.customer_id == "5" and only_ids.email == "x@example.com"
    assert parse_event(payload()).identifiers == {}


def test_missing_data_is_an_empty_object_and_events_are_frozen() -> None:
    event = parse_event(b'{"event_id":"e1","object_type":"email","metric":"sent","timestamp":1}')
    assert event.data == {}
    with pytest.raises(AttributeError):
        event.metric = "opened"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b"not json", "body", "not valid JSON"),
        (b"", "body", "not valid JSON"),
        (b"\xff\xfe", "body", "not valid JSON"),
        (b"[1, 2]", "body", "must be a JSON object, got list"),
        (b'"text"', "body", "must be a JSON object, got str"),
        (b'{"object_type":"email","metric":"sent","timestamp":1}', "event_id", "missing"),
        (
            b'{"event_id":"","object_type":"email","metric":"sent","timestamp":1}',
            "event_id",
            "non-empty",
        ),
        (
            b'{"event_id":7,"object_type":"email","metric":"sent","timestamp":1}',
            "event_id",
            "got int",
        ),
        (b'{"event_id":"e","metric":"sent","timestamp":1}', "object_type", "missing"),
        (b'{"event_id":"e","object_type":"email","timestamp":1}', "metric", "missing"),
        (b'{"event_id":"e","object_type":"email","metric":"sent"}', "timestamp", "missing"),
        (
            b'{"event_id":"e","object_type":"email","metric":"sent","timestamp":"1"}',
            "timestamp",
            "got str",
        ),
        (
            b'{"event_id":"e","object_type":"email","metric":"sent","timestamp":true}',
            "timestamp",
            "got bool",
        ),
        (
            b'{"event_id":"e","object_type":"email","metric":"sent","timestamp":1700000000000}',
            "timestamp",
            "milliseconds",
        ),
        (
            b'{"event_id":"e","object_type":"email","metric":"sent","timestamp":-5}',
            "timestamp",
            "outside",
        ),
        (
            b'{"event_id":"e","object_type":"email","metric":"sent","timestamp":1,"data":[]}',
            "data",
            "got list",
        ),
    ],
)
def test_unparseable_payloads_raise_a_clear_error_naming_the_field(
    raw: bytes, field: str, says: str
) -> None:
    with pytest.raises(EventParseError) as caught:
        parse_event(raw)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ") and says in str(caught.value)


def test_an_overlong_event_id_names_the_limit_and_the_size() -> None:
    raw = orjson.dumps(
        {"event_id": "e" * 300, "object_type": "email", "metric": "sent", "timestamp": 1}
    )
    with pytest.raises(EventParseError, match="300 characters exceeds the limit of 255"):
        parse_event(raw)


def test_parse_errors_are_validation_errors() -> None:
    assert issubclass(EventParseError, ValueError)
    assert isinstance(parse_event(payload()), Event)


@pytest.mark.parametrize(
    ("object_type", "metric"),
    [
        ("email", "undeliverable"),
        ("sms", "replied"),
        ("whatsapp", "replied"),
        ("in_app", "clicked"),
        ("push", "dropped"),
        ("slack", "drafted"),
        ("webhook", "attempted"),
    ],
)
def test_the_documented_metrics_beyond_the_old_table_are_known(
    object_type: str, metric: str
) -> None:
    event = parse_event(payload(object_type, metric, delivery_id="d1"))
    assert event.KNOWN and type(event) is CLASSES[object_type] and event.delivery_id == "d1"


@pytest.mark.parametrize(
    "channel", ["customer", "email", "sms", "push", "in_app", "slack", "webhook", "whatsapp"]
)
@pytest.mark.parametrize("metric", SUBSCRIPTION)
def test_subscription_changes_from_any_channel_are_subscription_events(
    channel: str, metric: str
) -> None:
    event = parse_event(payload(channel, metric, customer_id="u1"))
    assert isinstance(event, SubscriptionEvent) and event.KNOWN
    assert event.name == f"{channel}_{metric}" and event.channel == channel
    assert event.unsubscribed == {"subscribed": False, "unsubscribed": True}.get(metric)


def test_preferences_changed_reads_the_documented_object_type_type_field() -> None:
    # Quirk of reporting-webhooks.json: person_cio_subscription_preferences_changed names its
    # channel field object_type_type and does not list object_type.
    body = orjson.dumps(
        {
            "metric": "cio_subscription_preferences_changed",
            "event_id": "01E4C4CT6YDC7Y5M7FE1GWWPQJ",
            "object_type_type": "email",
            "timestamp": 1_700_000_000,
            "data": {"customer_id": "u1", "delivery_id": "d1"},
        }
    )
    event = parse_event(body)
    assert type(event) is SubscriptionEvent
    assert (event.name, event.channel, event.delivery_id) == (
        "email_cio_subscription_preferences_changed",
        "email",
        "d1",
    )
    without_channel = orjson.loads(body)
    del without_channel["object_type_type"]
    assert parse_event(orjson.dumps(without_channel)).name == (
        "customer_cio_subscription_preferences_changed"
    )


def test_an_object_type_is_still_required_for_other_metrics() -> None:
    body = orjson.dumps({"event_id": "e1", "metric": "sent", "timestamp": 1, "data": {}})
    with pytest.raises(EventParseError, match="object_type"):
        parse_event(body)
