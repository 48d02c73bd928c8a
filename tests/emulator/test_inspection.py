"""The ``/_emulator/`` inspection API: pagination, filters and its own errors."""

from __future__ import annotations

from cio_relay.emulator import EmulatorServer

from .helpers import inspect, plain_client, track_client


def test_people_are_paginated(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        for n in range(5):
            client.put(f"/api/v1/customers/p{n}", json={"n": n})
    page = inspect(emulator, "people", limit=2, offset=2)
    assert [p["id"] for p in page["people"]] == ["p2", "p3"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)


def test_events_filter_by_person_name_and_type(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.post("/api/v1/customers/a/events", json={"name": "x"})
        client.post("/api/v1/customers/a/events", json={"name": "/home", "type": "page"})
        client.post("/api/v1/customers/b/events", json={"name": "x"})
    assert inspect(emulator, "events")["total"] == 3
    assert inspect(emulator, "events", person="a")["total"] == 2
    assert inspect(emulator, "events", name="x")["total"] == 2
    assert inspect(emulator, "events", person="a", type="page")["events"][0]["name"] == "/home"
    second = inspect(emulator, "events", limit=1, offset=1)["events"]
    assert [(e["customer_id"], e["seq"]) for e in second] == [("a", 2)]


def test_people_by_cio_id_and_unknown_people(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        client.put("/api/v1/customers/a", json={})
    cio_id = inspect(emulator, "people/a")["cio_id"]
    assert inspect(emulator, f"people/cio_{cio_id}")["id"] == "a"
    with plain_client(emulator) as client:
        missing = client.get("/_emulator/people/nobody")
        bad_query = client.get("/_emulator/events", params={"limit": "many"})
        unknown = client.get("/_emulator/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "no person 'nobody'"}
    assert bad_query.status_code == 400
    assert bad_query.json() == {
        "error": "limit must be a non-negative integer of at most 18 ASCII digits, not 'many'"
    }
    assert unknown.status_code == 404


def test_inspection_needs_no_credentials_and_is_not_counted(emulator: EmulatorServer) -> None:
    with plain_client(emulator) as client:
        assert client.get("/_emulator/stats").status_code == 200
        assert client.get("/_emulator/segments").json() == {"segments": {}}
    assert inspect(emulator, "stats")["requests_total"] == 0
