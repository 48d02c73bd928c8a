"""The sans-I/O core: request building and every classification decision, without a network."""

from __future__ import annotations

import base64
import email.utils
import time

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cio_relay.customerio import (
    USER_AGENT,
    WriteProgress,
    app_authorization,
    base_url_for,
    classify_response,
    classify_transport_error,
    error_detail,
    parse_retry_after,
    prepare,
    redirect_target,
    track_authorization,
)
from cio_relay.errors import (
    AmbiguousError,
    ApiError,
    ConfigError,
    PermanentError,
    RetryableError,
    ValidationError,
    WrongRegionError,
)
from cio_relay.operations import Api, Request

ENDPOINT = "POST /api/v1/customers/u1/events"


def _raises(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        classify_response(status, headers or {}, body, endpoint=ENDPOINT, region="us")
    return caught.value


# --- base URLs and auth -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "region", "expected"),
    [
        ("track", "us", "https://track.customer.io"),
        ("track", "eu", "https://track-eu.customer.io"),
        ("app", "us", "https://api.customer.io"),
        ("app", "eu", "https://api-eu.customer.io"),
    ],
)
def test_base_url_follows_the_region(api: str, region: str, expected: str) -> None:
    assert base_url_for(api, region) == expected  # type: ignore[arg-type]


def test_an_override_wins_over_the_region_and_loses_its_trailing_slash() -> None:
    assert base_url_for("track", "eu", "http://127.0.0.1:9000/") == "http://127.0.0.1:9000"
    assert base_url_for("app", "us", "https://proxy.test/cio/") == "https://proxy.test/cio"


@pytest.mark.parametrize(
    "bad", ["ftp://x.test", "track.customer.io", "https://x.test/?a=1", "https://x.test/#f"]
)
def test_a_malformed_override_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        base_url_for("track", "us", bad)


def test_an_override_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        base_url_for("track", "us", "https://site:hunter2@track.customer.io")
    assert "hunter2" not in str(caught.value)
    assert "credentials" in str(caught.value)


def test_an_unknown_region_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="CUSTOMERIO_REGION"):
        base_url_for("track", "ap")


def test_track_auth_is_basic_site_id_and_key() -> None:
    header = track_authorization("site-1", "key-1")
    scheme, token = header.split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token) == b"site-1:key-1"


def test_app_auth_is_a_bearer_key() -> None:
    assert app_authorization("app-key") == "Bearer app-key"


# --- request building ---------------------------------------------------------------------------


def test_prepare_builds_url_headers_and_an_orjson_body_from_a_request() -> None:
    request = Request(Api.TRACK, "POST", "/api/v1/customers/u1/events", {"name": "é", "n": 1})
    prepared = prepare(request, base_url="https://track.customer.io", authorization="Basic xyz")
    assert prepared.method == "POST"
    assert prepared.url == "https://track.customer.io/api/v1/customers/u1/events"
    assert prepared.content == orjson.dumps({"name": "é", "n": 1})
    assert prepared.headers["Authorization"] == "Basic xyz"
    assert prepared.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("cio-relay/")
    assert prepared.headers["Content-Type"] == "application/json"
    assert prepared.endpoint == "POST /api/v1/customers/u1/events"


def test_prepare_from_pieces_with_raw_content_and_without_a_body() -> None:
    raw = prepare(
        method="POST",
        path="/api/v2/batch",
        content=b'{"batch":[]}',
        base_url="b",
        authorization="a",
    )
    assert raw.content == b'{"batch":[]}'
    bare = prepare(method="DELETE", path="/api/v1/customers/u1", base_url="b", authorization="a")
    assert bare.content is None
    assert "Content-Type" not in bare.headers


def test_the_prepared_repr_shows_no_headers() -> None:
    prepared = prepare(method="GET", path="/x", base_url="b", authorization="Bearer secret-key")
    assert "secret-key" not in repr(prepared)


def test_prepare_refuses_a_body_that_is_not_json() -> None:
    with pytest.raises(ValidationError, match="body"):
        prepare(method="POST", path="/x", body={"when": object()}, base_url="b", authorization="a")


def test_prepare_refuses_a_relative_path() -> None:
    with pytest.raises(ValidationError, match="path"):
        prepare(method="GET", path="x", base_url="b", authorization="a")


