"""App API: transactional sends and API-triggered broadcasts (customerio-api.md §5)."""

from __future__ import annotations

from typing import Any

import pytest

from cio_relay.emulator import EmulatorServer

from .helpers import app_client, inspect, track_client

EMAIL: dict[str, Any] = {
    "to": "ada@example.com",
    "identifiers": {"id": "u1"},
    "transactional_message_id": "welcome",
    "message_data": {"name": "Ada"},
}


def app_errors(response: Any) -> list[dict[str, str]]:
    return list(response.json()["errors"])


def test_send_email_answers_a_delivery_id_and_records_it(emulator: EmulatorServer) -> None:
    with app_client(emulator) as client:
        response = client.post("/v1/send/email", json=EMAIL)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"delivery_id", "queued_at"} and isinstance(body["queued_at"], int)
    [delivery] = inspect(emulator, "deliveries")["deliveries"]
    assert delivery["delivery_id"] == body["delivery_id"]
    assert delivery["channel"] == "email" and delivery["to"] == "ada@example.com"
    assert delivery["request"]["message_data"] == {"name": "Ada"}
    assert inspect(emulator, "people/u1")["id"] == "u1"  # an unknown person is created


def test_send_email_without_a_template_needs_body_subject_and_from(
    emulator: EmulatorServer,
) -> None:
    inline = {"to": "a@x.test", "identifiers": {"email": "a@x.test"}, "subject": "Hi"}
    with app_client(emulator) as client:
        refused = client.post("/v1/send/email", json=inline)
        accepted = client.post(
            "/v1/send/email", json={**inline, "body": "<p>Hi</p>", "from": "us@x.test"}
        )
    assert refused.status_code == 400
    message = "a message without transactional_message_id needs body, subject and from"
    assert app_errors(refused) == [{"detail": message, "status": "400"}]
    assert refused.json()["meta"] == {"error": message}  # the transactional shape too
    assert accepted.status_code == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "to": ",".join(f"p{i}@x.test" for i in range(10)),
                "cc": ",".join(f"c{i}@x.test" for i in range(6)),
            },
            "cannot send to more than 15 recipients across to, cc and bcc (was 16)",
        ),
        (
            {"attachments": {"report": "aGVsbG8="}},
            "attachment 'report' needs a filename with an extension and base64 content",
        ),
        (
            {"attachments": {"a.pdf": "A" * 1_000_000, "b.pdf": "B" * 1_000_001}},
            "attachments cannot be larger than 2000000 bytes in total (was 2000001)",
        ),
        ({"identifiers": {}}, "identifiers must contain exactly one of id, email, cio_id"),
        (
            {"identifiers": {"id": "u1", "email": "a@x.test"}},
            "identifiers must contain exactly one of id, email, cio_id",
        ),
        (
            {"identifiers": {"id": "i" * 151}},
            "identifiers.id cannot be longer than 150 bytes (was 151)",
        ),
        ({"to": ""}, "to must be present"),
        ({"message_data": [1]}, "message_data must be an object"),
    ],
    ids=[
        "16-recipients",
        "no-extension",
        "attachments-2mb",
        "no-identifiers",
        "two-identifiers",
        "long-id",
        "no-to",
        "message-data-list",
    ],
)
def test_send_email_limits(emulator: EmulatorServer, change: dict[str, Any], message: str) -> None:
    with app_client(emulator) as client:
        response = client.post("/v1/send/email", json={**EMAIL, **change})
    assert response.status_code == 400
    assert app_errors(response) == [{"detail": message, "status": "400"}]
    assert inspect(emulator, "deliveries")["total"] == 0


def test_fifteen_recipients_and_a_2mb_attachment_are_accepted(emulator: EmulatorServer) -> None:
    body = {
        **EMAIL,
        "to": ",".join(f"p{i}@x.test" for i in range(10)),
        "bcc": ", ".join(f"b{i}@x.test" for i in range(5)),
        "attachments": {"a.pdf": "A" * 2_000_000},
    }
    with app_client(emulator) as client:
        assert client.post("/v1/send/email", json=body).status_code == 200
    [delivery] = inspect(emulator, "deliveries")["deliveries"]
    assert delivery["request"]["attachments"] == {"a.pdf": 2_000_000}  # sizes, not content


