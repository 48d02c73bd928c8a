"""The single request of each object, relationship, segment and metric operation, sent with
``TrackClient`` to the emulator over 127.0.0.1: the v2-only kinds alone on ``/api/v2/entity``
(what the worker sends for an item too large for a batch), the others on their v1 paths, each
read back through ``/_emulator/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cio_relay import operations as ops
from cio_relay.customerio import TrackClient
from cio_relay.emulator import EmulatorServer
from tests.customerio.test_against_emulator import inspect, track_client

ACME = {"object_type_id": "1", "object_id": "acme"}


@pytest.fixture
def track(emulator: EmulatorServer) -> Iterator[TrackClient]:
    with track_client(emulator) as client:
        yield client


def test_object_and_relationship_operations_alone_on_the_entity_endpoint(
    track: TrackClient, emulator: EmulatorServer
) -> None:
    sent = [
        ops.identify("u1"),
        ops.identify_object(ACME, {"name": "Acme"}, people=["u1"]),
        ops.identify_anonymous(ACME, "anon-1"),
        ops.add_relationships("u2", [{"identifiers": ACME, "relationship_attributes": {"r": 2}}]),
        ops.add_object_relationships({"object_type_id": "2", "object_id": "c7"}, ["u1"]),
        ops.delete_object_relationships({"object_type_id": "2", "object_id": "c7"}, ["u1"]),
        ops.delete_relationships("u1", [ACME]),
    ]
    for op in sent:
        request = op.v1_request()
        assert request.path == (
            "/api/v1/customers/u1" if op.kind == "identify" else "/api/v2/entity"
        )
        track.send(request)
    acme = inspect(emulator, "objects/1/acme")
    u2 = inspect(emulator, "people/u2")
    rows = acme["relationships"]
    assert {"anonymous_id": "anon-1", "relationship_attributes": {}} in rows
    assert {"cio_id": u2["cio_id"], "relationship_attributes": {"r": 2}} in rows
    assert len(rows) == 2  # u1's relationship to acme was deleted
    assert inspect(emulator, "objects/2/c7")["relationships"] == []
    track.send(ops.delete_object(ACME).v1_request())
    assert inspect(emulator, "objects/1/acme") is None


def test_segment_and_metric_requests_on_their_v1_paths(
    track: TrackClient, emulator: EmulatorServer
) -> None:
    track.send(ops.identify("u1", {"email": "u1@example.com"}).v1_request())
    cio_id = inspect(emulator, "people/u1")["cio_id"]
    track.send(ops.add_to_segment(4, ["u1@example.com"], id_type="email").v1_request())
    assert inspect(emulator, "segments")["segments"]["4"] == [cio_id]
    track.send(ops.remove_from_segment(4, ["u1"]).v1_request())
    assert inspect(emulator, "segments")["segments"]["4"] == []
    track.send(ops.track_metric("dlv-1", "bounced", reason="mailbox full").v1_request())
    track.send(ops.track_push_metric("dlv-2", "converted", "tok").v1_request())
    metrics = inspect(emulator, "metrics")["metrics"]
    assert [(m["source"], m["delivery_id"]) for m in metrics] == [
        ("v1/metrics", "dlv-1"),
        ("v1/push/events", "dlv-2"),
    ]
    assert metrics[0]["reason"] == "mailbox full"
