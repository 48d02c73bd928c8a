"""Track API v1 against the emulator over 127.0.0.1: effects, limits and error strings."""

from __future__ import annotations

from typing import Any

import pytest
from ulid import ULID

from cio_relay.emulator import EmulatorServer

from .helpers import inspect, track_client


def person(server: EmulatorServer, identifier: str) -> Any:
    return inspect(server, f"people/{identifier}")


def meta_error(response: Any) -> str:
    """A v1 error: track-api.json documents ``meta.error`` (merge) and ``meta.errors`` (the
    shared 400), and the emulator gives both."""
    meta = response.json()["meta"]
    assert meta["errors"] == [meta["error"]]
    return str(meta["error"])


# --- effects -------------------------------------------------------------------------------


def test_identify_creates_then_updates_attributes(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        assert client.put("/api/v1/customers/u1", json={"plan": "free", "n": 1}).json() == {}
        client.put("/api/v1/customers/u1", json={"plan": "pro", "email": "Ada@Example.com"})
    found = person(emulator, "u1")
    assert found["id"] == "u1"
    assert found["attributes"] == {"plan": "pro", "n": 1, "email": "Ada@Example.com"}


def test_email_path_identifier_is_case_insensitive(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/ada@example.com", json={"plan": "pro"})
        client.put("/api/v1/customers/ADA@EXAMPLE.COM", json={"seats": 3})
    found = person(emulator, "Ada@Example.com")
    assert found["attributes"] == {"email": "ada@example.com", "plan": "pro", "seats": 3}
    assert inspect(emulator, "people")["total"] == 1


def test_cio_id_path_changes_the_id_and_unknown_cio_id_is_dropped(
    emulator: EmulatorServer,
) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/old-id", json={"a": 1})
        cio_id = person(emulator, "old-id")["cio_id"]
        assert client.put(f"/api/v1/customers/cio_{cio_id}", json={"id": "new-id"}).json() == {}
        assert client.put("/api/v1/customers/cio_doesnotexist", json={"a": 2}).status_code == 200
    assert person(emulator, "new-id")["cio_id"] == cio_id
    assert inspect(emulator, "people")["total"] == 1
    assert inspect(emulator, "stats")["ignored_unknown_cio_ids"] == 1


def test_conflicting_body_id_answers_200_and_is_not_applied(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.put("/api/v1/customers/u1", json={"id": "other", "plan": "pro"})
    assert response.status_code == 200
    found = person(emulator, "u1")
    assert found["id"] == "u1" and found["attributes"] == {"plan": "pro"}
    assert inspect(emulator, "stats")["attribute_update_failures"] == 1


def test_update_only_identify_does_not_create(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        assert client.put("/api/v1/customers/ghost", json={"_update": True}).status_code == 200
    assert inspect(emulator, "people")["total"] == 0


def test_delete_removes_the_person(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={"a": 1})
        assert client.delete("/api/v1/customers/u1").json() == {}
    assert inspect(emulator, "people")["total"] == 0


def test_events_page_views_and_anonymous_events_are_stored(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.post("/api/v1/customers/u1/events", json={"name": " signup ", "data": {"a": 1}})
        client.post("/api/v1/customers/u1/events", json={"name": "/pricing", "type": "page"})
        client.post("/api/v1/events", json={"name": "visit", "anonymous_id": "anon-1"})
        client.put("/api/v1/customers/u1", json={"anonymous_id": "anon-1"})
    events = person(emulator, "u1")["events"]
    assert [(e["name"], e["type"]) for e in events] == [
        ("signup", "event"),  # names are trimmed
        ("/pricing", "page"),
        ("visit", "event"),  # the anonymous event joined the person with its anonymous_id
    ]
    assert events[0]["data"] == {"a": 1}
    assert inspect(emulator, "events", name="visit")["total"] == 1


def test_an_event_id_seen_before_is_answered_200_and_stored_once(
    emulator: EmulatorServer,
) -> None:
    event = {"name": "paid", "id": str(ULID())}
    with track_client(emulator) as client:
        first = client.post("/api/v1/customers/u1/events", json=event)
        again = client.post("/api/v1/customers/u1/events", json=event)
    assert first.status_code == again.status_code == 200
    stats = inspect(emulator, "stats")
    assert stats["events_accepted"] == 1
    assert stats["duplicate_event_ids"] == 1
    assert inspect(emulator, "events", person="u1")["total"] == 1


def test_devices_accept_flat_and_nested_extras_and_delete(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        flat = {"device": {"id": "tok-1", "platform": "ios", "app_version": "1.2"}}
        nested = {"device": {"id": "tok-2", "platform": "android", "attributes": {"os": "14"}}}
        assert client.put("/api/v1/customers/u1/devices", json=flat).json() == {}
        assert client.put("/api/v1/customers/u1/devices", json=nested).json() == {}
        devices = {d["id"]: d for d in person(emulator, "u1")["devices"]}
        assert devices["tok-1"]["attributes"] == {"app_version": "1.2"}
        assert devices["tok-2"]["attributes"] == {"os": "14"}
        assert client.delete("/api/v1/customers/u1/devices/tok-1").json() == {}
    assert [d["id"] for d in person(emulator, "u1")["devices"]] == ["tok-2"]


def test_suppress_and_unsuppress(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={})
        client.post("/api/v1/customers/u1/suppress")
        assert person(emulator, "u1")["suppressed"] is True
        client.post("/api/v1/customers/u1/unsuppress")
    assert person(emulator, "u1")["suppressed"] is False


def test_merge_folds_the_secondary_into_the_primary(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/main", json={"plan": "pro"})
        client.put("/api/v1/customers/dup", json={"plan": "free", "city": "Oslo"})
        client.post("/api/v1/customers/dup/events", json={"name": "e"})
        body = {"primary": {"id": "main"}, "secondary": {"id": "dup"}}
        assert client.post("/api/v1/merge_customers", json=body).json() == {}
    merged = person(emulator, "main")
    assert merged["attributes"] == {"plan": "pro", "city": "Oslo"}
    assert [e["name"] for e in merged["events"]] == ["e"]
    assert inspect(emulator, "people")["total"] == 1


def test_segments_metrics_push_events_and_region(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={})
        added = client.post("/api/v1/segments/7/add_customers", json={"ids": ["u1", "nobody"]})
        assert added.json() == {}
        metric = {"delivery_id": "d1", "metric": "opened", "timestamp": 1}
        assert client.post("/api/v1/metrics", json=metric).json() == {}
        push = {"delivery_id": "d2", "device_id": "t", "event": "opened", "timestamp": 1}
        assert client.post("/api/v1/push/events", json=push).json() == {}
        region = client.get("/api/v1/accounts/region").json()
    assert person(emulator, "u1")["segments"] == ["7"]
    assert [m["delivery_id"] for m in inspect(emulator, "metrics")["metrics"]] == ["d1", "d2"]
    assert region["region"] == "us" and region["url"] == "https://track.customer.io"


def test_identifiers_with_slashes_survive_percent_encoding(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        assert client.put("/api/v1/customers/a%2Fb", json={"x": 1}).status_code == 200
    assert person(emulator, "a%2Fb")["id"] == "a/b"


def test_requests_are_counted_by_endpoint_and_status(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/u1", json={})
        client.put("/api/v1/customers/u2", json={"x" * 151: 1})
        client.get("/api/v1/nowhere")
    requests = inspect(emulator, "stats")["requests"]
    assert requests["PUT /api/v1/customers/{identifier}"] == {"200": 1, "400": 1}
    assert requests["unknown"] == {"404": 1}


# --- limits and error strings (customerio-api.md §4, D-INV) --------------------------------

LIMIT_CASES = [
    pytest.param(
        "PUT",
        "/api/v1/customers/" + "i" * 151,
        {},
        "id cannot be longer than 150 bytes (was 151)",
        id="id-over-150-bytes",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1",
        {f"a{i}": i for i in range(301)},
        "cannot identify more than 300 attributes in one request",
        id="301-attributes",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1",
        {"n" * 151: 1},
        "attribute name cannot be longer than 150 bytes",
        id="attribute-name-151",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1",
        {"bio": "é" * 501},
        "value for attribute 'bio' cannot be longer than 1000 bytes",
        id="attribute-value-1002-utf8-bytes",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1",
        {"tags": ["x" * 100] * 10},
        "value for attribute 'tags' cannot be longer than 1000 bytes",
        id="attribute-value-json-size",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1",
        {"cio_relationships": {"relationships": ["r" * 100] * 1000}},
        "value for attribute 'cio_relationships.relationships' cannot be longer than 100000 bytes",
        id="relationships-over-100kb",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1",
        {"id": "i" * 151},
        "id cannot be longer than 150 bytes (was 151)",
        id="body-id-over-150-bytes",
    ),
    pytest.param(
        "POST",
        "/api/v1/customers/u1/events",
        {"name": "n" * 101},
        "event name cannot be longer than 100 bytes",
        id="event-name-101",
    ),
    pytest.param(
        "POST",
        "/api/v1/customers/u1/events",
        {"name": "e", "data": {"blob": "x" * 100_000}},
        "event data cannot be longer than 100000 bytes",
        id="event-data-over-100000",
    ),
    pytest.param(
        "POST",
        "/api/v1/customers/u1/events",
        {"name": "e", "data": [1, 2]},
        "event data must be an object",
        id="event-data-not-object",
    ),
    pytest.param(
        "POST",
        "/api/v1/customers/u1/events",
        {"data": {}},
        "event name must be present",
        id="event-name-missing",
    ),
    pytest.param(
        "POST",
        "/api/v1/customers/u1/events",
        {"name": "e", "type": {"page": True}},
        "event type must be one of event, page, screen",
        id="event-type-not-a-string",
    ),
    pytest.param(
        "POST",
        "/api/v1/customers/u1/events",
        {"name": "e", "id": "not-a-ulid"},
        "event id must be a valid ULID (26 characters, Crockford base32)",
        id="event-id-not-ulid",
    ),
    pytest.param(
        "PUT",
        "/api/v1/customers/u1/devices",
        {"device": {"id": "t", "platform": "windows"}},
        "device platform must be ios or android",
        id="device-platform",
    ),
    pytest.param(
        "POST",
        "/api/v1/merge_customers",
        {"primary": {"id": "a", "email": "b@x"}, "secondary": {"id": "c"}},
        "primary must contain exactly one of id, email, cio_id",
        id="merge-two-identifiers",
    ),
    pytest.param(
        "POST",
        "/api/v1/segments/1/add_customers",
        {"ids": [str(i) for i in range(1001)]},
        "cannot change more than 1000 ids in one request (was 1001)",
        id="segment-1001-ids",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), LIMIT_CASES)
def test_limits_answer_400_with_the_documented_error(
    emulator: EmulatorServer, method: str, path: str, body: Any, message: str
) -> None:
    with track_client(emulator) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 400
    assert meta_error(response) == message
    assert inspect(emulator, "people")["total"] == 0
    assert inspect(emulator, "stats")["events_accepted"] == 0


def test_values_at_the_limits_are_accepted(emulator: EmulatorServer) -> None:
    attributes = {f"a{i}": i for i in range(299)} | {"n" * 150: "v" * 1000}
    with track_client(emulator) as client:
        assert client.put("/api/v1/customers/" + "i" * 150, json=attributes).status_code == 200
        event = {"name": "n" * 100, "data": {"blob": "x" * (100_000 - 11)}}
        assert client.post("/api/v1/customers/u1/events", json=event).status_code == 200


def test_a_body_that_is_not_json_is_refused(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.put("/api/v1/customers/u1", content=b"{nope")
    assert response.status_code == 400
    assert meta_error(response) == "request body must be valid JSON"