# --- Retry-After --------------------------------------------------------------------------------


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("1.5") == 1.5


def test_retry_after_as_an_http_date_is_seconds_from_now() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 120, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(120.0)


def test_retry_after_in_the_past_is_zero_and_garbage_is_none() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after("-5") == 0.0
    for garbage in (None, "", "soon", "inf", "nan", "Mon, 99 Foo 2024"):
        assert parse_retry_after(garbage) is None


@pytest.mark.parametrize("text", ["١٢", "²", "1_0", "+inf", "1e3"])
def test_retry_after_seconds_are_ascii_digits_only(text: str) -> None:
    # float() reads all of these (Arabic-Indic "١٢" as 12); a header's delay-seconds is ASCII.
    assert parse_retry_after(text) is None


@given(st.integers(min_value=0, max_value=10**6))
def test_any_delay_seconds_round_trips(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == seconds


# --- error bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"meta":{"error":"event name cannot be longer than 100 bytes"}}', "event name cannot"),
        (b'{"meta":{"errors":["id attribute must be present","x"]}}', "id attribute must"),
        (b'{"errors":[{"detail":"wrong datacenter","status":"301"}]}', "wrong datacenter"),
        (b'{"errors":[{"message":"bad to","field":"to"}]}', "to: bad to"),
        (b"plain text failure", "plain text failure"),
    ],
)
def test_error_detail_reads_the_documented_shapes(body: bytes, expected: str) -> None:
    assert expected in error_detail(body)


def test_error_detail_is_truncated() -> None:
    detail = error_detail(b"x" * 10_000)
    assert len(detail) < 400
    assert "10000 chars" in detail


@given(st.binary(max_size=300))
def test_error_detail_never_raises(body: bytes) -> None:
    assert isinstance(error_detail(body), str)


# --- classification of answers ------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 207])
def test_2xx_is_success(status: int) -> None:
    assert classify_response(status, {}, b"{}", endpoint=ENDPOINT) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    error = _raises(status, b"busy")
    assert type(error) is RetryableError
    assert error.status == status
    assert error.retry_after is None


def test_429_carries_retry_after_in_seconds_and_as_a_date() -> None:
    error = _raises(429, headers={"Retry-After": "12"})
    assert isinstance(error, RetryableError) and error.retry_after == 12.0
    header = email.utils.formatdate(time.time() + 90, usegmt=True)
    dated = _raises(429, headers={"retry-after": header})
    assert isinstance(dated, RetryableError)
    assert dated.retry_after is not None and 85 <= dated.retry_after <= 90


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_other_4xx_are_permanent_with_the_parsed_message(status: int) -> None:
    error = _raises(status, b'{"meta":{"error":"value for attribute \'x\' is too long"}}')
    assert type(error) is PermanentError
    assert error.status == status
    assert "value for attribute 'x' is too long" in str(error)
    assert str(error).startswith(f"{ENDPOINT} answered {status}")


def test_errors_keep_the_endpoint_and_request_id_but_no_url() -> None:
    error = _raises(400, b"{}", {"X-Request-Id": "req-42"})
    assert error.endpoint == ENDPOINT
    assert error.request_id == "req-42"
    assert "req-42" in str(error)
    assert "https://" not in str(error)


def test_a_huge_error_body_is_truncated_in_message_and_field() -> None:
    error = _raises(400, b'{"meta":{"error":"' + b"y" * 50_000 + b'"}}')
    assert len(str(error)) < 500
    assert len(error.body) <= 500


def test_known_secrets_echoed_by_the_server_are_scrubbed() -> None:
    with pytest.raises(PermanentError) as caught:
        classify_response(
            401,
            {},
            b'{"meta":{"error":"bad key sk-live-123"}}',
            endpoint=ENDPOINT,
            secrets=("sk-live-123",),
        )
    assert "sk-live-123" not in str(caught.value)
    assert "sk-live-123" not in caught.value.body
    assert "[redacted]" in str(caught.value)


def test_301_wrong_datacenter_says_to_set_the_region() -> None:
    error = _raises(301, b'{"errors":[{"detail":"wrong datacenter","status":"301"}]}')
    assert type(error) is WrongRegionError and isinstance(error, PermanentError)
    assert "CUSTOMERIO_REGION" in str(error)
    assert "'eu'" in str(error)  # the client is in us: the advice names the other region


