"""The v2 object and relationship operations, manual segment membership and delivery metrics:
their ordering keys, the requests and items they travel as, and their round trip through an
outbox record."""

from __future__ import annotations

from typing import Any

import pytest

from cio_relay import operations as ops
from cio_relay.operations import Kind, Operation
from cio_relay.operations.kinds import V2_KINDS

ACME = {"object_type_id": "1", "object_id": "acme"}


@pytest.mark.parametrize(
    ("op", "key"),
    [
        (ops.add_relationships({"email": "a@x.test"}, [ACME]), "email:a@x.test"),
        (ops.delete_relationships("u1", [ACME]), "id:u1"),
        (ops.identify_object(ACME, {"name": "Acme"}), "object:1:acme"),
        (ops.delete_object({"cio_object_id": "obb7"}), "object:cio_object_id:obb7"),
        (ops.identify_anonymous(ACME, "anon-1"), "object:1:acme"),
        (ops.add_object_relationships(ACME, ["u1"]), "object:1:acme"),
        (ops.delete_object_relationships(ACME, ["u1"]), "object:1:acme"),
        (ops.add_to_segment(7, ["u1", "u2"]), "segment:7"),
        (ops.remove_from_segment("7", ["u1"]), "segment:7"),
        (ops.track_metric("dlv-1", "opened"), "delivery:dlv-1"),
        (ops.track_push_metric("dlv-1", "opened", "tok"), "delivery:dlv-1"),
    ],
    ids=lambda value: value.kind.value if isinstance(value, Operation) else value,
)
def test_each_kind_is_ordered_by_the_entity_it_changes(op: Operation, key: str) -> None:
    assert op.person_key == key


def test_a_person_relationship_is_a_v2_item_and_alone_goes_to_the_entity_endpoint() -> None:
    op = ops.add_relationships(
        "u1",
        [{"identifiers": {"object_type_id": 2, "object_id": "c7"},
          "relationship_attributes": {"role": "admin"}},
         {"cio_object_id": "obb7"}],
    )  # fmt: skip
    item = {
        "type": "person",
        "action": "add_relationships",
        "identifiers": {"id": "u1"},
        "cio_relationships": [
            {
                "identifiers": {"object_type_id": "2", "object_id": "c7"},
                "relationship_attributes": {"role": "admin"},
            },
            {"identifiers": {"cio_object_id": "obb7"}},
        ],
    }
    assert op.v2_item() == item
    request = op.v1_request()
    assert (request.method, request.path, request.body) == ("POST", "/api/v2/entity", item)


def test_an_object_identify_carries_attributes_and_people() -> None:
    op = ops.identify_object(
        ACME, {"plan": "enterprise"}, people=["u1", {"identifiers": {"email": "b@x.test"}}]
    )
    assert op.v2_item() == {
        "type": "object",
        "action": "identify",
        "identifiers": ACME,
        "attributes": {"plan": "enterprise"},
        "cio_relationships": [
            {"identifiers": {"id": "u1"}},
            {"identifiers": {"email": "b@x.test"}},
        ],
    }
    assert op.identifiers == {}


def test_identify_anonymous_relates_the_object_to_the_anonymous_id() -> None:
    op = ops.identify_anonymous(ACME, "anon-1", relationship_attributes={"role": "viewer"})
    assert op.v2_item() == {
        "type": "object",
        "action": "identify_anonymous",
        "identifiers": ACME,
        "cio_relationships": [
            {
                "identifiers": {"anonymous_id": "anon-1"},
                "relationship_attributes": {"role": "viewer"},
            }
        ],
    }


def test_segment_changes_travel_on_v1_with_their_id_type() -> None:
    default = ops.add_to_segment("12", ["u1", "u2"]).v1_request()
    assert (default.path, default.body) == (
        "/api/v1/segments/12/add_customers",
        {"ids": ["u1", "u2"]},
    )
    by_email = ops.remove_from_segment(12, ["a@x.test"], id_type="email").v1_request()
    assert by_email.path == "/api/v1/segments/12/remove_customers?id_type=email"
    assert ops.add_to_segment(12, ["u1"]).v2_item() is None


def test_a_segment_change_takes_exactly_1000_people() -> None:
    op = ops.add_to_segment(1, [f"u{n}" for n in range(1000)])
    assert len(op.payload["ids"]) == 1000


def test_metrics_travel_on_v1_dated_when_they_happened() -> None:
    metric = ops.track_metric("dlv-1", "clicked", href="https://x.test/a", created_at=1700000000.7)
    request = metric.v1_request()
    assert (request.path, request.body) == (
        "/api/v1/metrics",
        {
            "delivery_id": "dlv-1",
            "metric": "clicked",
            "timestamp": 1700000000,
            "href": "https://x.test/a",
        },
    )
    push = ops.track_push_metric("dlv-1", "opened", "tok", timestamp=1613063089)
    assert push.v1_request().path == "/api/v1/push/events"
    assert push.v1_request().body == {
        "delivery_id": "dlv-1",
        "event": "opened",
        "device_id": "tok",
        "timestamp": 1613063089,
    }
    assert metric.v2_item() is None and push.v2_item() is None


@pytest.mark.parametrize(
    "op",
    [
        ops.identify_object(ACME, {"n": 1}, people=["u1"]),
        ops.add_to_segment(3, ["a@x.test"], id_type="email"),
        ops.track_metric("d", "bounced", reason="full", recipient=14155552671),
    ],
    ids=lambda op: op.kind.value,
)
def test_a_stored_operation_builds_the_same_requests(op: Operation) -> None:
    op_id, kind, _key, payload, created_at, env = op.to_record()
    back = Operation.from_record(op_id, kind, payload, created_at, env)
    assert back.v1_request() == op.v1_request()
    assert back.v2_item() == op.v2_item()
    assert back.person_key == op.person_key


def test_the_new_v2_kinds_are_batched_and_the_v1_kinds_are_not() -> None:
    v2 = {Kind.ADD_RELATIONSHIPS, Kind.DELETE_RELATIONSHIPS, Kind.IDENTIFY_OBJECT,
          Kind.DELETE_OBJECT, Kind.IDENTIFY_ANONYMOUS, Kind.ADD_OBJECT_RELATIONSHIPS,
          Kind.DELETE_OBJECT_RELATIONSHIPS}  # fmt: skip
    v1: set[Any] = {Kind.ADD_TO_SEGMENT, Kind.REMOVE_FROM_SEGMENT, Kind.TRACK_METRIC,
                    Kind.TRACK_PUSH_METRIC}  # fmt: skip
    assert v2 <= V2_KINDS
    assert not v1 & V2_KINDS
