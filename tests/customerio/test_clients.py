"""The four clients over ``httpx.MockTransport``: what goes on the wire, and every error class.

Each behaviour runs through the sync and the async shell (the ``shell`` parameter), since they
share the core but not the I/O.
"""

from __future__ import annotations

import base64
import email.utils
import inspect
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cio_relay.config import Settings
from cio_relay.customerio import (
    AppClient,
    AsyncAppClient,
    AsyncTrackClient,
    BatchResult,
    ItemError,
    TrackClient,
)
from cio_relay.errors import (
    AmbiguousError,
    ApiError,
    ConfigError,
    LimitExceeded,
    PermanentError,
    RetryableError,
    ValidationError,
)
from cio_relay.operations import Api, Request

SITE, TRACK_KEY, APP_KEY = "site-1", "track-key-1", "app-key-1"
EVENT = Request(Api.TRACK, "POST", "/api/v1/customers/u1/events", {"name": "e"})
EMAIL = Request(Api.TRANSACTIONAL, "POST", "/v1/send/email", {"to": "a@x.test"})
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers) or [httpx.Response(200, json={})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        # A fresh copy each time: a response object is bound to the sync or async stream it
        # first travelled on.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def track_call(shell: str, handler: Handler, call: Callable[[Any], Any], **kw: Any) -> Any:
    """Run ``call(client)`` on a fresh Track client of the given shell; await it if async."""
    transport = httpx.MockTransport(handler)
    if shell == "sync":
        with TrackClient(SITE, TRACK_KEY, transport=transport, **kw) as client:
            return call(client)
    async with AsyncTrackClient(SITE, TRACK_KEY, transport=transport, **kw) as aclient:
        return await call(aclient)


async def app_call(shell: str, handler: Handler, call: Callable[[Any], Any], **kw: Any) -> Any:
    transport = httpx.MockTransport(handler)
    if shell == "sync":
        with AppClient(APP_KEY, transport=transport, **kw) as client:
            return call(client)
    async with AsyncAppClient(APP_KEY, transport=transport, **kw) as aclient:
        return await call(aclient)


async def send_event(shell: str, handler: Handler, **kw: Any) -> Any:
    return await track_call(shell, handler, lambda c: c.send(EVENT), **kw)


async def expect(shell: str, error: type[ApiError], *answers: httpx.Response | Exception) -> Any:
    recorder = Recorder(*answers)
    with pytest.raises(error) as caught:
        await send_event(shell, recorder)
    assert type(caught.value) is error
    return caught.value


# --- the wire -----------------------------------------------------------------------------------


async def test_track_requests_carry_basic_auth_user_agent_and_json(shell: str) -> None:
    recorder = Recorder(httpx.Response(200, json={}))
    assert await send_event(shell, recorder) == {}
    sent = recorder.last
    assert sent.url == "https://track.customer.io/api/v1/customers/u1/events"
    assert (
        sent.headers["authorization"] == "Basic " + base64.b64encode(b"site-1:track-key-1").decode()
    )
    assert sent.headers["user-agent"].startswith("cio-relay/")
    assert sent.headers["content-type"] == "application/json"
    assert orjson.loads(sent.content) == {"name": "e"}


async def test_app_requests_carry_a_bearer_key(shell: str) -> None:
    recorder = Recorder(httpx.Response(200, json={"delivery_id": "d1", "queued_at": 1}))
    answer = await app_call(shell, recorder, lambda c: c.send(EMAIL))
    assert answer == {"delivery_id": "d1", "queued_at": 1}
    assert recorder.last.url == "https://api.customer.io/v1/send/email"
    assert recorder.last.headers["authorization"] == "Bearer app-key-1"


@pytest.mark.parametrize(
    ("region", "base_url", "track", "app"),
    [
        ("us", None, "https://track.customer.io", "https://api.customer.io"),
        ("eu", None, "https://track-eu.customer.io", "https://api-eu.customer.io"),
        ("eu", "http://127.0.0.1:9/", "http://127.0.0.1:9", "http://127.0.0.1:9"),
    ],
)
async def test_region_and_base_url_choose_the_host(
    shell: str, region: str, base_url: str | None, track: str, app: str
) -> None:
    recorder = Recorder()
    await send_event(shell, recorder, region=region, base_url=base_url)
    await app_call(shell, recorder, lambda c: c.send(EMAIL), region=region, base_url=base_url)
    assert str(recorder.requests[0].url) == f"{track}/api/v1/customers/u1/events"
    assert str(recorder.requests[1].url) == f"{app}/v1/send/email"


def _ulid_like(value: str) -> bool:
    return len(value) == 26 and value.isalnum()


TRACK_METHODS: dict[str, tuple[Callable[[Any], Any], str, str, Callable[[Any], bool]]] = {
    "identify": (
        lambda c: c.identify("u1", email="a@x.test", plan="pro"),
        "PUT",
        "/api/v1/customers/u1",
        lambda body: body == {"email": "a@x.test", "plan": "pro"},
    ),
    "delete": (lambda c: c.delete("u1"), "DELETE", "/api/v1/customers/u1", lambda b: b is None),
    "track": (
        lambda c: c.track("u1", "order", {"total": 3}, timestamp=1700000000),
        "POST",
        "/api/v1/customers/u1/events",
        lambda b: b["name"] == "order" and b["data"] == {"total": 3} and _ulid_like(b["id"]),
    ),
    "track_anonymous": (
        lambda c: c.track_anonymous("anon-1", "viewed"),
        "POST",
        "/api/v1/events",
        lambda b: b["anonymous_id"] == "anon-1" and b["name"] == "viewed",
    ),
    "page": (
        lambda c: c.page({"email": "a@x.test"}, "https://x.test/p"),
        "POST",
        "/api/v1/customers/a%40x.test/events",
        lambda b: b["type"] == "page" and b["name"] == "https://x.test/p",
    ),
    "screen": (
        lambda c: c.screen({"cio_id": "abc"}, "Home"),
        "POST",
        "/api/v1/customers/cio_abc/events",
        lambda b: b["type"] == "screen" and b["name"] == "Home",
    ),
    "add_device": (
        lambda c: c.add_device("u1", "tok-1", "ios", last_used=5),
        "PUT",
        "/api/v1/customers/u1/devices",
        lambda b: b == {"device": {"id": "tok-1", "platform": "ios", "last_used": 5}},
    ),
    "delete_device": (
        lambda c: c.delete_device("u1", "tok/1"),
        "DELETE",
        "/api/v1/customers/u1/devices/tok%2F1",
        lambda b: b is None,
    ),
    "suppress": (
        lambda c: c.suppress("u1"),
        "POST",
        "/api/v1/customers/u1/suppress",
        lambda b: b is None,
    ),
    "unsuppress": (
        lambda c: c.unsuppress("u1"),
        "POST",
        "/api/v1/customers/u1/unsuppress",
        lambda b: b is None,
    ),
    "merge": (
        lambda c: c.merge("u1", {"email": "old@x.test"}),
        "POST",
        "/api/v1/merge_customers",
        lambda b: b == {"primary": {"id": "u1"}, "secondary": {"email": "old@x.test"}},
    ),
    "region": (lambda c: c.region(), "GET", "/api/v1/accounts/region", lambda b: b is None),
}


@pytest.mark.parametrize("method", sorted(TRACK_METHODS))
async def test_each_track_method_sends_its_documented_request(shell: str, method: str) -> None:
    call, verb, path, body_ok = TRACK_METHODS[method]
    recorder = Recorder()
    await track_call(shell, recorder, call)
    [sent] = recorder.requests
    assert sent.method == verb
    assert sent.url.raw_path.decode() == path
    assert body_ok(orjson.loads(sent.content) if sent.content else None)


async def test_track_returns_the_op_id_it_sent_as_the_event_id(shell: str) -> None:
    recorder = Recorder()
    given = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    op_id = await track_call(shell, recorder, lambda c: c.track("u1", "e", op_id=given))
    assert op_id == given
    assert orjson.loads(recorder.last.content)["id"] == given


async def test_region_returns_the_parsed_answer(shell: str) -> None:
    answer = {"url": "https://track-eu.customer.io", "region": "eu", "environment_id": 1}
    recorder = Recorder(httpx.Response(200, json=answer))
    assert await track_call(shell, recorder, lambda c: c.region()) == answer


APP_METHODS: dict[str, tuple[Callable[[Any], Any], str, dict[str, Any]]] = {
    "send_email": (
        lambda c: c.send_email(
            to="a@x.test", transactional_message_id="welcome", identifiers={"id": "u1"}
        ),
        "/v1/send/email",
        {"delivery_id": "d1", "queued_at": 1700000000},
    ),
    "send_push": (
        lambda c: c.send_push(identifiers={"id": "u1"}, transactional_message_id=2, title="t"),
        "/v1/send/push",
        {"delivery_id": "d2", "queued_at": 1700000000},
    ),
    "send_sms": (
        lambda c: c.send_sms(identifiers={"id": "u1"}, transactional_message_id=3, to="+1555"),
        "/v1/send/sms",
        {"delivery_id": "d3", "queued_at": 1700000000},
    ),
    "trigger_broadcast": (
        lambda c: c.trigger_broadcast(5, data={"a": 1}, ids=["u1"]),
        "/v1/campaigns/5/triggers",
        {"id": 77},
    ),
}


@pytest.mark.parametrize("method", sorted(APP_METHODS))
async def test_each_app_method_posts_and_returns_the_parsed_answer(shell: str, method: str) -> None:
    call, path, answer = APP_METHODS[method]
    recorder = Recorder(httpx.Response(200, json=answer))
    assert await app_call(shell, recorder, call) == answer
    assert recorder.last.method == "POST"
    assert recorder.last.url.path == path


async def test_an_app_answer_that_is_not_an_object_still_succeeds(shell: str) -> None:
    recorder = Recorder(httpx.Response(200, content=b""))
    assert await app_call(shell, recorder, lambda c: c.send(EMAIL)) == {}


# --- v2 batch -----------------------------------------------------------------------------------

ITEMS = [{"type": "person", "action": "identify", "identifiers": {"id": f"u{i}"}} for i in range(3)]


async def test_send_batch_posts_one_batch_and_200_accepts_all(shell: str) -> None:
    recorder = Recorder(httpx.Response(200, json={}))
    result = await track_call(shell, recorder, lambda c: c.send_batch(ITEMS))
    assert isinstance(result, BatchResult) and result.ok and result.count == 3
    assert recorder.last.url.path == "/api/v2/batch"
    assert orjson.loads(recorder.last.content) == {"batch": ITEMS}


async def test_send_batch_raw_sends_the_bytes_as_given(shell: str) -> None:
    recorder = Recorder(httpx.Response(207, json={"errors": [{"batch_index": 2, "reason": "r"}]}))
    raw = [orjson.dumps(item) for item in ITEMS]
    result = await track_call(shell, recorder, lambda c: c.send_batch_raw(raw))
    assert recorder.last.content == b'{"batch":[' + b",".join(raw) + b"]}"
    assert result.accepted == [0, 1]
    assert result.errors == {2: ItemError(2, reason="r")}


async def test_an_empty_batch_sends_nothing(shell: str) -> None:
    recorder = Recorder()
    result = await track_call(shell, recorder, lambda c: c.send_batch([]))
    assert result.count == 0 and result.ok
    assert recorder.requests == []


async def test_an_unparseable_207_is_retryable(shell: str) -> None:
    recorder = Recorder(httpx.Response(207, content=b"<html>"))
    with pytest.raises(RetryableError):
        await track_call(shell, recorder, lambda c: c.send_batch(ITEMS))


async def test_a_whole_batch_refused_with_400_is_permanent(shell: str) -> None:
    recorder = Recorder(httpx.Response(400, json={"meta": {"error": "malformed batch"}}))
    with pytest.raises(PermanentError, match="POST /api/v2/batch answered 400: malformed batch"):
        await track_call(shell, recorder, lambda c: c.send_batch(ITEMS))


# --- limits before the wire ---------------------------------------------------------------------

REFUSED: dict[str, tuple[Callable[[Any], Any], str]] = {
    "event name": (lambda c: c.track("u1", "n" * 101), "name"),
    "event data": (lambda c: c.track("u1", "e", {"x": "y" * 100_001}), "data"),
    "attribute value": (lambda c: c.identify("u1", bio="x" * 1001), "attributes.bio"),
    "identifier": (lambda c: c.delete("u" * 151), "identifier.id"),
    "batch total": (lambda c: c.send_batch([{"p": "x" * 31_000}] * 17), "batch"),
    "batch item": (lambda c: c.send_batch_raw([b"{}", b"x" * 32_001]), "batch[1]"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_track_limits_are_refused_before_any_request(shell: str, case: str) -> None:
    call, field = REFUSED[case]
    recorder = Recorder()
    with pytest.raises(LimitExceeded) as caught:
        await track_call(shell, recorder, call)
    assert caught.value.field == field
    assert recorder.requests == []


async def test_app_limits_are_refused_before_any_request(shell: str) -> None:
    recorder = Recorder()
    to = [f"p{i}@x.test" for i in range(16)]
    with pytest.raises(LimitExceeded, match="16 recipients exceeds the limit of 15"):
        await app_call(shell, recorder, lambda c: c.send_email(to=to, transactional_message_id=1))
    assert recorder.requests == []


# Ids that would leave the intended URL (issue 11): ".." sent to POST /api/v1/events, a
# delete("..") to DELETE /api/v1. Customer.io's clients encode segments, which keeps dots.
DOT_SEGMENTS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "track ..": (lambda c: c.track("..", "e"), "identifier.id"),
    "delete ..": (lambda c: c.delete(".."), "identifier.id"),
    "identify .": (lambda c: c.identify("."), "identifier.id"),
    "suppress email ..": (lambda c: c.suppress({"email": ".."}), "identifier.email"),
    "delete_device token ..": (lambda c: c.delete_device("u1", ".."), "token"),
    "send a dot path": (
        lambda c: c.send(Request(Api.TRACK, "DELETE", "/api/v1/customers/%2e%2E")),
        "path",
    ),
    "send a dot path with a query": (
        lambda c: c.send(Request(Api.TRACK, "GET", "/api/v1/customers/./x?id_type=id")),
        "path",
    ),
}


@pytest.mark.parametrize("case", sorted(DOT_SEGMENTS))
async def test_dot_segments_are_refused_before_any_request(shell: str, case: str) -> None:
    call, field = DOT_SEGMENTS[case]
    recorder = Recorder()
    with pytest.raises(ValidationError) as caught:
        await track_call(shell, recorder, call)
    assert caught.value.field == field
    assert recorder.requests == []


async def test_ids_with_dots_among_other_characters_travel_percent_encoded(shell: str) -> None:
    recorder = Recorder()
    await track_call(shell, recorder, lambda c: c.delete("../a"))
    await track_call(shell, recorder, lambda c: c.delete("ada@x.io"))
    paths = [request.url.raw_path for request in recorder.requests]
    assert paths == [b"/api/v1/customers/..%2Fa", b"/api/v1/customers/ada%40x.io"]


async def test_a_client_refuses_requests_for_the_other_api(shell: str) -> None:
    recorder = Recorder()
    with pytest.raises(ValidationError, match=re.escape("request.api")):
        await track_call(shell, recorder, lambda c: c.send(EMAIL))
    with pytest.raises(ValidationError, match=re.escape("request.api")):
        await app_call(shell, recorder, lambda c: c.send(EVENT))
    assert recorder.requests == []


# --- statuses -----------------------------------------------------------------------------------


async def test_408_is_retryable(shell: str) -> None:
    error = await expect(shell, RetryableError, httpx.Response(408))
    assert error.status == 408 and error.retry_after is None


async def test_429_with_retry_after_seconds(shell: str) -> None:
    error = await expect(shell, RetryableError, httpx.Response(429, headers={"Retry-After": "3"}))
    assert error.status == 429 and error.retry_after == 3.0


async def test_429_with_retry_after_as_an_http_date(shell: str) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    error = await expect(shell, RetryableError, httpx.Response(429, headers={"Retry-After": when}))
    assert 115 <= error.retry_after <= 120


async def test_429_without_retry_after(shell: str) -> None:
    error = await expect(
        shell, RetryableError, httpx.Response(429, text="over the 10-per-second limit")
    )
    assert error.retry_after is None
    assert "over the 10-per-second limit" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(shell: str, status: int) -> None:
    error = await expect(
        shell, RetryableError, httpx.Response(status, headers={"X-Request-Id": "rq-1"})
    )
    assert error.status == status
    assert error.request_id == "rq-1"
    assert error.endpoint == "POST /api/v1/customers/u1/events"


async def test_400_with_meta_error(shell: str) -> None:
    body = {"meta": {"error": "event name cannot be longer than 100 bytes"}}
    error = await expect(shell, PermanentError, httpx.Response(400, json=body))
    assert error.status == 400
    assert "event name cannot be longer than 100 bytes" in str(error)


async def test_400_with_errors_detail(shell: str) -> None:
    body = {"errors": [{"detail": "to is not a valid email", "status": "400"}]}
    error = await expect(shell, PermanentError, httpx.Response(400, json=body))
    assert "to is not a valid email" in str(error)


@pytest.mark.parametrize("status", [401, 404])
async def test_401_and_404_are_permanent(shell: str, status: int) -> None:
    error = await expect(shell, PermanentError, httpx.Response(status, text="nope"))
    assert error.status == status


async def test_301_wrong_datacenter_from_the_app_api(shell: str) -> None:
    body = {"errors": [{"detail": "wrong datacenter", "status": "301"}]}
    recorder = Recorder(
        httpx.Response(
            301, json=body, headers={"Location": "https://api-eu.customer.io/v1/send/email"}
        )
    )
    with pytest.raises(PermanentError, match="set CUSTOMERIO_REGION") as caught:
        await app_call(shell, recorder, lambda c: c.send(EMAIL))
    assert caught.value.status == 301
    assert len(recorder.requests) == 1  # not followed


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
async def test_track_follows_one_307_308_to_customer_io_keeping_method_and_body(
    shell: str, status: int
) -> None:
    eu = "https://track-eu.customer.io/api/v1/customers/u1/events"
    recorder = Recorder(
        httpx.Response(status, headers={"Location": eu}), httpx.Response(200, json={})
    )
    await send_event(shell, recorder)
    first, second = recorder.requests
    assert str(second.url) == eu
    assert second.method == "POST"
    assert second.content == first.content
    assert second.headers["authorization"] == first.headers["authorization"]


async def test_a_second_redirect_is_not_followed(shell: str) -> None:
    hop = httpx.Response(307, headers={"Location": "https://track-eu.customer.io/x"})
    recorder = Recorder(hop, hop, httpx.Response(200))
    with pytest.raises(PermanentError, match=re.escape("track-eu.customer.io")):
        await send_event(shell, recorder)
    assert len(recorder.requests) == 2


async def test_a_redirect_to_a_foreign_host_is_not_followed(shell: str) -> None:
    recorder = Recorder(httpx.Response(308, headers={"Location": "https://collector.evil.test/x"}))
    with pytest.raises(PermanentError, match=re.escape("collector.evil.test")):
        await send_event(shell, recorder)
    assert len(recorder.requests) == 1


async def test_a_301_on_track_is_permanent_and_not_replayed(shell: str) -> None:
    recorder = Recorder(httpx.Response(301, headers={"Location": "https://track-eu.customer.io/x"}))
    with pytest.raises(PermanentError, match="CUSTOMERIO_REGION"):
        await send_event(shell, recorder)
    assert len(recorder.requests) == 1


async def test_the_app_api_never_follows_a_redirect(shell: str) -> None:
    recorder = Recorder(
        httpx.Response(307, headers={"Location": "https://api-eu.customer.io/v1/send/email"})
    )
    with pytest.raises(PermanentError, match=re.escape("api-eu.customer.io")):
        await app_call(shell, recorder, lambda c: c.send(EMAIL))
    assert len(recorder.requests) == 1


# --- transport failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), RetryableError),
        (httpx.ConnectTimeout("timed out"), RetryableError),
        (httpx.PoolTimeout("no connection free"), RetryableError),
        (httpx.WriteError("broken pipe"), RetryableError),
        (httpx.ReadTimeout("timed out"), AmbiguousError),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            AmbiguousError,
        ),
        (httpx.ReadError("connection reset"), AmbiguousError),
    ],
)
async def test_transport_failures(shell: str, failure: Exception, error: type[ApiError]) -> None:
    caught = await expect(shell, error, failure)
    assert caught.endpoint == "POST /api/v1/customers/u1/events"
    assert caught.status is None
    assert type(failure).__name__ in str(caught)


