"""The coalescing httptools protocol: one socket write per response, the same HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
from starlette.applications import Starlette

from cio_relay.outbox.base import Outbox
from cio_relay.server.protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from tests.server.conftest import serve


class _Socket(asyncio.Transport):
    """Records what reaches the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_writes_of_one_loop_turn_reach_the_socket_as_one() -> None:
    sock = _Socket()
    transport = CoalescingTransport(sock, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    transport.write(b"{}")
    assert sock.writes == []
    await asyncio.sleep(0)  # the end of this turn of the loop
    transport.write(b"next")
    transport.close()  # flushes before closing
    assert sock.writes == [b"HTTP/1.1 202 Accepted\r\n\r\n{}", b"next"]
    assert transport.is_closing()


async def test_what_is_pending_when_the_connection_goes_away_is_dropped() -> None:
    sock = _Socket()
    transport = CoalescingTransport(sock, asyncio.get_running_loop())
    transport.write(b"late")
    sock.close()
    await asyncio.sleep(0)
    assert sock.writes == []


def test_the_service_answers_the_same_over_the_coalescing_protocol(
    make_app: Callable[..., Starlette], auth: dict[str, str], outbox: Outbox
) -> None:
    with (
        serve(make_app(), http=CoalescingHttpToolsProtocol) as url,
        httpx.Client(base_url=url) as http,
    ):
        accepted = [
            http.post(f"/v1/people/u-{i}/events", json={"name": "x"}, headers=auth)
            for i in range(20)
        ]  # one keep-alive connection
        document = http.get("/openapi.json")
        closing = http.get("/healthz", headers={"Connection": "close"})
        refused = http.post("/v1/people/u-1/events", json={"name": "x"})
    assert all(r.status_code == 202 and len(r.json()["op_ids"]) == 1 for r in accepted)
    assert outbox.depth().pending == 20
    assert document.json()["paths"]["/v1/people/{id}/events"]
    assert int(document.headers["content-length"]) == len(document.content) > 10_000
    assert closing.json() == {"status": "alive"}
    assert refused.status_code == 401


def test_a_request_body_in_several_packets_still_gets_one_answer(
    make_app: Callable[..., Starlette], auth: dict[str, str]
) -> None:
    with serve(make_app(), http=CoalescingHttpToolsProtocol) as url:
        port = int(url.rsplit(":", 1)[1])
        body = b'{"name": "x"}'
        head = (
            "POST /v1/people/u-1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: {auth['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(head)
            raw.sendall(body[:5])
            raw.sendall(body[5:])
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert answer.count(b"HTTP/1.1") == 1
    assert answer.endswith(b"]}")