def test_other_redirects_are_permanent_and_name_the_location_host() -> None:
    error = _raises(302, b"", {"Location": "https://elsewhere.test/login?token=abc"})
    assert type(error) is PermanentError
    assert "elsewhere.test" in str(error)
    assert "token=abc" not in str(error)


# --- the one redirect we follow -----------------------------------------------------------------

BASE = "https://track.customer.io"
URL = f"{BASE}/api/v1/customers/u1"


@pytest.mark.parametrize("status", [307, 308])
def test_track_307_308_to_a_customer_io_host_is_followed(status: int) -> None:
    target = redirect_target(
        status,
        {"Location": "https://track-eu.customer.io/api/v1/customers/u1"},
        api="track",
        request_url=URL,
        base_url=BASE,
    )
    assert target == "https://track-eu.customer.io/api/v1/customers/u1"


def test_a_relative_location_on_the_configured_base_host_is_followed() -> None:
    base = "http://127.0.0.1:8123"
    target = redirect_target(
        307, {"location": "/other"}, api="track", request_url=f"{base}/x", base_url=base
    )
    assert target == "http://127.0.0.1:8123/other"


@pytest.mark.parametrize(
    ("status", "api", "location"),
    [
        (307, "track", "https://evil.test/api"),  # foreign host: credentials stay home
        (307, "track", "https://customer.io.evil.test/api"),  # suffix tricks
        (307, "track", "http://track-eu.customer.io/api"),  # no downgrade to http
        (307, "track", "https://u:p@track-eu.customer.io/api"),  # no userinfo
        (301, "track", "https://track-eu.customer.io/api"),  # may turn a POST into a GET
        (302, "track", "https://track-eu.customer.io/api"),
        (307, "app", "https://api-eu.customer.io/v1/send/email"),  # sends are not idempotent
        (307, "track", ""),
    ],
)
def test_other_redirects_are_not_followed(status: int, api: str, location: str) -> None:
    headers = {"Location": location} if location else {}
    assert (
        redirect_target(status, headers, api=api, request_url=URL, base_url=BASE)  # type: ignore[arg-type]
        is None
    )


# --- transport failures -------------------------------------------------------------------------

REQUEST = httpx.Request("POST", "https://track.customer.io/api/v2/batch")


@pytest.mark.parametrize(
    "exc_type",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.WriteError,
        httpx.WriteTimeout,
        httpx.ProxyError,
    ],
)
def test_failures_before_the_request_was_written_are_retryable(exc_type: type) -> None:
    error = classify_transport_error(exc_type("boom", request=REQUEST), endpoint=ENDPOINT)
    assert type(error) is RetryableError
    assert error.endpoint == ENDPOINT
    assert error.status is None


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError]
)
def test_failures_after_the_request_was_written_are_ambiguous(exc_type: type) -> None:
    for written in (None, True):  # by type alone, or known from the trace
        error = classify_transport_error(
            exc_type("lost", request=REQUEST), endpoint=ENDPOINT, written=written
        )
        assert type(error) is AmbiguousError
        assert "may or may not" in str(error)


@pytest.mark.parametrize("exc_type", [httpx.ReadError, httpx.RemoteProtocolError])
def test_a_read_failure_before_the_body_was_written_is_retryable(exc_type: type) -> None:
    # httpcore swallows a write error and reads instead; the trace tells us the body never left.
    error = classify_transport_error(
        exc_type("reset", request=REQUEST), endpoint=ENDPOINT, written=False
    )
    assert type(error) is RetryableError


def test_failures_of_our_own_making_are_permanent() -> None:
    error = classify_transport_error(httpx.UnsupportedProtocol("nope"), endpoint=ENDPOINT)
    assert type(error) is PermanentError


def test_write_progress_learns_from_the_trace() -> None:
    progress = WriteProgress()
    assert progress.state is None
    progress.record("http11.send_request_headers.complete", {})
    assert progress.state is False
    progress.record("http11.send_request_body.complete", {})
    assert progress.state is True


async def test_write_progress_has_an_async_recorder() -> None:
    progress = WriteProgress()
    await progress.arecord("http11.send_request_body.failed", {})
    assert progress.state is False