async def test_an_ambiguous_app_send_is_not_retried_by_the_client(shell: str) -> None:
    recorder = Recorder(httpx.ReadTimeout("timed out"), httpx.Response(200, json={}))
    with pytest.raises(AmbiguousError):
        await app_call(shell, recorder, lambda c: c.send(EMAIL))
    assert len(recorder.requests) == 1


# --- construction -------------------------------------------------------------------------------


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")} - {"close", "aclose"}


@pytest.mark.parametrize(
    ("sync", "async_"), [(TrackClient, AsyncTrackClient), (AppClient, AsyncAppClient)]
)
def test_sync_and_async_shells_have_the_same_public_methods(sync: type, async_: type) -> None:
    assert _public(sync) == _public(async_)
    for name in _public(async_):
        member = inspect.getattr_static(async_, name)
        if inspect.isfunction(member):
            assert inspect.iscoroutinefunction(member), name
            assert inspect.signature(member) == inspect.signature(getattr(sync, name)), name
    assert hasattr(sync, "close") and inspect.iscoroutinefunction(async_.aclose)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "CUSTOMERIO_SITE_ID",
        "CUSTOMERIO_TRACK_API_KEY",
        "CUSTOMERIO_APP_API_KEY",
        "CUSTOMERIO_REGION",
        "CUSTOMERIO_TRACK_URL",
        "CUSTOMERIO_APP_URL",
        "CIO_RELAY_HTTP_TIMEOUT",
        "CIO_RELAY_ENV",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no cio-relay.toml


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("client", "settings", "missing"),
    [
        (TrackClient, {"track_api_key": "k"}, "CUSTOMERIO_SITE_ID"),
        (AsyncTrackClient, {"site_id": "s"}, "CUSTOMERIO_TRACK_API_KEY"),
        (AppClient, {"site_id": "s", "track_api_key": "k"}, "CUSTOMERIO_APP_API_KEY"),
        (AsyncAppClient, {}, "CUSTOMERIO_APP_API_KEY"),
    ],
)
def test_from_settings_names_the_missing_variable(
    client: Any, settings: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ConfigError, match=missing):
        client.from_settings(Settings(**settings))


