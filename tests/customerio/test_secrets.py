"""No secret in any repr, log line or error message (design.md contract 9).

The peers here are hostile on purpose: they echo the ``Authorization`` header back in bodies,
redirect to URLs carrying it, and fail with messages quoting it. Logging is captured at DEBUG for
every logger, httpx's and httpcore's included, over real sockets as well as MockTransport.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from cio_relay.customerio import (
    AppClient,
    AsyncAppClient,
    AsyncTrackClient,
    TrackClient,
    prepare,
)
from cio_relay.errors import (
    AmbiguousError,
    CioRelayError,
    ConfigError,
    LimitExceeded,
    PermanentError,
    RetryableError,
    ValidationError,
)
from cio_relay.operations import Api, Request

from .conftest import RawPeer

SITE = "site-4242"
TRACK_KEY = "trk-SECRET-9f8e7d6c"
APP_KEY = "app-SECRET-1a2b3c4d"
BASIC = base64.b64encode(f"{SITE}:{TRACK_KEY}".encode()).decode()
SECRETS = (TRACK_KEY, APP_KEY, BASIC)
EVENT = Request(Api.TRACK, "POST", "/api/v1/customers/u1/events", {"name": "e"})
EMAIL = Request(Api.TRANSACTIONAL, "POST", "/v1/send/email", {"to": "a@x.test"})


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}: {text[:300]!r}"


def assert_error_clean(error: BaseException) -> None:
    assert_clean(str(error), "str(error)")
    assert_clean(repr(error), "repr(error)")
    assert_clean(repr(error.args), "error.args")
    assert_clean(repr(vars(error)), "the error's attributes")
    assert_clean("".join(traceback.format_exception(error)), "the formatted traceback")


def _echo(request: httpx.Request) -> str:
    return request.headers.get("authorization", "")


HOSTILE: dict[str, tuple[Callable[[httpx.Request], httpx.Response], type[CioRelayError]]] = {
    "400 echoing the key": (
        lambda r: httpx.Response(400, json={"meta": {"error": f"bad header {_echo(r)}"}}),
        PermanentError,
    ),
    "401 echoing the key": (lambda r: httpx.Response(401, text=_echo(r)), PermanentError),
    "429 echoing the key": (
        lambda r: httpx.Response(429, text=_echo(r), headers={"Retry-After": "1"}),
        RetryableError,
    ),
    "503 echoing the key": (
        lambda r: httpx.Response(503, json={"errors": [{"detail": _echo(r)}]}),
        RetryableError,
    ),
    "redirect carrying the key": (
        lambda r: httpx.Response(302, headers={"Location": f"https://x.test/?k={_echo(r)}"}),
        PermanentError,
    ),
    "foreign 307 carrying the key": (
        lambda r: httpx.Response(307, headers={"Location": f"https://x.test/{TRACK_KEY}"}),
        PermanentError,
    ),
}


def _raising(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed while sending {request.headers.get('authorization')}")

    return handler


TRANSPORT = {
    "connect error": (_raising(httpx.ConnectError), RetryableError),
    "read timeout": (_raising(httpx.ReadTimeout), AmbiguousError),
    "protocol error": (_raising(httpx.RemoteProtocolError), AmbiguousError),
}


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # root: httpx, httpcore and ours all propagate here
    for chatty in ("httpx", "httpcore"):  # quietened by cio_relay's log setup in other tests
        caplog.set_level(logging.DEBUG, logger=chatty)
    yield caplog
    for record in caplog.records:
        assert_clean(record.getMessage(), f"a log line of {record.name}")
        if record.exc_info:
            assert_clean("".join(traceback.format_exception(*record.exc_info)), "a logged trace")
    assert_clean(caplog.text, "the captured log")


async def _track_error(handler: Callable[[httpx.Request], httpx.Response], shell: str) -> Any:
    transport = httpx.MockTransport(handler)
    try:
        if shell == "sync":
            with TrackClient(SITE, TRACK_KEY, transport=transport) as client:
                client.send(EVENT)
        else:
            async with AsyncTrackClient(SITE, TRACK_KEY, transport=transport) as aclient:
                await aclient.send(EVENT)
    except CioRelayError as exc:
        return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize("shell", ["sync", "async"])
@pytest.mark.parametrize("case", sorted({**HOSTILE, **TRANSPORT}))
async def test_track_errors_never_carry_the_credentials(
    debug_logs: pytest.LogCaptureFixture, shell: str, case: str
) -> None:
    handler, expected = {**HOSTILE, **TRANSPORT}[case]
    error = await _track_error(handler, shell)
    assert type(error) is expected
    assert_error_clean(error)
    logging.getLogger("cio_relay.test").exception("delivery failed", exc_info=error)


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_app_errors_never_carry_the_key(
    debug_logs: pytest.LogCaptureFixture, case: str
) -> None:
    handler, expected = HOSTILE[case]
    async with AsyncAppClient(APP_KEY, transport=httpx.MockTransport(handler)) as app:
        with pytest.raises(expected) as caught:
            await app.send(EMAIL)
    assert_error_clean(caught.value)


async def test_an_unreadable_207_echoing_the_key_is_clean(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    handler = lambda r: httpx.Response(207, text=f"<html>{_echo(r)}</html>")  # noqa: E731
    async with AsyncTrackClient(SITE, TRACK_KEY, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(RetryableError) as caught:
            await c.send_batch([{"type": "person"}])
    assert_error_clean(caught.value)


def _echo_over_the_wire(request: bytes) -> bytes:
    auth = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"authorization:")
    )
    body = orjson.dumps({"meta": {"error": f"rejected {auth.decode()}"}})
    head = f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head + body


async def test_real_sockets_at_debug_log_nothing_secret(
    debug_logs: pytest.LogCaptureFixture,
    raw_peer: Callable[..., RawPeer],
    closed_port_url: str,
) -> None:
    echo = raw_peer("answer", _echo_over_the_wire)
    silent = raw_peer("close_after_request")
    errors: list[BaseException] = []
    for url in (echo.url, silent.url, closed_port_url):
        with TrackClient(SITE, TRACK_KEY, base_url=url) as track:
            with pytest.raises(CioRelayError) as caught:
                track.track("u1", "e")
            errors.append(caught.value)
        async with AsyncAppClient(APP_KEY, base_url=url) as app:
            with pytest.raises(CioRelayError) as caught:
                await app.send_email(to="a@x.test", transactional_message_id=1)
            errors.append(caught.value)
    assert [type(e) for e in errors] == [PermanentError] * 2 + [AmbiguousError] * 2 + [
        RetryableError
    ] * 2
    assert any(r.name.startswith("httpcore") for r in debug_logs.records)  # DEBUG really on
    for error in errors:
        assert_error_clean(error)
        logging.getLogger("cio_relay.test").error("failed: %s", error, exc_info=error)


def test_config_and_validation_errors_are_clean() -> None:
    errors: list[BaseException] = []
    for bad in (
        lambda: TrackClient(SITE, TRACK_KEY, base_url=f"https://{SITE}:{TRACK_KEY}@h.test"),
        lambda: TrackClient(SITE, TRACK_KEY, region="mars"),
        lambda: AppClient(APP_KEY, max_connections=0),
    ):
        with pytest.raises(ConfigError) as caught:
            bad()
        errors.append(caught.value)
    with TrackClient(SITE, TRACK_KEY) as client:
        with pytest.raises(LimitExceeded) as limit:
            client.track("u1", "n" * 200)
        errors.append(limit.value)
        with pytest.raises(ValidationError) as wrong_api:
            client.send(EMAIL)
        errors.append(wrong_api.value)
    for error in errors:
        assert_error_clean(error)


async def test_reprs_show_region_and_base_url_only() -> None:
    with TrackClient(SITE, TRACK_KEY) as track, AppClient(APP_KEY) as app:
        async with (
            AsyncTrackClient(SITE, TRACK_KEY, region="eu") as atrack,
            AsyncAppClient(APP_KEY, base_url="http://127.0.0.1:1") as aapp,
        ):
            for client in (track, app, atrack, aapp):
                assert_clean(repr(client), "a client repr")
                assert_clean(str(client), "a client str")
                assert "region=" in repr(client) and "base_url=" in repr(client)
    prepared = prepare(EVENT, base_url="https://track.customer.io", authorization=f"Basic {BASIC}")
    assert_clean(repr(prepared), "a prepared request repr")
