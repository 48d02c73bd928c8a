"""Odd input to the emulator (issue 11): numbers that are not ASCII digits, paths that are not
UTF-8, lists and objects where a name belongs. Each is an answer in the emulator's own shapes,
never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cio_relay.emulator import EmulatorServer, create_app

from .helpers import app_client, inspect, plain_client, track_client

NOT_NUMBERS = ["²", "١٢", "1" * 5000, "-1", "1e3", " 7"]


@pytest.mark.parametrize("endpoint", ["people", "events", "deliveries", "requests"])
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_paging_numbers_must_be_ascii_digits(
    emulator: EmulatorServer, endpoint: str, name: str
) -> None:
    with plain_client(emulator) as client:
        for text in NOT_NUMBERS:
            response = client.get(f"/_emulator/{endpoint}", params={name: text})
            assert response.status_code == 400, (text[:10], response.text)
            assert response.json()["error"].startswith(f"{name} must be a non-negative integer")
            assert len(response.json()["error"]) < 200


def test_flush_timeout_must_be_ascii_digits(emulator: EmulatorServer) -> None:
    with plain_client(emulator) as client:
        response = client.post("/_emulator/webhooks/flush", params={"timeout": "²"})
    assert response.status_code == 400


@pytest.mark.parametrize("raw_id", ["%C2%B2", "%D9%A1%D9%A2", "1" * 5000])
def test_broadcast_ids_that_are_not_ascii_digits_are_not_found(
    emulator: EmulatorServer, raw_id: str
) -> None:
    with app_client(emulator) as client:
        trigger = client.post(f"/v1/campaigns/{raw_id}/triggers", json={})
        real = client.post("/v1/campaigns/12/triggers", json={}).json()["id"]
        status = client.get(f"/v1/campaigns/12/triggers/{raw_id}")
        errors = client.get(f"/v1/campaigns/{raw_id}/triggers/{real}/errors")
    for response in (trigger, status, errors):
        assert response.status_code == 404
        assert response.json()["errors"][0]["status"] == "404"
    assert [t["broadcast_id"] for t in inspect(emulator, "broadcasts")["triggers"]] == [12]


def test_a_path_that_is_not_utf8_is_400_and_names_nobody(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        answers = [client.put(f"/api/v1/customers/{raw}", json={}) for raw in ("%ff", "%fe")]
        answers.append(client.post("/api/v1/customers/caf%E9/events", json={"name": "x"}))
    for response in answers:
        assert response.status_code == 400
        assert response.json() == {
            "meta": {"error": "request path is not UTF-8 once percent-decoded"}
        }
    assert inspect(emulator, "people")["total"] == 0
    assert inspect(emulator, "stats")["requests"]["unknown"] == {"400": 3}


async def test_raw_bytes_outside_ascii_in_the_path_are_400_not_500() -> None:
    app = create_app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/api/v1/customers/\ufffd",
        "raw_path": b"/api/v1/customers/\xff",
        "query_string": b"",
        "headers": [],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert app.state.people == {}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/metrics", {"delivery_id": "d1", "metric": ["sent"]}),
        ("/api/v1/push/events", {"delivery_id": "d1", "event": {"opened": 1}}),
        ("/api/v1/customers/u1/devices", {"device": {"id": "t", "platform": ["ios"]}}),
        ("/api/v1/customers/u1/events", {"name": "e", "type": ["page"]}),
    ],
)
def test_a_list_or_object_where_a_v1_name_belongs_is_400(
    emulator: EmulatorServer, path: str, body: dict[str, Any]
) -> None:
    with track_client(emulator) as client:
        response = client.request("PUT" if path.endswith("devices") else "POST", path, json=body)
    assert response.status_code == 400, response.text
    assert "must be" in response.json()["meta"]["error"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (
            {
                "type": "person",
                "action": "add_device",
                "identifiers": {"id": "u1"},
                "device": {"id": "t", "platform": {"ios": True}},
            },
            "device.platform",
        ),
        (
            {"type": "delivery", "action": "event", "identifiers": {"id": "d1"}, "name": ["x"]},
            "name",
        ),
    ],
)
def test_a_list_or_object_where_a_v2_name_belongs_refuses_that_item(
    emulator: EmulatorServer, item: dict[str, Any], field: str
) -> None:
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", json={"batch": [item]})
    assert response.status_code == 207, response.text
    [error] = response.json()["errors"]
    assert (error["batch_index"], error["field"]) == (0, field)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"v": value}
    return value


def test_a_v2_item_nested_too_deeply_to_store_refuses_that_item(
    emulator: EmulatorServer,
) -> None:
    deep = {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": "deep"},
        "attributes": {"a": _nested(300), "pad": "x" * 33_000},
    }
    fine = {"type": "person", "action": "identify", "identifiers": {"id": "fine"}}
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", content=json.dumps({"batch": [deep, fine]}))
    assert response.status_code == 207, response.text
    [error] = response.json()["errors"]
    assert error["batch_index"] == 0
    assert "nested too deeply" in error["message"]
    assert inspect(emulator, "people")["total"] == 1  # the item beside it is applied


def test_a_v1_body_nested_too_deeply_to_store_is_400(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.put("/api/v1/customers/deep", content=json.dumps({"a": _nested(300)}))
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["meta"]["error"]
