"""The ingestion routes of issue 13's operation kinds over real HTTP: template sends (WhatsApp,
in-app, inbox), a person's and an object's relationships, objects, manual segments and delivery
metrics. Each route stores the operation ``Relay`` would (read back from the outbox), refuses a
bad input with 422 naming the field (and the limit and size for a documented limit), and
refuses a request without a key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cio_relay.operations import Kind, Operation
from cio_relay.outbox.base import Outbox
from cio_relay.server.ingest import INGEST_ROUTES

_ACME = {"object_type_id": "1", "object_id": "acme"}

# (method, path, body, the kind stored, what its payload must hold, its identifiers)
ROUTES: list[tuple[str, str, Any, Kind, dict[str, Any], dict[str, str]]] = [
    (
        "POST",
        "/v1/transactional/whatsapp",
        {
            "identifiers": {"id": "u-1"},
            "transactional_message_id": "order_shipped",
            "to": "+15551234567",
            "message_data": {"order": 7},
            "tracked": False,
        },
        Kind.SEND_WHATSAPP,
        {
            "to": "+15551234567",
            "transactional_message_id": "order_shipped",
            "message_data": {"order": 7},
            "tracked": False,
        },
        {"id": "u-1"},
    ),
    (
        "POST",
        "/v1/transactional/in_app",
        {"identifiers": {"email": "ada@example.com"}, "transactional_message_id": 12},
        Kind.SEND_IN_APP,
        {"transactional_message_id": 12},
        {"email": "ada@example.com"},
    ),
    (
        "POST",
        "/v1/transactional/inbox_message",
        {"identifiers": {"id": "u-2"}, "transactional_message_id": 13, "language": "fr"},
        Kind.SEND_INBOX_MESSAGE,
        {"transactional_message_id": 13, "language": "fr"},
        {"id": "u-2"},
    ),
    (
        "POST",
        "/v1/people/u-3/relationships",
        {
            "relationships": [
                _ACME,
                {
                    "identifiers": {"object_type_id": 2, "object_id": "course-9"},
                    "relationship_attributes": {"role": "student"},
                },
            ]
        },
        Kind.ADD_RELATIONSHIPS,
        {
            "relationships": [
                {"identifiers": _ACME},
                {
                    "identifiers": {"object_type_id": "2", "object_id": "course-9"},
                    "relationship_attributes": {"role": "student"},
                },
            ]
        },
        {"id": "u-3"},
    ),
    (
        "DELETE",
        "/v1/people/bo%40example.com/relationships?id_type=email",
        {"relationships": [{"cio_object_id": "obb7fd050101"}]},
        Kind.DELETE_RELATIONSHIPS,
        {"relationships": [{"identifiers": {"cio_object_id": "obb7fd050101"}}]},
        {"email": "bo@example.com"},
    ),
    (
        "POST",
        "/v1/objects/1/acme",
        {"attributes": {"name": "Acme"}, "people": ["u-4", {"email": "cy@example.com"}]},
        Kind.IDENTIFY_OBJECT,
        {
            "object": _ACME,
            "attributes": {"name": "Acme"},
            "relationships": [
                {"identifiers": {"id": "u-4"}},
                {"identifiers": {"email": "cy@example.com"}},
            ],
        },
        {},
    ),
    (
        "DELETE",
        "/v1/objects/1/gone",
        None,
        Kind.DELETE_OBJECT,
        {"object": {"object_type_id": "1", "object_id": "gone"}},
        {},
    ),
    (
        "POST",
        "/v1/objects/3/team-a/anonymous",
        {"anonymous_id": "anon-1", "relationship_attributes": {"invited": True}},
        Kind.IDENTIFY_ANONYMOUS,
        {
            "object": {"object_type_id": "3", "object_id": "team-a"},
            "relationships": [
                {
                    "identifiers": {"anonymous_id": "anon-1"},
                    "relationship_attributes": {"invited": True},
                }
            ],
        },
        {},
    ),
    (
        "POST",
        "/v1/objects/1/globex/relationships",
        {"people": [{"identifiers": "u-5", "relationship_attributes": {"seat": 1}}]},
        Kind.ADD_OBJECT_RELATIONSHIPS,
        {
            "object": {"object_type_id": "1", "object_id": "globex"},
            "relationships": [
                {"identifiers": {"id": "u-5"}, "relationship_attributes": {"seat": 1}}
            ],
        },
        {},
    ),
    (
        "DELETE",
        "/v1/objects/1/initech/relationships",
        {"people": [{"cio_id": "a1b2"}]},
        Kind.DELETE_OBJECT_RELATIONSHIPS,
        {
            "object": {"object_type_id": "1", "object_id": "initech"},
            "relationships": [{"identifiers": {"cio_id": "a1b2"}}],
        },
        {},
    ),
    (
        "POST",
        "/v1/segments/42/people",
        {"ids": ["u-6", "u-7"]},
        Kind.ADD_TO_SEGMENT,
        {"segment_id": 42, "ids": ["u-6", "u-7"], "id_type": "id"},
        {},
    ),
    (
        "DELETE",
        "/v1/segments/43/people",
        {"ids": ["dee@example.com"], "id_type": "email"},
        Kind.REMOVE_FROM_SEGMENT,
        {"segment_id": 43, "ids": ["dee@example.com"], "id_type": "email"},
        {},
    ),
    (
        "POST",
        "/v1/metrics",
        {
            "delivery_id": "dlv-1",
            "metric": "clicked",
            "recipient": "ada@example.com",
            "href": "https://x.io/a",
            "timestamp": 1_700_000_000,
        },
        Kind.TRACK_METRIC,
        {
            "delivery_id": "dlv-1",
            "metric": "clicked",
            "recipient": "ada@example.com",
            "href": "https://x.io/a",
            "timestamp": 1_700_000_000,
        },
        {},
    ),
    (
        "POST",
        "/v1/push/events",
        {"delivery_id": "dlv-2", "event": "opened", "device_id": "tok-1", "timestamp": 1_700_000_1},
        Kind.TRACK_PUSH_METRIC,
        {"delivery_id": "dlv-2", "event": "opened", "device_id": "tok-1", "timestamp": 1_700_000_1},
        {},
    ),
]


def _stored(outbox: Outbox) -> dict[str, Operation]:
    """Every pending operation by op id (one lease per ordering key; these tests use distinct
    people, objects, segments and deliveries)."""
    return {lease.op.op_id: lease.op for lease in outbox.lease(10_000, 60)}


def _request(
    client: httpx.Client, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    # httpx's .delete() takes no body; request() sends one with any method.
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "payload", "identifiers"),
    ROUTES,
    ids=[f"{route[0]} {route[1]}" for route in ROUTES],
)
def test_each_route_stores_its_operation_with_the_request_in_it(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    method: str,
    path: str,
    body: Any,
    kind: Kind,
    payload: dict[str, Any],
    identifiers: dict[str, str],
) -> None:
    response = _request(client, method, path, body, auth)
    assert response.status_code == 202, response.text
    (op_id,) = response.json()["op_ids"]
    op = _stored(outbox)[op_id]
    assert op.kind is kind
    assert op.identifiers == identifiers
    assert {name: op.payload.get(name) for name in payload} == payload


def test_every_new_kind_is_served_by_a_route() -> None:
    served = {name for _method, _path, name, _model in INGEST_ROUTES}
    assert {route[3].value for route in ROUTES} <= served


def test_a_batch_carries_every_new_kind_stored_together_in_order(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    items: list[dict[str, Any]] = [
        {
            "type": "send_whatsapp",
            "identifiers": {"id": "b-1"},
            "transactional_message_id": 1,
            "to": "{{customer.phone}}",
        },
        {"type": "send_in_app", "identifiers": {"id": "b-2"}, "transactional_message_id": 2},
        {"type": "send_inbox_message", "identifiers": {"id": "b-3"}, "transactional_message_id": 3},
        {"type": "add_relationships", "person": "b-4", "relationships": [_ACME]},
        {"type": "delete_relationships", "person": {"email": "b5@x.io"}, "relationships": [_ACME]},
        {"type": "identify_object", "object": {"cio_object_id": "obb1"}, "attributes": {"a": 1}},
        {"type": "delete_object", "object": {"object_type_id": "1", "object_id": "a/b"}},
        {
            "type": "identify_anonymous",
            "object": {"object_type_id": "1", "object_id": "o-3"},
            "anonymous_id": "anon-9",
        },
        {
            "type": "add_object_relationships",
            "object": {"object_type_id": "1", "object_id": "o-4"},
            "people": ["b-6"],
        },
        {
            "type": "delete_object_relationships",
            "object": {"object_type_id": "1", "object_id": "o-5"},
            "people": [{"email": "b7@x.io"}],
        },
        {"type": "add_to_segment", "segment_id": 7, "ids": ["b-8"]},
        {"type": "remove_from_segment", "segment_id": "8", "ids": ["c1"], "id_type": "cio_id"},
        {"type": "track_metric", "delivery_id": "bd-1", "metric": "delivered"},
        {"type": "track_push_metric", "delivery_id": "bd-2", "event": "opened", "device_id": "t"},
    ]
    response = client.post("/v1/batch", json={"operations": items}, headers=auth)
    assert response.status_code == 202, response.text
    op_ids = response.json()["op_ids"]
    stored = _stored(outbox)
    assert [stored[op_id].kind.value for op_id in op_ids] == [item["type"] for item in items]
    by_kind = {stored[op_id].kind: stored[op_id] for op_id in op_ids}
    # What a path cannot carry: an object by cio_object_id, an object id with a '/'.
    assert by_kind[Kind.IDENTIFY_OBJECT].payload["object"] == {"cio_object_id": "obb1"}
    assert by_kind[Kind.DELETE_OBJECT].payload["object"]["object_id"] == "a/b"
    assert by_kind[Kind.REMOVE_FROM_SEGMENT].payload["segment_id"] == 8


# (method, path, body, the field named, the limit and size of a documented limit or None)
BAD_INPUTS: list[tuple[str, str, Any, str, tuple[int, int] | None]] = [
    ("POST", "/v1/objects/one/acme", {}, "object.object_type_id", None),
    ("POST", "/v1/objects/0/acme", {}, "object.object_type_id", None),
    ("POST", "/v1/objects/1/" + "o" * 151, {}, "object.object_id", (150, 151)),
    # %2F is decoded to a separator before routing: strictly decoded, the id is refused.
    ("DELETE", "/v1/objects/1/a%2Frelationships", {"people": ["u"]}, "object_id", None),
    ("POST", "/v1/objects/1/acme", {"attributes": {"a": "v" * 1001}}, "attributes.a", None),
    (
        "POST",
        "/v1/objects/1/acme",
        {"people": [{"phone": "+15551234567"}]},
        "people[0].identifiers",
        None,
    ),
    ("POST", "/v1/objects/1/acme/anonymous", {"attributes": {}}, "anonymous_id", None),
    ("POST", "/v1/objects/1/acme/anonymous", {"anonymous_id": " "}, "anonymous_id", None),
    ("POST", "/v1/objects/1/acme/relationships", {"people": []}, "people", None),
    ("POST", "/v1/people/u-1/relationships", {"relationships": []}, "relationships", None),
    (
        "POST",
        "/v1/people/u-1/relationships",
        {"relationships": [{"object_type_id": "x", "object_id": "a"}]},
        "relationships[0].identifiers.object_type_id",
        None,
    ),
    (
        "POST",
        "/v1/people/u-1/relationships",
        {"relationships": [{"id": 1}]},
        "relationships[0].object_type_id",
        None,
    ),
    ("POST", "/v1/segments/0/people", {"ids": ["u-1"]}, "segment_id", None),
    (
        "POST",
        "/v1/segments/5/people",
        {"ids": [f"u-{i}" for i in range(1001)]},
        "ids",
        (1000, 1001),
    ),
    ("DELETE", "/v1/segments/5/people", {"ids": ["u-1"], "id_type": "phone"}, "id_type", None),
    ("POST", "/v1/segments/5/people", {"ids": ["i" * 151]}, "ids[0].id", (150, 151)),
    ("POST", "/v1/metrics", {"delivery_id": "d", "metric": "read"}, "metric", None),
    ("POST", "/v1/metrics", {"delivery_id": " ", "metric": "opened"}, "delivery_id", None),
    ("POST", "/v1/push/events", {"delivery_id": "d", "event": "opened"}, "device_id", None),
    (
        "POST",
        "/v1/transactional/whatsapp",
        {"identifiers": {"id": "u"}, "transactional_message_id": 1, "to": "555-1234"},
        "to",
        None,
    ),
    ("POST", "/v1/transactional/in_app", {"transactional_message_id": 1}, "identifiers", None),
    (
        "POST",
        "/v1/transactional/inbox_message",
        {"identifiers": {"id": "u"}, "transactional_message_id": ""},
        "transactional_message_id",
        None,
    ),
    (
        "POST",
        "/v1/batch",
        {
            "operations": [
                {"type": "track_metric", "delivery_id": "d", "metric": "opened"},
                {
                    "type": "delete_object",
                    "object": {"object_type_id": "1", "object_id": "o" * 151},
                },
            ]
        },
        "operations[1].object.object_id",
        (150, 151),
    ),
    (
        "POST",
        "/v1/batch",
        {"operations": [{"type": "add_to_segment", "segment_id": 2**31, "ids": ["u"]}]},
        "operations[0].segment_id",
        None,
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "limit"),
    BAD_INPUTS,
    ids=[f"{bad[0]} {bad[1][:40]} {bad[3]}" for bad in BAD_INPUTS],
)
def test_a_bad_input_is_422_naming_the_field_and_nothing_is_stored(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    method: str,
    path: str,
    body: Any,
    field: str,
    limit: tuple[int, int] | None,
) -> None:
    response = _request(client, method, path, body, auth)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["field"] == field, answer
    if limit is not None:
        assert answer["error"] == "limit_exceeded"
        assert (answer["limit"], answer["size"]) == limit
    assert _stored(outbox) == {}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [(route[0], route[1], route[2]) for route in ROUTES],
    ids=[f"{route[0]} {route[1]}" for route in ROUTES],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-0123456789abcdefghijklmnop"])
def test_each_route_refuses_a_request_without_a_valid_key(
    client: httpx.Client,
    outbox: Outbox,
    method: str,
    path: str,
    body: Any,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _request(client, method, path, body, headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert _stored(outbox) == {}


def test_an_object_id_in_the_path_is_taken_as_sent_once_decoded(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    response = client.delete("/v1/objects/1/caf%C3%A9%20ol%C3%A9", headers=auth)
    assert response.status_code == 202, response.text
    (op_id,) = response.json()["op_ids"]
    assert _stored(outbox)[op_id].payload["object"] == {
        "object_type_id": "1",
        "object_id": "café olé",
    }


def test_an_object_id_that_is_not_utf8_is_422_naming_it(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    response = client.delete("/v1/objects/1/caf%E9", headers=auth)
    assert response.status_code == 422
    assert response.json()["field"] == "object_id"
    assert _stored(outbox) == {}


def test_an_object_with_no_body_is_identified_without_attributes(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    response = client.post("/v1/objects/2/empty", headers=auth)
    assert response.status_code == 202, response.text
    (op_id,) = response.json()["op_ids"]
    op = _stored(outbox)[op_id]
    assert op.kind is Kind.IDENTIFY_OBJECT
    assert op.payload == {"object": {"object_type_id": "2", "object_id": "empty"}}


def test_the_same_idempotency_key_on_a_delete_with_a_body_stores_once(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    headers = {**auth, "Idempotency-Key": "unrelate-1"}
    body = {"relationships": [_ACME]}
    first = _request(client, "DELETE", "/v1/people/u-9/relationships", body, headers)
    again = _request(client, "DELETE", "/v1/people/u-9/relationships", body, headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert list(_stored(outbox)) == first.json()["op_ids"]
