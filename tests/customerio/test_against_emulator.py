"""The four clients against the emulator over real 127.0.0.1 sockets.

Every call is checked through the emulator's ``/_emulator/`` inspection API to have taken
effect, and every error class is produced by the emulator's own answers and faults. The region
tests route Customer.io host names to the emulator's socket (a DNS override in the transport):
the URL and ``Host`` still name ``track.customer.io`` and friends, which is how the emulator
judges the region, as Customer.io does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from cio_relay import operations as ops
from cio_relay.customerio import (
    AppClient,
    AsyncAppClient,
    AsyncTrackClient,
    ItemError,
    TrackClient,
)
from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.errors import AmbiguousError, PermanentError, RetryableError
from cio_relay.operations import Api, Request


def inspect(server: EmulatorServer, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}/_emulator/{path}", params=params, timeout=10)
    assert response.status_code in (200, 404), response.text
    return response.json() if response.status_code == 200 else None


def add_fault(server: EmulatorServer, **rule: Any) -> None:
    httpx.post(f"{server.url}/_emulator/faults", json=rule, timeout=10).raise_for_status()


def track_client(server: EmulatorServer, **kw: Any) -> TrackClient:
    cfg = server.config
    return TrackClient(cfg.site_id, cfg.track_api_key, base_url=server.url, **kw)


def async_track_client(server: EmulatorServer, **kw: Any) -> AsyncTrackClient:
    cfg = server.config
    return AsyncTrackClient(cfg.site_id, cfg.track_api_key, base_url=server.url, **kw)


@pytest.fixture
def track(emulator: EmulatorServer) -> Iterator[TrackClient]:
    with track_client(emulator) as client:
        yield client


@pytest.fixture
def app(emulator: EmulatorServer) -> Iterator[AppClient]:
    with AppClient(emulator.config.app_api_key, base_url=emulator.url) as client:
        yield client


# --- TrackClient: every operation takes effect --------------------------------------------------


def test_identify_creates_and_updates_a_person(
    emulator: EmulatorServer, track: TrackClient
) -> None:
    track.identify("u1", email="ada@example.com", plan="free")
    track.identify("u1", plan="pro")
    person = inspect(emulator, "people/u1")
    assert person["email"] == "ada@example.com"
    assert person["attributes"]["plan"] == "pro"


def test_track_page_screen_and_anonymous_events_are_stored(
    emulator: EmulatorServer, track: TrackClient
) -> None:
    event_id = track.track("u1", "order_completed", {"total": 42})
    track.page("u1", "https://x.test/pricing")
    track.screen("u1", "Home")
    track.track_anonymous("anon-7", "viewed_pricing", {"plan": "pro"})
    events = inspect(emulator, "people/u1")["events"]
    assert [(e["name"], e["type"]) for e in events] == [
        ("order_completed", "event"),
        ("https://x.test/pricing", "page"),
        ("Home", "screen"),
    ]
    assert events[0]["id"] == event_id and events[0]["data"] == {"total": 42}
    [anonymous] = inspect(emulator, "events", person="anon-7")["events"]
    assert anonymous["anonymous_id"] == "anon-7" and anonymous["data"] == {"plan": "pro"}


def test_an_event_sent_twice_with_its_id_is_stored_once(
    emulator: EmulatorServer, track: TrackClient
) -> None:
    op_id = track.track("u1", "paid", {"n": 1})
    assert track.track("u1", "paid", {"n": 1}, op_id=op_id) == op_id
    assert len(inspect(emulator, "people/u1")["events"]) == 1
    assert inspect(emulator, "stats")["duplicate_event_ids"] == 1


def test_devices_are_added_and_deleted(emulator: EmulatorServer, track: TrackClient) -> None:
    track.add_device("u1", "tok-1", "ios", last_used=1_700_000_000, attributes={"app": "1.2"})
    track.add_device("u1", "tok-2", "android")
    track.delete_device("u1", "tok-2")
    [device] = inspect(emulator, "people/u1")["devices"]
    assert device["id"] == "tok-1" and device["platform"] == "ios"
    assert device["attributes"] == {"app": "1.2"}


def test_suppress_unsuppress_merge_and_delete(emulator: EmulatorServer, track: TrackClient) -> None:
    track.identify("u1", plan="pro")
    track.suppress("u1")
    assert inspect(emulator, "people/u1")["suppressed"] is True
    track.unsuppress("u1")
    assert inspect(emulator, "people/u1")["suppressed"] is False
    track.identify({"email": "old@example.com"}, source="import")
    track.merge("u1", {"email": "old@example.com"})
    merged = inspect(emulator, "people/u1")
    assert merged["attributes"]["source"] == "import"
    assert inspect(emulator, "stats")["people"] == 1
    track.delete("u1")
    assert inspect(emulator, "people/u1") is None


def test_region_reports_the_account_region(track: TrackClient) -> None:
    answer = track.region()
    assert answer["region"] == "us"
    assert answer["url"] == "https://track.customer.io"


# --- v2 batch -----------------------------------------------------------------------------------


def test_a_batch_of_v2_items_is_applied_whole(emulator: EmulatorServer, track: TrackClient) -> None:
    operations = [ops.identify(f"u{i}", {"n": i}) for i in range(50)]
    operations += [ops.track(f"u{i % 50}", "signed_up", {"i": i}) for i in range(500)]
    result = track.send_batch([op.v2_item() for op in operations])  # type: ignore[misc]
    assert result.ok and result.status == 200 and result.count == 550
    stats = inspect(emulator, "stats")
    assert stats["people"] == 50 and stats["events_accepted"] == 500
    assert inspect(emulator, "people/u7")["attributes"]["n"] == 7


def test_a_207_names_the_refused_items_and_the_rest_are_applied(
    emulator: EmulatorServer, track: TrackClient
) -> None:
    good = ops.identify("u1", {"plan": "pro"}).v2_item()
    bad_identifiers = {"type": "person", "action": "identify", "identifiers": {}}
    bad_action = {"type": "person", "action": "explode", "identifiers": {"id": "u2"}}
    result = track.send_batch([good, bad_identifiers, bad_action])  # type: ignore[list-item]
    assert result.status == 207
    assert result.accepted == [0]
    assert set(result.errors) == {1, 2}
    assert isinstance(result.errors[1], ItemError)
    assert result.errors[1].field == "identifiers"
    assert "exactly one of" in result.errors[1].message
    assert inspect(emulator, "people/u1")["attributes"]["plan"] == "pro"
    assert inspect(emulator, "stats")["batch_items_refused"] == 2


# --- errors from the emulator's own answers -----------------------------------------------------


def test_wrong_credentials_are_a_permanent_401(emulator: EmulatorServer) -> None:
    cfg = emulator.config
    with (
        TrackClient(cfg.site_id, "wrong-key", base_url=emulator.url) as client,
        pytest.raises(PermanentError, match="Unauthorized") as caught,
    ):
        client.identify("u1")
    assert caught.value.status == 401
    with AppClient("wrong-key", base_url=emulator.url) as app, pytest.raises(PermanentError):
        app.send_email(to="a@x.test", transactional_message_id=1, identifiers={"id": "u1"})


def test_a_validation_400_carries_the_emulators_message(track: TrackClient) -> None:
    # The client refuses this before the wire; a raw Request skips our checks to reach the server.
    too_long = Request(Api.TRACK, "POST", "/api/v1/customers/u1/events", {"name": "n" * 101})
    with pytest.raises(
        PermanentError, match="event name cannot be longer than 100 bytes"
    ) as caught:
        track.send(too_long)
    assert caught.value.status == 400


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_transient_errors_are_retryable(
    emulator: EmulatorServer, track: TrackClient, status: int
) -> None:
    add_fault(emulator, error_rate=1, status_codes=[status], count=1, retry_after=3)
    with pytest.raises(RetryableError) as caught:
        track.identify("u1")
    assert caught.value.status == status
    assert caught.value.retry_after == (3.0 if status in (429, 503) else None)
    track.identify("u1")  # the fault retired: the next call goes through
    assert inspect(emulator, "people/u1") is not None


def test_the_emulators_rate_limit_answers_429_with_retry_after(
    emulator: EmulatorServer, track: TrackClient
) -> None:
    add_fault(emulator, rate_limit={"rps": 1, "retry_after": 2})
    track.identify("u1")
    with pytest.raises(RetryableError) as caught:
        track.identify("u1")
    assert caught.value.status == 429 and caught.value.retry_after == 2.0


def test_a_dropped_connection_after_the_request_is_ambiguous(
    emulator: EmulatorServer, app: AppClient
) -> None:
    add_fault(emulator, drop_rate=1, count=1)
    with pytest.raises(AmbiguousError):
        app.send_email(to="a@x.test", transactional_message_id="welcome", identifiers={"id": "u1"})
    # The emulator did process it before cutting the line: exactly why it must not be retried.
    assert inspect(emulator, "stats")["dropped_connections"] == 1


def test_a_slow_answer_past_the_read_timeout_is_ambiguous(emulator: EmulatorServer) -> None:
    add_fault(emulator, latency_ms=1000, count=1)
    with (
        track_client(emulator, timeout=httpx.Timeout(5.0, read=0.2)) as client,
        pytest.raises(AmbiguousError, match="ReadTimeout"),
    ):
        client.identify("u1")


# --- AppClient ----------------------------------------------------------------------------------


def test_transactional_sends_are_delivered(emulator: EmulatorServer, app: AppClient) -> None:
    email = app.send_email(
        to="ada@example.com",
        transactional_message_id="welcome",
        identifiers={"id": "u1"},
        message_data={"name": "Ada"},
    )
    push = app.send_push(identifiers={"id": "u1"}, transactional_message_id=2, title="Hi")
    sms = app.send_sms(identifiers={"id": "u1"}, transactional_message_id=3, to="+15550100")
    deliveries = inspect(emulator, "deliveries")["deliveries"]
    assert [d["channel"] for d in deliveries] == ["email", "push", "sms"]
    assert [d["delivery_id"] for d in deliveries] == [
        email["delivery_id"],
        push["delivery_id"],
        sms["delivery_id"],
    ]
    assert deliveries[0]["request"]["message_data"] == {"name": "Ada"}
    assert isinstance(email["queued_at"], int)


def test_a_broadcast_trigger_returns_its_id(
    emulator: EmulatorServer, app: AppClient, track: TrackClient
) -> None:
    track.identify("u1")
    track.identify("u2")
    answer = app.trigger_broadcast(9, data={"headline": "Sale"}, ids=["u1", "u2"])
    [trigger] = inspect(emulator, "broadcasts")["triggers"]
    assert trigger["id"] == answer["id"]
    assert trigger["broadcast_id"] == 9 and len(trigger["people"]) == 2


def test_a_broadcast_to_missing_people_is_a_permanent_422(app: AppClient) -> None:
    with pytest.raises(PermanentError, match="do not exist") as caught:
        app.trigger_broadcast(9, ids=["nobody"])
    assert caught.value.status == 422


# --- the async clients --------------------------------------------------------------------------


async def test_async_track_client_end_to_end(emulator: EmulatorServer) -> None:
    async with async_track_client(emulator) as client:
        await client.identify("u1", plan="pro")
        event_id = await client.track("u1", "paid", {"total": 5})
        batch = [ops.track(f"u{i}", "seen").v2_item() for i in range(100)]
        result = await client.send_batch(batch)  # type: ignore[arg-type]
        assert result.ok
        region = await client.region()
    person = inspect(emulator, "people/u1")
    assert person["attributes"]["plan"] == "pro"
    assert event_id in [e["id"] for e in person["events"]]
    assert inspect(emulator, "stats")["events_accepted"] == 101
    assert region["region"] == "us"


async def test_async_track_client_shares_a_pool_across_concurrent_calls(
    emulator: EmulatorServer,
) -> None:
    async with async_track_client(emulator, max_connections=4) as client:
        await asyncio.gather(*(client.identify(f"u{i}", n=i) for i in range(40)))
        items = [ops.track(f"u{i}", "seen", {"i": i}) for i in range(40)]
        result = await client.send_batch_raw([orjson.dumps(op.v2_item()) for op in items])
    assert result.ok
    stats = inspect(emulator, "stats")
    assert stats["people"] == 40 and stats["events_accepted"] == 40


async def test_async_app_client_end_to_end(emulator: EmulatorServer) -> None:
    async with AsyncAppClient(emulator.config.app_api_key, base_url=emulator.url) as app:
        sent = await app.send_email(
            to="ada@example.com", transactional_message_id="welcome", identifiers={"id": "u1"}
        )
        pushed = await app.send_push(identifiers={"id": "u1"}, transactional_message_id=2)
        texted = await app.send_sms(
            identifiers={"id": "u1"}, transactional_message_id=3, to="+14155550111"
        )
        triggered = await app.trigger_broadcast(4, ids=["u1"])
        # Our checks refuse this before the wire; a raw Request reaches the emulator's.
        no_from = {"to": "a@x.test", "identifiers": {"id": "u1"}, "body": "b", "subject": "s"}
        with pytest.raises(PermanentError) as caught:
            await app.send(Request(Api.TRANSACTIONAL, "POST", "/v1/send/email", no_from))
    ids = [d["delivery_id"] for d in inspect(emulator, "deliveries")["deliveries"]]
    assert ids == [sent["delivery_id"], pushed["delivery_id"], texted["delivery_id"]]
    assert inspect(emulator, "broadcasts")["triggers"][0]["id"] == triggered["id"]
    assert caught.value.status == 400  # a message without a template needs "from"


# --- regions ------------------------------------------------------------------------------------


class _ResolveTo(httpx.HTTPTransport):
    """Connects every request to the emulator's socket; the URL's host and the Host header
    still name the Customer.io host the client chose (a DNS override, not a stand-in)."""

    def __init__(self, server: EmulatorServer) -> None:
        super().__init__()
        self.port = server.port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return super().handle_request(request)


class _AsyncResolveTo(httpx.AsyncHTTPTransport):
    def __init__(self, server: EmulatorServer) -> None:
        super().__init__()
        self.port = server.port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await super().handle_async_request(request)


@pytest.fixture(scope="module")
def eu_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(region="eu")) as server:
        yield server


def test_an_eu_accounts_track_call_to_the_us_host_follows_the_307(
    eu_emulator: EmulatorServer,
) -> None:
    cfg = eu_emulator.config
    with TrackClient(cfg.site_id, cfg.track_api_key, transport=_ResolveTo(eu_emulator)) as client:
        assert client.base_url == "https://track.customer.io"
        client.identify("redirected-1", plan="pro")
    person = inspect(eu_emulator, "people/redirected-1")
    assert person["attributes"] == {"plan": "pro"}  # the PUT arrived with its body
    counts = inspect(eu_emulator, "stats")["requests"]["PUT /api/v1/customers/{identifier}"]
    assert counts == {"200": 1, "307": 1}


async def test_the_app_api_in_the_wrong_region_says_to_set_the_region(
    eu_emulator: EmulatorServer,
) -> None:
    key = eu_emulator.config.app_api_key
    async with AsyncAppClient(key, region="us", transport=_AsyncResolveTo(eu_emulator)) as app:
        with pytest.raises(PermanentError, match="CUSTOMERIO_REGION") as caught:
            await app.send_email(to="a@x.test", transactional_message_id=1, identifiers={"id": "x"})
    assert caught.value.status == 301
    async with AsyncAppClient(key, region="eu", transport=_AsyncResolveTo(eu_emulator)) as app:
        sent = await app.send_email(
            to="a@x.test", transactional_message_id=1, identifiers={"id": "x"}
        )
    assert sent["delivery_id"]


def test_a_us_accounts_track_call_to_the_eu_host_fails(emulator: EmulatorServer) -> None:
    cfg = emulator.config
    transport = _ResolveTo(emulator)
    with (
        TrackClient(cfg.site_id, cfg.track_api_key, region="eu", transport=transport) as client,
        pytest.raises(PermanentError) as caught,
    ):
        client.identify("u1")
    assert caught.value.status == 401
