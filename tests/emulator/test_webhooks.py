"""Reporting webhooks after transactional sends: content, order, signature, retries, flush."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.errors import SignatureError
from cio_relay.webhooks.signature import verify

from .helpers import app_client, inspect, plain_client, track_client
from .receiver import WebhookReceiver

SIGNING_KEY = "whsec-test-key"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def webhook_emulator(url: str, **overrides: Any) -> EmulatorServer:
    config = EmulatorConfig(
        webhook_url=url, webhook_signing_key=SIGNING_KEY, webhook_backoff=0.01, **overrides
    )
    return EmulatorServer(config)


def flush(server: EmulatorServer) -> dict[str, Any]:
    with plain_client(server, timeout=30) as client:
        response = client.post("/_emulator/webhooks/flush")
    assert response.status_code == 200, response.text
    return dict(response.json())


def send_email(server: EmulatorServer, to: str, **extra: Any) -> str:
    body = {"to": to, "identifiers": {"id": "u1"}, "transactional_message_id": 5, **extra}
    with app_client(server) as client:
        response = client.post("/v1/send/email", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["delivery_id"])


def test_an_email_reports_sent_delivered_opened_clicked_signed(
    receiver: WebhookReceiver,
) -> None:
    with webhook_emulator(receiver.url) as server:
        with track_client(server) as client:
            client.put("/api/v1/customers/u1", json={"email": "ada@example.com"})
        delivery_id = send_email(server, "ada@example.com", subject="Welcome")
        counts = flush(server)
    assert counts["drained"] is True and counts["sent"] == 4 and counts["pending"] == 0
    events = receiver.events()
    assert [e["metric"] for e in events] == ["sent", "delivered", "opened", "clicked"]
    assert {e["object_type"] for e in events} == {"email"}
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert len({e["event_id"] for e in events}) == 4
    data = events[0]["data"]
    assert data["delivery_id"] == delivery_id
    assert data["customer_id"] == "u1"
    assert data["identifiers"]["id"] == "u1" and data["identifiers"]["email"] == "ada@example.com"
    assert data["email_address"] == "ada@example.com"
    assert data["transactional_message_id"] == 5
    assert data["subject"] == "Welcome"
    assert events[3]["data"]["href"].startswith("https://")
    for post in receiver.received:  # one event per POST, signed over the raw body
        assert verify(
            [SIGNING_KEY],
            post.headers["X-CIO-Timestamp"],
            post.headers["X-CIO-Signature"],
            post.body,
        )
        with pytest.raises(SignatureError):
            verify(
                ["another-key"],
                post.headers["X-CIO-Timestamp"],
                post.headers["X-CIO-Signature"],
                post.body,
            )


@pytest.mark.parametrize(
    ("address", "metrics"),
    [
        ("someone@bounce.test", ["sent", "bounced"]),
        ("Someone <someone@SPAM.test>", ["sent", "delivered", "spammed"]),
    ],
)
def test_bounce_and_spam_domains(
    receiver: WebhookReceiver, address: str, metrics: list[str]
) -> None:
    with webhook_emulator(receiver.url) as server:
        send_email(server, address)
        flush(server)
    events = receiver.events()
    assert [e["metric"] for e in events] == metrics
    if "bounced" in metrics:
        assert events[-1]["data"]["failure_message"]


def test_push_and_sms_stories(receiver: WebhookReceiver) -> None:
    with webhook_emulator(receiver.url) as server:
        with track_client(server) as client:
            client.put(
                "/api/v1/customers/u1/devices", json={"device": {"id": "tok", "platform": "ios"}}
            )
        with app_client(server) as client:
            push = {"identifiers": {"id": "u1"}, "transactional_message_id": 2}
            client.post("/v1/send/push", json=push).raise_for_status()
            flush(server)
            sms = {"identifiers": {"id": "u1"}, "transactional_message_id": 3, "to": "+4799"}
            client.post("/v1/send/sms", json=sms).raise_for_status()
            flush(server)
    stories = [(e["object_type"], e["metric"]) for e in receiver.events()]
    assert stories == [
        ("push", "sent"),
        ("push", "delivered"),
        ("push", "opened"),
        ("push", "clicked"),
        ("sms", "sent"),
        ("sms", "delivered"),
        ("sms", "clicked"),
    ]
    push_data = receiver.events()[0]["data"]
    assert push_data["recipients"] == [{"device_id": "tok", "device_platform": "ios"}]
    assert receiver.events()[4]["data"]["recipient"] == "+4799"


def test_each_delivery_reports_in_order_among_many(receiver: WebhookReceiver) -> None:
    with webhook_emulator(receiver.url) as server:
        ids = [send_email(server, f"p{i}@example.com") for i in range(12)]
        flush(server)
    by_delivery: dict[str, list[str]] = {}
    for event in receiver.events():
        by_delivery.setdefault(event["data"]["delivery_id"], []).append(event["metric"])
    assert set(by_delivery) == set(ids)
    assert all(m == ["sent", "delivered", "opened", "clicked"] for m in by_delivery.values())


def test_the_api_answer_does_not_wait_for_webhooks() -> None:
    with WebhookReceiver(hold=True) as held, webhook_emulator(held.url) as server:
        send_email(server, "ada@example.com")  # answered while the receiver holds every post
        assert inspect(server, "webhooks")["pending"] == 4  # all still queued
        held.release()
        flush(server)
        assert [e["metric"] for e in held.events()] == ["sent", "delivered", "opened", "clicked"]


def test_a_failing_endpoint_is_retried_with_backoff() -> None:
    with WebhookReceiver(fail_first=2) as flaky, webhook_emulator(flaky.url) as server:
        send_email(server, "ada@example.com")
        counts = flush(server)
        log = inspect(server, "webhooks")["webhooks"]
    assert counts["sent"] == 4 and counts["failed"] == 0
    assert flaky.attempts == 6
    assert [entry["attempts"] for entry in log] == [3, 1, 1, 1]
    assert [e["metric"] for e in flaky.events()] == ["sent", "delivered", "opened", "clicked"]


def test_an_unreachable_endpoint_is_recorded_as_failed() -> None:
    with WebhookReceiver() as gone:
        url = gone.url
    with webhook_emulator(url, webhook_attempts=2) as server:
        send_email(server, "someone@bounce.test")
        counts = flush(server)
        log = inspect(server, "webhooks")["webhooks"]
        stats = inspect(server, "stats")["webhooks"]
    assert counts["failed"] == 2 and counts["sent"] == 0
    assert {entry["outcome"] for entry in log} == {"failed"}
    assert log[0]["error"] == "ConnectError" and log[0]["attempts"] == 2
    assert stats == {"enabled": True, "queued": 2, "sent": 0, "failed": 2, "pending": 0}


def test_without_a_webhook_url_nothing_is_queued_and_flush_returns(
    emulator: EmulatorServer,
) -> None:
    send_email(emulator, "ada@example.com")
    assert flush(emulator)["queued"] == 0
    assert inspect(emulator, "stats")["webhooks"]["enabled"] is False


def test_webhook_config_needs_a_signing_key() -> None:
    with pytest.raises(ValueError, match="webhook_signing_key"):
        EmulatorConfig(webhook_url="http://127.0.0.1:9/hooks")


def test_flush_gives_up_after_its_timeout() -> None:
    with WebhookReceiver(hold=True) as held, webhook_emulator(held.url) as server:
        send_email(server, "ada@example.com")
        response = httpx.post(f"{server.url}/_emulator/webhooks/flush?timeout=0", timeout=10)
        assert response.status_code == 504 and response.json()["drained"] is False
        held.release()
        flush(server)