@pytest.mark.usefixtures("clean_env")
async def test_from_settings_uses_region_overrides_and_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "s")
    monkeypatch.setenv("CUSTOMERIO_TRACK_API_KEY", "k")
    monkeypatch.setenv("CUSTOMERIO_APP_API_KEY", "a")
    monkeypatch.setenv("CUSTOMERIO_REGION", "eu")
    monkeypatch.setenv("CUSTOMERIO_TRACK_URL", "http://127.0.0.1:7/")
    settings = Settings()
    recorder = Recorder()
    transport = httpx.MockTransport(recorder)
    async with AsyncTrackClient.from_settings(settings, transport=transport) as track:
        assert track.base_url == "http://127.0.0.1:7"
        await track.delete("u1")
    with AppClient.from_settings(settings, transport=transport) as app:
        assert app.base_url == "https://api-eu.customer.io"
        assert app.configured_region == "eu"
        app.send(EMAIL)
    assert (
        recorder.requests[0].headers["authorization"]
        == "Basic " + base64.b64encode(b"s:k").decode()
    )
    assert recorder.requests[1].headers["authorization"] == "Bearer a"
    assert recorder.requests[0].extensions["timeout"]["read"] == settings.http_timeout


def test_keys_are_stripped_and_empty_ones_refused() -> None:
    recorder = Recorder()
    with TrackClient(" s ", "k\n", transport=httpx.MockTransport(recorder)) as client:
        client.delete("u1")
    assert recorder.last.headers["authorization"] == "Basic " + base64.b64encode(b"s:k").decode()
    with pytest.raises(ConfigError, match="CUSTOMERIO_TRACK_API_KEY"):
        TrackClient("s", " ")
    with pytest.raises(ConfigError, match="CUSTOMERIO_APP_API_KEY"):
        AppClient("")


def test_timeouts_and_pool_size_reach_httpx() -> None:
    recorder = Recorder()
    timeout = httpx.Timeout(5.0, connect=1.0)
    with TrackClient(
        SITE, TRACK_KEY, timeout=timeout, transport=httpx.MockTransport(recorder), max_connections=3
    ) as client:
        client.delete("u1")
    assert recorder.last.extensions["timeout"] == timeout.as_dict()
    with pytest.raises(ConfigError, match="max_connections"):
        TrackClient(SITE, TRACK_KEY, max_connections=0)


def test_repr_shows_region_and_base_url_only() -> None:
    with TrackClient(SITE, TRACK_KEY, region="eu") as client:
        assert repr(client) == "TrackClient(region='eu', base_url='https://track-eu.customer.io')"
    with AppClient(APP_KEY) as app:
        assert repr(app) == "AppClient(region='us', base_url='https://api.customer.io')"
