"""A real HTTP endpoint on 127.0.0.1 that records the webhooks the emulator posts to it.

It can answer 500 to the first ``fail_first`` posts (to exercise retries) and can hold every
answer until ``release()`` (to show that the emulator's API answer does not wait for webhooks).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["Received", "WebhookReceiver"]


class Received:
    """One POST as it arrived: the raw body (what the signature covers) and the headers."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers

    @property
    def event(self) -> dict[str, Any]:
        return dict(orjson.loads(self.body))


class WebhookReceiver:
    def __init__(self, fail_first: int = 0, hold: bool = False) -> None:
        self.received: list[Received] = []
        self.attempts = 0
        self.fail_first = fail_first
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._released.wait(30)
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing:
                        receiver.received.append(Received(body, dict(self.headers.items())))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks"
        # A short poll interval: shutdown() waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        self._released.set()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.received]

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
