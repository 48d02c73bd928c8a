"""The ASGI receiver, one test per failure mode of contract 8.

Each test runs twice: in process through ``httpx.ASGITransport``, and over a real 127.0.0.1
socket (uvicorn in a thread). The inbox is the real ``SQLiteInbox``.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from cio_relay.errors import ConfigError
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import MemoryInbox
from cio_relay.webhooks.receiver import WebhookReceiver
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.webhooks.conftest import serve
from tests.webhooks.helpers import KEY, OLD_KEY, event_id, payload, signed

NOW = 1_700_000_000
PATH = "/webhooks/customerio"
Connect = Callable[[Any], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[SQLiteInbox]:
    with SQLiteInbox(tmp_path / "webhooks.db") as opened:
        yield opened


def receiver_for(inbox: SQLiteInbox, **options: Any) -> WebhookReceiver:
    options.setdefault("clock", lambda: float(NOW))
    return WebhookReceiver(inbox, [KEY], **options)


@pytest.fixture(params=["asgi", "socket"])
def connect(request: pytest.FixtureRequest) -> Connect:
    @asynccontextmanager
    async def open_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
        if request.param == "asgi":
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
        else:
            with serve(app) as url:
                async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                    yield client

    return open_client


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post(PATH, content=body, headers=headers)


async def test_an_authentic_event_is_stored_and_acknowledged(
    connect: Connect, inbox: SQLiteInbox, tmp_path: Path
) -> None:
    body = payload("email", "delivered", customer_id="u1")
    async with connect(receiver_for(inbox)) as client:
        response = await post(client, body, signed(body, timestamp=NOW))
        assert response.status_code == 200 and response.json() == {"status": "stored"}
        # Persisted before the 200: a separate connection to the file already sees it.
        check = sqlite3.connect(tmp_path / "webhooks.db")
        try:
            [(raw,)] = check.execute("SELECT raw FROM webhook_events").fetchall()
        finally:
            check.close()
    assert raw == body


async def test_missing_headers_get_401_with_an_empty_body(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    body = payload()
    headers = signed(body, timestamp=NOW)
    async with connect(receiver_for(inbox)) as client:
        for missing in ("X-CIO-Timestamp", "X-CIO-Signature"):
            partial = {k: v for k, v in headers.items() if k != missing}
            response = await post(client, body, partial)
            assert (response.status_code, response.content) == (401, b"")
        assert (await post(client, body, {})).status_code == 401
    assert inbox.counts().pending == 0


@pytest.mark.parametrize("signature", ["z" * 64, "ab" * 31, "ab" * 33, ""])
async def test_malformed_signatures_get_401(
    connect: Connect, inbox: SQLiteInbox, signature: str
) -> None:
    body = payload()
    async with connect(receiver_for(inbox)) as client:
        response = await post(
            client, body, {"X-CIO-Timestamp": str(NOW), "X-CIO-Signature": signature}
        )
    assert (response.status_code, response.content) == (401, b"")
    assert inbox.counts().pending == 0


async def test_a_signature_made_with_another_key_gets_401(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    body = payload()
    async with connect(receiver_for(inbox)) as client:
        response = await post(client, body, signed(body, key="not-the-key", timestamp=NOW))
    assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize("direction", [-1, 1], ids=["stale", "future"])
async def test_stale_and_future_timestamps_get_401(
    connect: Connect, inbox: SQLiteInbox, direction: int
) -> None:
    edge, beyond = payload(), payload()
    async with connect(receiver_for(inbox)) as client:
        inside = await post(client, edge, signed(edge, timestamp=NOW + direction * 300))
        outside = await post(client, beyond, signed(beyond, timestamp=NOW + direction * 301))
    assert inside.status_code == 200
    assert (outside.status_code, outside.content) == (401, b"")


async def test_the_tolerance_is_configurable(connect: Connect, inbox: SQLiteInbox) -> None:
    body = payload()
    async with connect(receiver_for(inbox, tolerance=5)) as client:
        response = await post(client, body, signed(body, timestamp=NOW - 6))
    assert response.status_code == 401


async def test_rotated_keys_both_verify(connect: Connect, inbox: SQLiteInbox) -> None:
    receiver = WebhookReceiver(inbox, [OLD_KEY, KEY], clock=lambda: float(NOW))
    old_body, new_body = payload(), payload()
    async with connect(receiver) as client:
        old = await post(client, old_body, signed(old_body, key=OLD_KEY, timestamp=NOW))
        new = await post(client, new_body, signed(new_body, key=KEY, timestamp=NOW))
    assert (old.status_code, new.status_code) == (200, 200)
    assert inbox.counts().pending == 2


async def test_a_body_changed_by_one_byte_gets_401(connect: Connect, inbox: SQLiteInbox) -> None:
    body = payload(customer_id="u1")
    headers = signed(body, timestamp=NOW)
    tampered = body.replace(b'"u1"', b'"u2"')
    assert len(tampered) == len(body) and tampered != body
    async with connect(receiver_for(inbox)) as client:
        response = await post(client, tampered, headers)
    assert (response.status_code, response.content) == (401, b"")
    assert inbox.counts().pending == 0


def _large(content_size: int, **data: Any) -> bytes:
    """A sent email whose body content comes last, as Customer.io orders its fields."""
    return payload(
        "email",
        "sent",
        identifiers={"id": "u-big", "email": "big@example.com"},
        customer_id="u-big",
        delivery_id="d-big",
        **data,
        content="<p>" + "x" * content_size + "</p>",
    )


async def test_an_authentic_body_past_the_cap_is_stored_as_its_fields_marked_truncated(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    body = _large(5_000)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with connect(receiver_for(inbox, max_body=1_000)) as client:
        by_length = await post(client, body, signed(body, timestamp=NOW))
        streamed = await client.post(PATH, content=chunks(), headers=signed(body, timestamp=NOW))
    assert (by_length.status_code, by_length.json()) == (
        200,
        {"status": "stored", "truncated": True},
    )
    assert (streamed.status_code, streamed.json()) == (200, {"status": "duplicate"})
    [stored] = inbox.due(10, now=NOW)
    assert stored.truncated and len(stored.raw) < 1_000
    event = parse_event(stored.raw)
    assert (event.name, event.identifiers, event.delivery_id) == (
        "email_sent",
        {"id": "u-big", "email": "big@example.com"},
        "d-big",
    )
    assert "content" not in event.data  # the field the cut went through


async def test_a_body_past_the_cap_with_a_wrong_signature_is_refused(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    body = _large(5_000)
    forged = body.replace(b"u-big", b"u-bad")
    async with connect(receiver_for(inbox, max_body=1_000)) as client:
        response = await post(client, forged, signed(body, timestamp=NOW))
    assert (response.status_code, response.content) == (401, b"")
    assert inbox.counts().pending == 0


async def test_a_large_body_without_signature_headers_is_refused_before_it_is_read(
    inbox: SQLiteInbox,
) -> None:
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": b"x" * 65_536, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"99999999")]}
    await receiver_for(inbox)(scope, receive, send)
    assert received == [] and sent[0]["status"] == 401


async def test_a_truncated_body_whose_event_fields_are_cut_is_quarantined(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    # The huge field comes before the event's own fields: nothing names the event.
    body = b'{"data":{"content":"' + b"x" * 5_000 + b'"},"event_id":"e1"}'
    async with connect(receiver_for(inbox, max_body=1_000)) as client:
        response = await post(client, body, signed(body, timestamp=NOW))
    assert (response.status_code, response.json()) == (200, {"status": "quarantined"})
    [item] = inbox.list_quarantined()
    assert len(item.raw) == 1_000 and f"body of {len(body)} bytes cut at 1000" in item.error


def test_the_default_cap_keeps_16_mib_whole() -> None:
    assert WebhookReceiver(MemoryInbox(), [KEY]).intake.max_body == 16 * 1024 * 1024


async def test_a_body_at_the_cap_is_accepted(connect: Connect, inbox: SQLiteInbox) -> None:
    body = payload()
    async with connect(receiver_for(inbox, max_body=len(body))) as client:
        response = await post(client, body, signed(body, timestamp=NOW))
    assert response.status_code == 200


async def test_authentic_non_json_is_quarantined_and_acknowledged(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    body = b"this is not json"
    async with connect(receiver_for(inbox)) as client:
        response = await post(client, body, signed(body, timestamp=NOW))
    assert response.status_code == 200 and response.json() == {"status": "quarantined"}
    [item] = inbox.list_quarantined()
    assert item.raw == body and item.error.startswith("body: not valid JSON")
    assert inbox.counts().pending == 0


async def test_authentic_json_without_event_id_is_quarantined_and_acknowledged(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    body = b'{"object_type":"email","metric":"sent","timestamp":1700000000,"data":{}}'
    async with connect(receiver_for(inbox)) as client:
        response = await post(client, body, signed(body, timestamp=NOW))
    assert response.status_code == 200 and response.json() == {"status": "quarantined"}
    [item] = inbox.list_quarantined()
    assert (item.raw, item.error) == (body, "event_id: missing")


async def test_unauthentic_garbage_is_not_quarantined(connect: Connect, inbox: SQLiteInbox) -> None:
    async with connect(receiver_for(inbox)) as client:
        response = await post(client, b"garbage", signed(b"other", timestamp=NOW))
    assert response.status_code == 401 and inbox.counts().quarantined == 0


async def test_duplicates_are_acknowledged_and_stored_once(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    same_id = event_id()
    body = payload(event_id_=same_id)
    async with connect(receiver_for(inbox)) as client:
        first = await post(client, body, signed(body, timestamp=NOW))
        second = await post(client, body, signed(body, timestamp=NOW + 60))  # a redelivery
    assert (first.json(), second.json()) == ({"status": "stored"}, {"status": "duplicate"})
    assert [s.event_id for s in inbox.read_after(0, 10)] == [same_id]


async def test_a_transient_storage_failure_answers_503(
    connect: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "locked.db"
    with SQLiteInbox(path, busy_timeout=0.05) as inbox:
        body = payload()
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            async with connect(receiver_for(inbox)) as client:
                blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database
                with caplog.at_level(logging.DEBUG):
                    refused = await post(client, body, signed(body, timestamp=NOW))
                blocker.execute("ROLLBACK")
                retried = await post(client, body, signed(body, timestamp=NOW))
        finally:
            blocker.close()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert retried.json() == {"status": "stored"}
        assert inbox.counts().pending == 1
    assert KEY not in caplog.text and body.decode() not in caplog.text


async def test_a_slow_store_answers_503_within_the_store_timeout(
    connect: Connect, tmp_path: Path
) -> None:
    path = tmp_path / "slow.db"
    with SQLiteInbox(path, busy_timeout=5.0) as inbox:
        body = payload()
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            async with connect(receiver_for(inbox, store_timeout=0.1)) as client:
                blocker.execute("BEGIN EXCLUSIVE")
                response = await post(client, body, signed(body, timestamp=NOW))
                blocker.execute("ROLLBACK")  # the write that was waiting now lands
        finally:
            blocker.close()
        assert response.status_code == 503


# --- the headers are checked before the body is read --------------------------------------------

_FRESH = str(NOW)
_WELL_FORMED = "ab" * 32
_HEADERS_THAT_CANNOT_BE_AUTHENTIC = {
    "unsigned": {},
    "no signature": {"X-CIO-Timestamp": _FRESH},
    "no timestamp": {"X-CIO-Signature": _WELL_FORMED},
    "malformed timestamp": {"X-CIO-Timestamp": "17e8", "X-CIO-Signature": _WELL_FORMED},
    "malformed signature": {"X-CIO-Timestamp": _FRESH, "X-CIO-Signature": "z" * 64},
    "stale": {"X-CIO-Timestamp": str(NOW - 301), "X-CIO-Signature": _WELL_FORMED},
    "future": {"X-CIO-Timestamp": str(NOW + 301), "X-CIO-Signature": _WELL_FORMED},
}


async def _call(
    receiver: WebhookReceiver, headers: dict[str, str], body: bytes
) -> tuple[list[dict[str, Any]], int]:
    """Call the receiver as a server would; what it sent, and how often it asked for the body."""
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": raw}
    await receiver(scope, receive, send)
    return sent, asked


@pytest.mark.parametrize("case", sorted(_HEADERS_THAT_CANNOT_BE_AUTHENTIC))
async def test_headers_that_cannot_be_authentic_get_401_without_the_body_being_read(
    inbox: SQLiteInbox, case: str
) -> None:
    sent, asked = await _call(receiver_for(inbox), _HEADERS_THAT_CANNOT_BE_AUTHENTIC[case], b"{}")
    assert asked == 0
    assert sent[0]["status"] == 401


async def test_every_401_is_the_same_answer_whether_or_not_the_body_was_read(
    inbox: SQLiteInbox,
) -> None:
    """Refused on its headers or by the HMAC over the body: nothing tells the two apart."""
    body = payload()
    answers = []
    for headers in _HEADERS_THAT_CANNOT_BE_AUTHENTIC.values():
        sent, _ = await _call(receiver_for(inbox), headers, body)
        answers.append(sent)
    forged, asked = await _call(receiver_for(inbox), signed(body, key="wrong", timestamp=NOW), body)
    assert asked == 1  # fresh and well formed: only the body can refuse it
    assert all(answer == forged for answer in answers)


@pytest.mark.parametrize("case", ["unsigned", "stale"])
def test_a_large_declared_body_is_refused_before_it_is_sent(inbox: SQLiteInbox, case: str) -> None:
    """Over a real socket the client sends only the headers of a 1 MB body and reads the answer."""
    headers = {
        "Host": "127.0.0.1",
        "Content-Type": "application/json",
        "Content-Length": "1000000",
        **_HEADERS_THAT_CANNOT_BE_AUTHENTIC[case],
    }
    head = f"POST {PATH} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with serve(receiver_for(inbox)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(head.encode() + b"\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:  # the whole head: a 401 has no body
                chunk = client.recv(65_536)
                assert chunk, f"closed without an answer: {answer!r}"
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"\r\ncontent-length: 0\r\n" in answer.lower()
    assert inbox.counts().pending == 0


async def test_only_post_is_allowed(connect: Connect, inbox: SQLiteInbox) -> None:
    async with connect(receiver_for(inbox)) as client:
        response = await client.get(PATH)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_on_stored_is_called_for_new_events_only_and_cannot_break_the_answer(
    connect: Connect, inbox: SQLiteInbox
) -> None:
    seen: list[str] = []

    def on_stored(event: Event) -> None:
        seen.append(event.event_id)
        raise RuntimeError("a broken hook")

    body = payload()
    async with connect(receiver_for(inbox, on_stored=on_stored)) as client:
        first = await post(client, body, signed(body, timestamp=NOW))
        again = await post(client, body, signed(body, timestamp=NOW))
        quarantined = await post(client, b"{}", signed(b"{}", timestamp=NOW))
    assert [r.status_code for r in (first, again, quarantined)] == [200, 200, 200]
    assert len(seen) == 1


async def test_it_mounts_in_a_starlette_app(connect: Connect, inbox: SQLiteInbox) -> None:
    app = Starlette(routes=[Route(PATH, receiver_for(inbox), methods=["POST"])])
    body = payload()
    async with connect(app) as client:
        response = await post(client, body, signed(body, timestamp=NOW))
        missing = await client.post("/elsewhere", content=body, headers=signed(body, timestamp=NOW))
    assert response.json() == {"status": "stored"} and missing.status_code == 404


def test_no_signing_keys_is_a_configuration_error(inbox: SQLiteInbox) -> None:
    with pytest.raises(ConfigError, match="signing keys"):
        WebhookReceiver(inbox, [])
    with pytest.raises(ConfigError, match="signing keys"):
        WebhookReceiver(inbox, [""])


def test_the_repr_hides_the_signing_keys(inbox: SQLiteInbox) -> None:
    from pydantic import SecretStr

    receiver = WebhookReceiver(inbox, [KEY, SecretStr(OLD_KEY), OLD_KEY.encode()])
    assert KEY not in repr(receiver) and OLD_KEY not in repr(receiver)
    assert "3 hidden" in repr(receiver)


async def test_rejections_never_log_keys_or_bodies(
    inbox: SQLiteInbox, caplog: pytest.LogCaptureFixture
) -> None:
    body = payload(customer_id="secret-person")
    transport = httpx.ASGITransport(app=receiver_for(inbox))
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await post(client, body, signed(body, key="wrong", timestamp=NOW))
            await post(client, b"not json", signed(b"not json", timestamp=NOW))
    assert "webhook rejected" in caplog.text
    assert KEY not in caplog.text and "secret-person" not in caplog.text