def test_send_push_and_sms(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        device = {"device": {"id": "tok", "platform": "ios"}}
        client.put("/api/v1/customers/u1/devices", json=device)
    push = {"identifiers": {"id": "u1"}, "transactional_message_id": 7, "title": "Hi"}
    sms = {"identifiers": {"id": "u1"}, "transactional_message_id": 8, "to": "+4712345678"}
    with app_client(emulator) as client:
        assert client.post("/v1/send/push", json=push).status_code == 200
        assert client.post("/v1/send/sms", json=sms).status_code == 200
        missing = client.post("/v1/send/push", json={"identifiers": {"id": "u1"}})
    assert missing.status_code == 400
    assert app_errors(missing)[0]["detail"] == "transactional_message_id must be present"
    channels = [d["channel"] for d in inspect(emulator, "deliveries")["deliveries"]]
    assert channels == ["push", "sms"]
    assert inspect(emulator, "deliveries", channel="sms")["total"] == 1


def test_broadcast_trigger_answers_an_id_and_is_recorded(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={"email": "u1@x.test"})
    with app_client(emulator) as client:
        first = client.post("/v1/campaigns/12/triggers", json={"data": {"sale": True}})
        second = client.post("/v1/campaigns/12/triggers", json={"ids": ["u1"]})
        status = client.get(f"/v1/campaigns/12/triggers/{second.json()['id']}")
        errors = client.get(f"/v1/campaigns/12/triggers/{second.json()['id']}/errors")
        unknown = client.get("/v1/campaigns/12/triggers/999")
    assert first.status_code == 200 and first.json() == {"id": 1}
    assert second.json() == {"id": 2}
    trigger = status.json()["trigger"]
    assert set(trigger) == {"id", "broadcast_id", "created_at", "processed_at"}
    assert (trigger["id"], trigger["broadcast_id"]) == (2, 12)
    assert errors.json() == {"errors": [], "next": 0}
    assert unknown.status_code == 404
    triggers = inspect(emulator, "broadcasts")["triggers"]
    assert [(t["broadcast_id"], t["audience"], len(t["people"])) for t in triggers] == [
        (12, "ui", 0),
        (12, "ids", 1),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"recipients": {}}, "empty recipients filter is not valid"),
        ({"ids": ["a"], "emails": ["b@x.test"]}, "give at most one audience, not emails, ids"),
        ({"ids": ["ghost"]}, "1 people in ids do not exist: ghost"),
        ({"emails": ["ghost@x.test"]}, "1 people in emails do not exist: ghost@x.test"),
    ],
    ids=["empty-recipients", "two-audiences", "missing-id", "missing-email"],
)
def test_broadcast_refusals_are_422(
    emulator: EmulatorServer, body: dict[str, Any], message: str
) -> None:
    with app_client(emulator) as client:
        response = client.post("/v1/campaigns/3/triggers", json=body)
    assert response.status_code == 422
    assert app_errors(response) == [{"detail": message, "status": "422"}]
    assert inspect(emulator, "broadcasts")["triggers"] == []


def test_broadcast_ignore_missing_flags_skip_unknown_people(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={})
    with app_client(emulator) as client:
        response = client.post(
            "/v1/campaigns/3/triggers", json={"ids": ["u1", "ghost"], "id_ignore_missing": True}
        )
    assert response.status_code == 200
    [trigger] = inspect(emulator, "broadcasts")["triggers"]
    assert len(trigger["people"]) == 1


def test_unknown_broadcast_id_is_404(emulator: EmulatorServer) -> None:
    with app_client(emulator) as client:
        response = client.post("/v1/campaigns/abc/triggers", json={})
    assert response.status_code == 404
    assert app_errors(response)[0]["status"] == "404"
