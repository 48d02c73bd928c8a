"""The template sends and the App API reads against the emulator (written from the documents,
not from our clients): each send is accepted and recorded, each read answers what the emulator
holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cio_relay.customerio import AppClient, TrackClient
from cio_relay.emulator import EmulatorServer
from tests.customerio.test_against_emulator import inspect


@pytest.fixture
def app(emulator: EmulatorServer) -> Iterator[AppClient]:
    with AppClient(emulator.config.app_api_key, base_url=emulator.url) as client:
        yield client


@pytest.fixture
def track(emulator: EmulatorServer) -> Iterator[TrackClient]:
    cfg = emulator.config
    with TrackClient(cfg.site_id, cfg.track_api_key, base_url=emulator.url) as client:
        yield client


def test_each_template_send_is_queued_for_its_channel(
    emulator: EmulatorServer, app: AppClient
) -> None:
    answers = [
        app.send_whatsapp(identifiers={"id": "u1"}, transactional_message_id=3, to="+15551234567"),
        app.send_in_app(identifiers={"id": "u1"}, transactional_message_id="order", language="en"),
        app.send_inbox_message(identifiers={"id": "u1"}, transactional_message_id=5),
    ]
    assert all(set(answer) == {"delivery_id", "queued_at"} for answer in answers)
    deliveries = inspect(emulator, "deliveries")
    by_id = {d["delivery_id"]: d["channel"] for d in deliveries["deliveries"]}
    assert [by_id[a["delivery_id"]] for a in answers] == ["whatsapp", "in_app", "inbox_message"]


def test_a_sync_finds_people_by_email_and_reads_their_attributes(
    app: AppClient, track: TrackClient
) -> None:
    track.identify("u1", email="jane+news@x.test", plan="pro")
    [found] = app.customers_by_email("jane+news@x.test")
    assert (found["id"], found["email"]) == ("u1", "jane+news@x.test")
    profile = app.customer_attributes("u1")
    assert profile is not None and profile["customer"]["attributes"]["plan"] == "pro"
    assert app.customer_attributes({"email": "jane+news@x.test"}) == profile
    assert app.customer_attributes("nobody") is None
    assert app.customers_by_email("nobody@x.test") == []


def test_a_triggered_broadcast_has_a_status_and_a_page_of_no_errors(
    app: AppClient, track: TrackClient
) -> None:
    track.identify("u1")
    trigger_id = app.trigger_broadcast(9, ids=["u1"])["id"]
    # The shape of the status (bare, as the docs' example, or under "trigger") is the
    # emulator's to settle; the client hands back whatever object was answered.
    assert app.broadcast_trigger(9, trigger_id) != {}
    assert app.broadcast_trigger_errors(9, trigger_id, limit=10)["errors"] == []
