"""Track API v2: ``/api/v2/entity`` and ``/api/v2/batch`` with 207 partial answers."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from ulid import ULID

from cio_relay.emulator import EmulatorServer

from .helpers import inspect, track_client


def identify(person_id: str, **attributes: Any) -> dict[str, Any]:
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": person_id},
        "attributes": attributes,
    }


def event(person_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "person",
        "action": "event",
        "identifiers": {"id": person_id},
        "name": name,
        **extra,
    }


def v2_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """A v2 error answer, in its documented shape: ``{"errors": [{reason, field, message}]}``
    (track-api.json, components/schemas/errors)."""
    body = response.json()
    assert list(body) == ["errors"]
    errors: list[dict[str, Any]] = body["errors"]
    return errors


def test_entity_applies_one_operation(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.post("/api/v2/entity", json=identify("u1", plan="pro"))
    assert response.status_code == 200 and response.json() == {}
    assert inspect(emulator, "people/u1")["attributes"] == {"plan": "pro"}


def test_entity_over_32000_bytes_is_400(emulator: EmulatorServer) -> None:
    body = orjson.dumps(identify("u1", **{f"a{i}": "x" * 900 for i in range(36)}))
    with track_client(emulator) as client:
        response = client.post("/api/v2/entity", content=body)
    assert response.status_code == 400
    assert v2_errors(response) == [
        {
            "reason": "too_large",
            "field": "body",
            "message": f"request body cannot be larger than 32000 bytes (was {len(body)})",
        }
    ]


def test_batch_of_mixed_operations_answers_200(emulator: EmulatorServer) -> None:
    batch = [
        identify("u1", plan="pro"),
        event("u1", "paid", attributes={"total": 3}),
        event("u1", "legacy", data={"total": 4}),
        {"type": "person", "action": "page", "identifiers": {"id": "u1"}, "name": "/home"},
        {
            "type": "person",
            "action": "add_device",
            "identifiers": {"id": "u1"},
            "device": {"token": "tok", "platform": "ios"},
        },
        {"type": "person", "action": "suppress", "identifiers": {"email": "x@example.com"}},
        {
            "type": "object",
            "action": "identify",
            "identifiers": {"object_type_id": "1", "object_id": "acme"},
            "attributes": {"name": "Acme"},
        },
        {
            "type": "delivery",
            "action": "event",
            "identifiers": {"id": "dlv-1"},
            "name": "opened",
            "attributes": {"device_token": "tok"},
        },
    ]
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", json={"batch": batch})
    assert response.status_code == 200 and response.json() == {}
    found = inspect(emulator, "people/u1")
    # Both property containers are accepted (which one is canonical is UNCONFIRMED).
    assert [(e["name"], e["type"], e["data"]) for e in found["events"]] == [
        ("paid", "event", {"total": 3}),
        ("legacy", "event", {"total": 4}),
        ("/home", "page", {}),
    ]
    assert [d["id"] for d in found["devices"]] == ["tok"]
    assert inspect(emulator, "people/x@example.com")["suppressed"] is True
    assert inspect(emulator, "objects")["objects"][0]["attributes"] == {"name": "Acme"}
    assert inspect(emulator, "metrics")["metrics"][0]["metric"] == "opened"
    assert inspect(emulator, "stats")["batch_items_accepted"] == len(batch)


def test_batch_answers_207_naming_each_refused_item(emulator: EmulatorServer) -> None:
    batch = [
        identify("ok", plan="pro"),
        {"type": "person", "action": "identify", "identifiers": {"id": "a", "email": "b@x"}},
        event("u1", "n" * 101),
        identify("big", **{"n" * 151: 1}),
        {"type": "nonsense", "action": "identify"},
        event("u1", "fine", id="not-a-ulid"),
        event("u1", "good"),
        {"type": "person", "action": ["event"], "identifiers": {"id": "u1"}, "name": "n"},
    ]
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", json={"batch": batch})
    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [(e["batch_index"], e["field"]) for e in errors] == [
        (1, "identifiers"),
        (2, "name"),
        (3, "attributes." + "n" * 40),
        (4, "type"),
        (5, "id"),
        (7, "action"),
    ]
    assert (
        errors[0]["message"] == "identifiers must contain exactly one of id, email, phone, cio_id"
    )
    assert errors[1] == {
        "batch_index": 2,
        "reason": "too_long",
        "field": "name",
        "message": "event name cannot be longer than 100 bytes",
    }
    assert errors[2]["message"] == "attribute name cannot be longer than 150 bytes"
    # The good items were applied, the refused ones were not.
    people = {p["id"] for p in inspect(emulator, "people")["people"]}
    assert people == {"ok", "u1"}
    assert [e["name"] for e in inspect(emulator, "events")["events"]] == ["good"]
    stats = inspect(emulator, "stats")
    assert (stats["batch_items_accepted"], stats["batch_items_refused"]) == (2, 6)


def test_batch_item_over_32000_bytes_is_refused_alone(emulator: EmulatorServer) -> None:
    big = event("u1", "big", attributes={"blob": "x" * 32_000})
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", json={"batch": [big, event("u1", "small")]})
    assert response.status_code == 207
    [error] = response.json()["errors"]
    size = len(orjson.dumps(big))
    assert error["batch_index"] == 0 and error["reason"] == "too_large"
    assert error["message"] == f"operation cannot be larger than 32000 bytes (was {size})"
    assert [e["name"] for e in inspect(emulator, "events")["events"]] == ["small"]


def test_batch_over_500000_bytes_is_400_and_applies_nothing(emulator: EmulatorServer) -> None:
    items = [event(f"u{i}", "e", attributes={"blob": "x" * 25_000}) for i in range(21)]
    body = orjson.dumps({"batch": items})
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", content=body)
    assert response.status_code == 400
    assert v2_errors(response)[0]["message"] == (
        f"batch request body cannot be larger than 500000 bytes (was {len(body)})"
    )
    assert inspect(emulator, "stats")["events_accepted"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "request body must be a JSON object"),
        (b'{"batch": {}}', "batch must be a non-empty list of operations"),
        (b'{"batch": []}', "batch must be a non-empty list of operations"),
        (b"nope", "request body must be valid JSON"),
    ],
)
def test_malformed_batches_are_400(emulator: EmulatorServer, body: bytes, message: str) -> None:
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", content=body)
    assert response.status_code == 400
    assert [e["message"] for e in v2_errors(response)] == [message]


def test_duplicate_event_ids_in_a_batch_are_accepted_and_stored_once(
    emulator: EmulatorServer,
) -> None:
    event_id = str(ULID())
    batch = [event("u1", "paid", id=event_id), event("u1", "paid", id=event_id)]
    with track_client(emulator) as client:
        assert client.post("/api/v2/batch", json={"batch": batch}).status_code == 200
        assert client.post("/api/v2/batch", json={"batch": batch[:1]}).status_code == 200
    stats = inspect(emulator, "stats")
    assert (stats["events_accepted"], stats["duplicate_event_ids"]) == (1, 2)


def test_merge_and_delete_in_a_batch(emulator: EmulatorServer) -> None:
    batch = [
        identify("main", plan="pro"),
        identify("dup", city="Oslo"),
        identify("gone"),
        {
            "type": "person",
            "action": "merge",
            "primary": {"id": "main"},
            "secondary": {"id": "dup"},
        },
        {"type": "person", "action": "delete", "identifiers": {"id": "gone"}},
    ]
    with track_client(emulator) as client:
        assert client.post("/api/v2/batch", json={"batch": batch}).status_code == 200
    assert [p["id"] for p in inspect(emulator, "people")["people"]] == ["main"]
    assert inspect(emulator, "people/main")["attributes"] == {"plan": "pro", "city": "Oslo"}


def test_an_event_with_attributes_and_data_keeps_both_and_attributes_win(
    emulator: EmulatorServer,
) -> None:
    batch = [event("u1", "paid", attributes={"a": 1, "b": 2}, data={"a": 0, "c": 3})]
    with track_client(emulator) as client:
        assert client.post("/api/v2/batch", json={"batch": batch}).status_code == 200
    [stored] = inspect(emulator, "events")["events"]
    assert stored["data"] == {"a": 1, "b": 2, "c": 3}
