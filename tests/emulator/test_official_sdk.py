"""The official PyPI ``customerio`` SDK (3.2.0), unmodified, against the emulator over https.

The SDK only speaks https to the Track API, so the emulator serves TLS with a certificate from a
throwaway CA and ``REQUESTS_CA_BUNDLE`` makes ``requests`` trust it. Every call is checked
through ``/_emulator/`` over HTTP to have taken effect.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ulid import ULID

from cio_relay.emulator import EmulatorServer
from customerio import (
    APIClient,
    CustomerIO,
    CustomerIOException,
    SendEmailRequest,
    SendInAppRequest,
    SendInboxMessageRequest,
    SendPushRequest,
    SendSMSRequest,
    SendWhatsAppRequest,
)


class Emulated:
    """The TLS emulator, an SDK Track client and App client aimed at it, and an inspector."""

    def __init__(self, server: EmulatorServer, ca_bundle: str) -> None:
        self.server = server
        config = server.config
        self.track = CustomerIO(
            config.site_id, config.track_api_key, host="127.0.0.1", port=server.port
        )
        self.api = APIClient(config.app_api_key, url=server.url)
        self._inspector = httpx.Client(
            base_url=f"{server.url}/_emulator",
            verify=ssl.create_default_context(cafile=ca_bundle),
            timeout=10,
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self._inspector.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> None:
        self._inspector.post(path, json=body).raise_for_status()

    def person(self, identifier: str) -> Any:
        return self.get(f"/people/{identifier}")

    def close(self) -> None:
        self.track.close()
        self.api.close()
        self._inspector.close()


@pytest.fixture
def cio(
    tls_emulator: tuple[EmulatorServer, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Emulated]:
    server, ca_bundle = tls_emulator
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    emulated = Emulated(server, ca_bundle)
    yield emulated
    emulated.close()


def test_identify(cio: Emulated) -> None:
    response = cio.track.identify(
        "u1", email="ada@example.com", plan="pro", created_at=1_700_000_000
    )
    assert response.status_code == 200
    person = cio.person("u1")
    assert person["email"] == "ada@example.com"
    assert person["attributes"] == {
        "email": "ada@example.com",
        "plan": "pro",
        "created_at": 1_700_000_000,
    }


def test_track_without_an_id(cio: Emulated) -> None:
    cio.track.track("u1", "order_completed", {"total": 42}, timestamp=1_700_000_100)
    [event] = cio.person("u1")["events"]
    assert (event["name"], event["data"], event["timestamp"]) == (
        "order_completed",
        {"total": 42},
        1_700_000_100,
    )
    assert event["id"] is None


def test_track_with_a_ulid_id_is_deduplicated(cio: Emulated) -> None:
    event_id = str(ULID())
    cio.track.track("u1", "paid", {"total": 1}, id=event_id)
    cio.track.track("u1", "paid", {"total": 1}, id=event_id)
    [event] = cio.person("u1")["events"]
    assert event["id"] == event_id
    stats = cio.get("/stats")
    assert (stats["events_accepted"], stats["duplicate_event_ids"]) == (1, 1)


def test_track_with_an_id_that_is_not_a_ulid_raises(cio: Emulated) -> None:
    with pytest.raises(CustomerIOException, match="400") as caught:
        cio.track.track("u1", "paid", id="order-17")
    assert "event id must be a valid ULID" in str(caught.value)
    assert cio.get("/stats")["events_accepted"] == 0


def test_track_anonymous(cio: Emulated) -> None:
    cio.track.track_anonymous("anon-7", "landing_viewed", {"utm": "ad"})
    [event] = cio.get("/events", person="anon-7")["events"]
    assert (event["anonymous_id"], event["name"], event["data"]) == (
        "anon-7",
        "landing_viewed",
        {"utm": "ad"},
    )


def test_pageview(cio: Emulated) -> None:
    cio.track.pageview("u1", "https://example.com/pricing", referrer="ad")
    [event] = cio.person("u1")["events"]
    assert (event["type"], event["name"], event["data"]) == (
        "page",
        "https://example.com/pricing",
        {"referrer": "ad"},
    )


def test_delete(cio: Emulated) -> None:
    cio.track.identify("u1", plan="pro")
    cio.track.delete("u1")
    assert cio.get("/people")["total"] == 0


def test_add_and_delete_device(cio: Emulated) -> None:
    cio.track.add_device("u1", "token-1", "ios", app_version="2.0", last_used=1_700_000_000)
    [device] = cio.person("u1")["devices"]
    assert device == {
        "id": "token-1",
        "platform": "ios",
        "last_used": 1_700_000_000,
        "attributes": {"app_version": "2.0"},
    }
    cio.track.delete_device("u1", "token-1")
    assert cio.person("u1")["devices"] == []


def test_suppress_and_unsuppress(cio: Emulated) -> None:
    cio.track.identify("u1")
    cio.track.suppress("u1")
    assert cio.person("u1")["suppressed"] is True
    cio.track.unsuppress("u1")
    assert cio.person("u1")["suppressed"] is False


def test_merge_customers(cio: Emulated) -> None:
    cio.track.identify("main", plan="pro")
    cio.track.identify("dup@example.com", city="Oslo")
    cio.track.merge_customers("id", "main", "email", "dup@example.com")
    assert [p["id"] for p in cio.get("/people")["people"]] == ["main"]
    assert cio.person("main")["attributes"]["city"] == "Oslo"


def test_batch(cio: Emulated) -> None:
    operations = [
        {
            "type": "person",
            "action": "identify",
            "identifiers": {"id": "u1"},
            "attributes": {"plan": "pro"},
        },
        {
            "type": "person",
            "action": "event",
            "identifiers": {"id": "u1"},
            "name": "paid",
            "attributes": {"total": 3},
        },
    ]
    assert cio.track.batch(operations).status_code == 200
    person = cio.person("u1")
    assert person["attributes"] == {"plan": "pro"}
    assert [(e["name"], e["data"]) for e in person["events"]] == [("paid", {"total": 3})]


def test_a_limit_violation_surfaces_as_customerio_exception(cio: Emulated) -> None:
    with pytest.raises(CustomerIOException, match="event name cannot be longer than 100 bytes"):
        cio.track.track("u1", "n" * 101)


def test_wrong_credentials_raise(cio: Emulated) -> None:
    intruder = CustomerIO(
        cio.server.config.site_id, "wrong", host="127.0.0.1", port=cio.server.port
    )
    try:
        with pytest.raises(CustomerIOException, match="401"):
            intruder.identify("u1", plan="pro")
    finally:
        intruder.close()
    assert cio.get("/people")["total"] == 0


def test_the_sdk_retries_a_503_over_https(cio: Emulated) -> None:
    fault = {"error_rate": 1.0, "status_codes": [503], "count": 2}
    cio.post("/faults", fault)
    assert cio.track.identify("u1", plan="pro").status_code == 200
    requests = cio.get("/stats")["requests"]["PUT /api/v1/customers/{identifier}"]
    assert requests == {"200": 1, "503": 2}


def test_send_email(cio: Emulated) -> None:
    request = SendEmailRequest(
        transactional_message_id="welcome",
        to="ada@example.com",
        identifiers={"id": "u1"},
        message_data={"name": "Ada"},
    )
    request.attach("hello.txt", "hello")
    answer = cio.api.send_email(request)
    [delivery] = cio.get("/deliveries")["deliveries"]
    assert answer["delivery_id"] == delivery["delivery_id"]
    assert delivery["channel"] == "email"
    assert delivery["transactional_message_id"] == "welcome"
    assert delivery["request"]["message_data"] == {"name": "Ada"}
    assert delivery["request"]["attachments"] == {"hello.txt": 8}


def test_send_push(cio: Emulated) -> None:
    cio.track.add_device("u1", "token-1", "android")
    request = SendPushRequest(
        transactional_message_id=9, identifiers={"id": "u1"}, title="Hi", message="Hello"
    )
    answer = cio.api.send_push(request)
    [delivery] = cio.get("/deliveries")["deliveries"]
    assert answer["delivery_id"] == delivery["delivery_id"]
    assert delivery["channel"] == "push" and delivery["request"]["title"] == "Hi"


def test_send_email_refusal_raises(cio: Emulated) -> None:
    request = SendEmailRequest(to="ada@example.com", identifiers={"id": "u1"}, subject="Hi")
    with pytest.raises(CustomerIOException, match="400"):
        cio.api.send_email(request)
    assert cio.get("/deliveries")["total"] == 0


@pytest.mark.parametrize(
    ("send", "request_object", "channel"),
    [
        (
            "send_sms",
            SendSMSRequest(transactional_message_id=3, to="+14155550100", identifiers={"id": "u1"}),
            "sms",
        ),
        (
            "send_whatsapp",
            SendWhatsAppRequest(
                transactional_message_id="order_update", to="+14155550100", identifiers={"id": "u1"}
            ),
            "whatsapp",
        ),
        (
            "send_in_app",
            SendInAppRequest(transactional_message_id=5, identifiers={"email": "ada@example.com"}),
            "in_app",
        ),
        (
            "send_inbox_message",
            SendInboxMessageRequest(
                transactional_message_id=6, identifiers={"id": "u1"}, message_data={"n": 1}
            ),
            "inbox_message",
        ),
    ],
)
def test_the_sdks_other_sends(cio: Emulated, send: str, request_object: Any, channel: str) -> None:
    answer = getattr(cio.api, send)(request_object)
    [delivery] = cio.get("/deliveries")["deliveries"]
    assert answer["delivery_id"] == delivery["delivery_id"]
    assert delivery["channel"] == channel


def test_an_sms_in_a_format_the_documents_refuse_raises(cio: Emulated) -> None:
    request = SendSMSRequest(transactional_message_id=3, to="0415 555", identifiers={"id": "u1"})
    with pytest.raises(CustomerIOException, match="400"):
        cio.api.send_sms(request)
    assert cio.get("/deliveries")["total"] == 0
