"""Objects, relationships, manual segments and delivery metrics, end to end: a ``Relay`` on a
SQLite outbox, the real worker, the emulator over 127.0.0.1, read back through ``/_emulator/``.

Object and relationship operations travel in ``/api/v2/batch`` here; alone (``/api/v2/entity``)
they are sent in tests/customerio/test_new_kinds_against_emulator.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cio_relay.emulator import EmulatorServer
from cio_relay.relay import Relay
from tests.fixtures.delivery import emulator_settings

ACME = {"object_type_id": "1", "object_id": "acme"}
DRAIN_TIMEOUT = 30.0


@pytest.fixture
def relay(emulator: EmulatorServer, tmp_path: Path) -> Iterator[Relay]:
    settings = emulator_settings(emulator, f"sqlite:///{tmp_path / 'outbox.db'}")
    with Relay(settings) as relay:
        yield relay


def _deliver(relay: Relay) -> None:
    stats = relay.worker().drain(timeout=DRAIN_TIMEOUT)
    assert stats.dead_total == 0, stats
    assert relay.outbox.depth().pending == 0


def test_objects_and_relationships_are_stored_at_the_emulator(
    relay: Relay, inspect: httpx.Client
) -> None:
    relay.identify("u1", email="u1@example.com")
    relay.identify("u2", email="u2@example.com")
    relay.identify_object(ACME, {"name": "Acme Corp", "seats": 50}, people=["u1"])
    relay.add_relationships(
        "u2", [{"identifiers": ACME, "relationship_attributes": {"role": "admin"}}]
    )
    relay.add_object_relationships({"object_type_id": "2", "object_id": "c7"}, ["u1", "u2"])
    _deliver(relay)  # an object's operations are not ordered against the people it names
    relay.delete_object_relationships({"object_type_id": "2", "object_id": "c7"}, ["u1"])
    relay.delete_relationships("u1", [ACME])
    _deliver(relay)

    acme = inspect.get("/objects/1/acme").json()
    assert acme["attributes"] == {"name": "Acme Corp", "seats": 50}
    members = {row.get("cio_id"): row["relationship_attributes"] for row in acme["relationships"]}
    u2 = inspect.get("/people/u2").json()
    assert members == {u2["cio_id"]: {"role": "admin"}}  # u1's was deleted
    course = inspect.get("/objects/2/c7").json()
    assert [row["cio_id"] for row in course["relationships"]] == [u2["cio_id"]]


def test_an_anonymous_relationship_carries_over_when_the_person_is_identified(
    relay: Relay, inspect: httpx.Client
) -> None:
    relay.identify_anonymous(ACME, "anon-7", {"name": "Acme"}, relationship_attributes={"r": 1})
    _deliver(relay)
    assert inspect.get("/people/anon-7/relationships").json()["relationships"][0]["object_id"] == (
        "acme"
    )
    relay.identify("u7", anonymous_id="anon-7")
    _deliver(relay)
    [link] = inspect.get("/people/u7/relationships").json()["relationships"]
    assert (link["object_id"], link["relationship_attributes"]) == ("acme", {"r": 1})


def test_deleting_an_object_removes_it_and_its_relationships(
    relay: Relay, inspect: httpx.Client
) -> None:
    relay.identify("u1")
    relay.identify_object(ACME, {"name": "Acme"}, people=["u1"])
    _deliver(relay)
    relay.delete_object(ACME)
    _deliver(relay)
    assert inspect.get("/objects/1/acme").status_code == 404
    assert inspect.get("/people/u1/relationships").json()["relationships"] == []


def test_manual_segment_membership_by_id_and_by_email(relay: Relay, inspect: httpx.Client) -> None:
    for n in range(3):
        relay.identify(f"u{n}", email=f"u{n}@example.com")
    _deliver(relay)  # a segment change names people Customer.io already knows
    relay.add_to_segment(9, ["u0", "u1"])
    relay.add_to_segment("9", ["u2@example.com"], id_type="email")
    relay.remove_from_segment(9, ["u1"])
    _deliver(relay)
    cio_ids = {inspect.get(f"/people/u{n}").json()["cio_id"]: f"u{n}" for n in range(3)}
    members = inspect.get("/segments").json()["segments"]["9"]
    assert sorted(cio_ids[cio_id] for cio_id in members) == ["u0", "u2"]


def test_delivery_metrics_reach_both_metric_endpoints(relay: Relay, inspect: httpx.Client) -> None:
    relay.track_metric("dlv-1", "delivered", recipient="a@example.com", timestamp=1700000000)
    relay.track_metric("dlv-1", "clicked", href="https://example.com/a", timestamp=1700000060)
    relay.track_push_metric("dlv-2", "opened", "device-token", timestamp=1700000120)
    _deliver(relay)
    metrics = inspect.get("/metrics").json()["metrics"]
    received = [
        (m["source"], m["delivery_id"], m.get("metric") or m.get("event"), m["timestamp"])
        for m in metrics
    ]
    # One delivery's metrics arrive in order (its ordering key); others may interleave.
    assert [row for row in received if row[1] == "dlv-1"] == [
        ("v1/metrics", "dlv-1", "delivered", 1700000000),
        ("v1/metrics", "dlv-1", "clicked", 1700000060),
    ]
    assert ("v1/push/events", "dlv-2", "opened", 1700000120) in received
    assert len(received) == 3
