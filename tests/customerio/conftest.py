"""A raw TCP peer on 127.0.0.1 that misbehaves on purpose, for the transport-failure tests.

Real sockets, real kernel behaviour: the peer reads what the client writes and then closes,
never answers, resets the connection, or answers with a canned response.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import pytest

Behaviour = Literal["close_after_request", "never_answer", "reset_at_once", "answer"]


def _read_request(conn: socket.socket) -> bytes:
    """One HTTP/1.1 request with a Content-Length body (what httpx sends us)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class RawPeer:
    """Accepts connections one at a time and treats each as ``behaviour`` says."""

    def __init__(
        self, behaviour: Behaviour, answer: Callable[[bytes], bytes] | None = None
    ) -> None:
        self.behaviour = behaviour
        self.answer = answer
        self.received: list[bytes] = []
        self.connections = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the listener was shut down: we are done
                return
            self.connections += 1
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        if self.behaviour == "reset_at_once":
            # SO_LINGER 0: close() sends RST, so the client's writes fail mid-request.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if self.behaviour == "answer":
            self._answer_until_closed(conn)
            return
        self.received.append(_read_request(conn))
        if self.behaviour == "never_answer":
            self.stop.wait()

    def _answer_until_closed(self, conn: socket.socket) -> None:
        assert self.answer is not None
        while request := _read_request(conn):
            self.received.append(request)
            conn.sendall(self.answer(request))

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.thread.join(timeout=10)


@pytest.fixture
def raw_peer() -> Iterator[Callable[..., RawPeer]]:
    peers: list[RawPeer] = []

    def start(behaviour: Behaviour, answer: Callable[[bytes], bytes] | None = None) -> RawPeer:
        peer = RawPeer(behaviour, answer)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
