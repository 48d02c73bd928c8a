"""The emulator's behaviours read from Customer.io's published track-api.json (issue 13):
merges, error shapes, objects and relationships, delivery items, identifiers, transactional
fields, the App API reads and the endpoints without credentials."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cio_relay.emulator import EmulatorServer

from .helpers import app_client, inspect, plain_client, track_client


def batch(client: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return client.post("/api/v2/batch", json={"batch": list(items)})


def person_item(action: str, person_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "person", "action": action, "identifiers": {"id": person_id}, **extra}


def object_item(action: str, object_id: str, **extra: Any) -> dict[str, Any]:
    ids = {"object_type_id": "1", "object_id": object_id}
    return {"type": "object", "action": action, "identifiers": ids, **extra}


def acme(**attributes: Any) -> dict[str, Any]:
    link: dict[str, Any] = {"identifiers": {"object_type_id": "1", "object_id": "acme"}}
    if attributes:
        link["relationship_attributes"] = attributes
    return link


def linked_objects(server: EmulatorServer, identifier: str) -> list[tuple[str, Any]]:
    rows = inspect(server, f"people/{identifier}/relationships")["relationships"]
    return [(row["object_id"], row["relationship_attributes"]) for row in rows]


def test_a_merge_into_a_primary_that_does_not_exist_does_nothing(
    emulator: EmulatorServer,
) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/second", json={"plan": "pro"})
        body = {"primary": {"id": "ghost"}, "secondary": {"id": "second"}}
        assert client.post("/api/v1/merge_customers", json=body).status_code == 200
    assert inspect(emulator, "stats")["people"] == 1
    assert inspect(emulator, "people/second")["attributes"] == {"plan": "pro"}


def test_v2_errors_have_the_documented_shape(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        entity = client.post("/api/v2/entity", json={"type": "person", "action": "identify"})
        whole = client.post("/api/v2/batch", json={"batch": "nope"})
    assert entity.status_code == whole.status_code == 400
    assert entity.json() == {
        "errors": [
            {
                "reason": "required",
                "field": "identifiers",
                "message": "identifiers must contain exactly one of id, email, phone, cio_id",
            }
        ]
    }
    assert [set(error) for error in whole.json()["errors"]] == [{"reason", "field", "message"}]


def test_v1_errors_carry_both_documented_shapes(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.post("/api/v1/customers/u1/events", json={"data": {}})
    assert response.status_code == 400
    message = "event name must be present"
    assert response.json() == {"meta": {"error": message, "errors": [message]}}


def test_v2_person_relationships_are_stored_and_removed(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        identify = person_item("identify", "u1", cio_relationships=[acme(role="admin")])
        assert batch(client, identify).status_code == 200
        assert linked_objects(emulator, "u1") == [("acme", {"role": "admin"})]
        removal = person_item("delete_relationships", "u1", cio_relationships=[acme()])
        assert batch(client, removal).status_code == 200
    assert linked_objects(emulator, "u1") == []
    [stored] = inspect(emulator, "objects")["objects"]
    assert (stored["object_id"], stored["relationships"]) == ("acme", [])


def test_v1_cio_relationships_change_relationships_not_attributes(
    emulator: EmulatorServer,
) -> None:
    with track_client(emulator) as client:
        add = {"plan": "pro", "cio_relationships": {"relationships": [acme(seat="1")]}}
        client.put("/api/v1/customers/u1", json=add)
        assert linked_objects(emulator, "u1") == [("acme", {"seat": "1"})]
        remove = {
            "cio_relationships": {"action": "delete_relationships", "relationships": [acme()]}
        }
        client.put("/api/v1/customers/u1", json=remove)
    assert inspect(emulator, "people/u1")["attributes"] == {"plan": "pro"}
    assert linked_objects(emulator, "u1") == []


def test_v2_relationships_inside_attributes_are_only_an_attribute(
    emulator: EmulatorServer,
) -> None:
    """The v1 shape inside v2 attributes relates nothing: the documented v2 shape is the
    top-level array, so a client that sends the other one sees no relationship here either."""
    legacy = {"action": "add_relationships", "relationships": [acme()]}
    with track_client(emulator) as client:
        batch(client, person_item("identify", "u1", attributes={"cio_relationships": legacy}))
    assert linked_objects(emulator, "u1") == []


def test_objects_by_cio_object_id_and_anonymous_relationships(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        created = object_item("identify", "acme", attributes={"name": "Acme"})
        anonymous = object_item(
            "identify_anonymous",
            "acme",
            cio_relationships=[{"identifiers": {"anonymous_id": "anon-1"}}],
        )
        assert batch(client, created, anonymous).status_code == 200
        cio_object_id = inspect(emulator, "objects/1/acme")["cio_object_id"]
        update = {
            "type": "object",
            "action": "identify",
            "identifiers": {"cio_object_id": cio_object_id},
            "attributes": {"seats": 5},
        }
        unknown = {**update, "identifiers": {"cio_object_id": "nobody"}}
        assert batch(client, update, unknown).status_code == 200
        assert linked_objects(emulator, "anon-1") == [("acme", {})]
        client.put("/api/v1/customers/u1", json={"anonymous_id": "anon-1"})
    found = inspect(emulator, "objects/1/acme")
    assert found["attributes"] == {"name": "Acme", "seats": 5}
    assert inspect(emulator, "stats")["objects"] == 1  # the unknown cio_object_id was dropped
    assert linked_objects(emulator, "u1") == [("acme", {})]  # carried over when identified
    assert linked_objects(emulator, "anon-1") == []


def test_object_relationships_to_people_and_object_delete(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        links = [{"identifiers": {"id": "u1"}, "relationship_attributes": {"role": "owner"}}]
        batch(client, object_item("add_relationships", "acme", cio_relationships=links))
        assert linked_objects(emulator, "u1") == [("acme", {"role": "owner"})]
        members = inspect(emulator, "objects/1/acme")["relationships"]
        cio_id = inspect(emulator, "people/u1")["cio_id"]
        assert members == [{"cio_id": cio_id, "relationship_attributes": {"role": "owner"}}]
        batch(client, object_item("delete", "acme"))
    assert inspect(emulator, "objects")["objects"] == []
    assert linked_objects(emulator, "u1") == []


def test_a_merge_carries_relationships_over(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/first", json={})
        batch(client, person_item("add_relationships", "second", cio_relationships=[acme()]))
        body = {"primary": {"id": "first"}, "secondary": {"id": "second"}}
        client.post("/api/v1/merge_customers", json=body)
    assert linked_objects(emulator, "first") == [("acme", {})]


def test_delivery_items_need_a_device_token(emulator: EmulatorServer) -> None:
    item = {"type": "delivery", "action": "event", "identifiers": {"id": "d1"}, "name": "opened"}
    with track_client(emulator) as client:
        response = batch(client, item, {**item, "attributes": {"device_token": "tok"}})
    assert response.status_code == 207
    [error] = response.json()["errors"]
    assert (error["batch_index"], error["field"]) == (0, "attributes")
    [metric] = inspect(emulator, "metrics")["metrics"]
    assert metric["attributes"] == {"device_token": "tok"}


def test_identifiers_phone_and_the_150_byte_cap_on_id_only(emulator: EmulatorServer) -> None:
    long_email = "e" * 200 + "@x.test"
    with track_client(emulator) as client:
        phone = {"type": "person", "action": "identify", "identifiers": {"phone": "+15551234567"}}
        email = {**phone, "identifiers": {"email": long_email}}
        long_id = person_item("identify", "i" * 151)
        response = batch(client, phone, email, long_id)
    assert response.status_code == 207
    assert [e["batch_index"] for e in response.json()["errors"]] == [2]
    assert inspect(emulator, f"people/{long_email}")["email"] == long_email
    assert inspect(emulator, "stats")["people"] == 2


def test_an_anonymous_event_needs_no_anonymous_id(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.post("/api/v1/events", json={"name": "viewed", "type": "page"})
    assert response.status_code == 200
    [stored] = inspect(emulator, "events")["events"]
    assert (stored["name"], stored["type"], stored["anonymous_id"]) == ("viewed", "page", None)


def test_metrics_push_events_and_unsubscribe_need_no_credentials(
    emulator: EmulatorServer,
) -> None:
    with app_client(emulator) as client:
        send = {"identifiers": {"id": "u1"}, "transactional_message_id": 3, "to": "u1@x.test"}
        delivery_id = client.post("/v1/send/email", json=send).json()["delivery_id"]
    with plain_client(emulator) as client:
        metric = {"delivery_id": delivery_id, "metric": "deferred"}
        assert client.post("/api/v1/metrics", json=metric).status_code == 200
        assert client.post("/api/v1/push/events", json={}).status_code == 200
        unsubscribe = client.post(f"/unsubscribe/{delivery_id}", json={"unsubscribe": True})
        assert unsubscribe.status_code == 200
        assert client.put("/api/v1/customers/u1", json={}).status_code == 401
    sources = [m["source"] for m in inspect(emulator, "metrics")["metrics"]]
    assert sources == ["v1/metrics", "v1/push/events", "unsubscribe"]
    assert inspect(emulator, "people/u1")["attributes"]["unsubscribed"] is True


def test_a_form_submission_identifies_its_person(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        data = {"email": "ada@x.test", "first_name": "Ada", "form_name": "ignored"}
        response = client.post("/api/v1/forms/signup/submit", json={"data": data})
        refused = client.post("/api/v1/forms/signup/submit", json={"data": {"email": "a", "n": 1}})
    assert response.status_code == 204 and response.content == b""
    assert refused.status_code == 400
    assert inspect(emulator, "people/ada@x.test")["attributes"] == {
        "email": "ada@x.test",
        "first_name": "Ada",
    }
    assert [f["form_id"] for f in inspect(emulator, "forms")["forms"]] == ["signup"]


def test_region_answers_from_either_host(emulator: EmulatorServer) -> None:
    with track_client(emulator, headers={"Host": "track-eu.customer.io"}) as client:
        response = client.get("/api/v1/accounts/region")
    assert response.status_code == 200
    assert response.json() == {
        "url": "https://track.customer.io",
        "region": "us",
        "environment_id": 1,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": ["a@x.test"]}, "to"),
        ({"cc": ["a@x.test", "b@x.test"]}, "cc"),
        ({"bcc": ["a@x.test"]}, "bcc"),
    ],
)
def test_recipient_lists_are_refused(
    emulator: EmulatorServer, change: dict[str, Any], field: str
) -> None:
    body = {"identifiers": {"id": "u1"}, "transactional_message_id": 3, "to": "u1@x.test"}
    with app_client(emulator) as client:
        response = client.post("/v1/send/email", json={**body, **change})
    assert response.status_code == 400
    detail = response.json()["errors"][0]["detail"]
    assert detail == f"{field} must be a string of comma-separated addresses"


@pytest.mark.parametrize(
    ("to", "status"),
    [(None, 400), ("5551234", 400), ("+15551234567", 200), ("{{customer.phone}}", 200)],
)
def test_sms_to_is_required_in_e164(emulator: EmulatorServer, to: str | None, status: int) -> None:
    body: dict[str, Any] = {"identifiers": {"id": "u1"}, "transactional_message_id": 8}
    if to is not None:
        body["to"] = to
    with app_client(emulator) as client:
        assert client.post("/v1/send/sms", json=body).status_code == status


@pytest.mark.parametrize("channel", ["in_app", "inbox_message", "whatsapp"])
def test_other_transactional_channels(emulator: EmulatorServer, channel: str) -> None:
    body = {"identifiers": {"email": "u1@x.test"}, "transactional_message_id": "welcome"}
    with app_client(emulator) as client:
        response = client.post(f"/v1/send/{channel}", json=body)
    assert response.status_code == 200 and set(response.json()) == {"delivery_id", "queued_at"}
    assert inspect(emulator, "deliveries", channel=channel)["total"] == 1


def test_app_api_reads_people(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={"email": "Ada@x.test", "n": 3, "vip": True})
    with app_client(emulator) as client:
        found = client.get("/v1/customers", params={"email": "ada@x.test"})
        nobody = client.get("/v1/customers", params={"email": "ghost@x.test"})
        attributes = client.get("/v1/customers/u1/attributes")
        by_email = client.get("/v1/customers/Ada@x.test/attributes", params={"id_type": "email"})
        missing = client.get("/v1/customers/ghost/attributes")
    [identifiers] = found.json()["results"]
    assert (identifiers["id"], identifiers["email"]) == ("u1", "Ada@x.test")
    assert nobody.json() == {"results": []}
    customer = attributes.json()["customer"]
    assert customer["attributes"] == {
        "email": "Ada@x.test",
        "n": "3",
        "vip": "true",
        "id": "u1",
        "cio_id": identifiers["cio_id"],
    }
    assert customer["identifiers"] == identifiers and customer["unsubscribed"] is False
    assert by_email.json() == attributes.json()
    assert missing.status_code == 404


@pytest.mark.parametrize("empty", ["", None])
def test_null_or_an_empty_string_removes_an_attribute(
    emulator: EmulatorServer, empty: str | None
) -> None:
    with track_client(emulator) as client:
        assert client.put("/api/v1/customers/u1", json={"plan": "pro", "seats": 3}).is_success
        assert client.put("/api/v1/customers/u1", json={"plan": empty}).is_success
    attributes = inspect(emulator, "people/u1")["attributes"]
    assert "plan" not in attributes and attributes["seats"] == 3


def test_null_or_an_empty_string_removes_an_object_attribute(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        first = object_item("identify", "acme", attributes={"tier": "gold", "size": 9})
        assert batch(client, first).status_code == 200
        cleared = object_item("identify", "acme", attributes={"tier": "", "size": None})
        assert batch(client, cleared).status_code == 200
    assert inspect(emulator, "objects/1/acme")["attributes"] == {}
