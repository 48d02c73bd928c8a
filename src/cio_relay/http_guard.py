"""Deadlines and caps for every HTTP connection: uvicorn's httptools protocol, guarded.

uvicorn bounds nothing a client sends before the app answers: a connection that sends nothing,
half its headers or part of its body stays open for as long as the client likes, httptools
buffers a header of any size, and every connection is accepted. ``guarded_http(limits)`` is
uvicorn's ``HttpToolsProtocol`` with four limits per connection:

- **headers**: complete within ``header_timeout`` seconds of the connection opening, or of the
  first byte of a later request on a kept-alive connection; else 408 and close;
- **body**: while a request body is arriving, at most ``body_timeout`` seconds without a byte;
  else 408 and close (only the close once a response has begun). Time during which uvicorn
  itself stopped reading (the app has not taken what arrived yet, or a pipelined request waits
  its turn), or the client waits for a ``100 Continue`` the app has not asked for, is not the
  client's and does not count;
- **header bytes**: at most ``max_header_bytes`` received before the headers end, and as many
  again of trailers (and chunk framing past 64 bytes a chunk) after them; else 431 and close;
- **connections**: past ``max_connections`` open at once, a new connection is answered 503 at
  once and closed, so idle sockets cannot exhaust the process.

An idle kept-alive connection is closed by uvicorn's own keep-alive timeout. A body left unread
by an early answer (a 401 before the body) is discarded by uvicorn as it arrives, under the body
deadline, and never held. Use it as ``uvicorn.Config(app, http=guarded_http(limits))``;
``on_refused`` (``Metrics.on_connection_refused`` in the service) hears of each refusal by the
limit that made it: ``header_timeout``, ``body_timeout``, ``header_bytes``, ``connections``.

Why a subclass of uvicorn's protocol: none of the servers at hand has all four limits. uvicorn
has a keep-alive timeout and a concurrency limit checked only once headers are complete (so an
idle socket is never refused); granian (Rust) has a header timeout but no body deadline or
connection cap, and had the worse p99 (docs/benchmarks.md); hypercorn (pure Python h11) is
slower than uvicorn with httptools; and an ASGI middleware sees a connection only once its
headers are complete. The subclass keeps the stack every test and benchmark already measures.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cio_relay.config import Settings

__all__ = ["ConnectionLimits", "GuardedHttpToolsProtocol", "guarded_http"]

log = logging.getLogger("cio_relay.http")

# What a connection is doing, which says which deadline runs.
_IDLE = 0  # between requests: uvicorn's keep-alive timeout runs
_HEADERS = 1  # receiving a request's headers: header_timeout from the first byte
_BODY = 2  # headers in, until the answer: body_timeout without a byte while the body is due

#: Timers fire up to a millisecond early (libuv's clock); closer than this counts as reached.
_TIMER_SLACK = 0.005
#: At most one "connection refused" warning per this many seconds: a flood logs a count.
_REFUSAL_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one server process allows each connection (see the module docstring)."""

    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_connections: int

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{field.name}: must be a finite number over 0, got {value}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            max_header_bytes=settings.http_max_header_bytes,
            max_connections=settings.http_max_connections,
        )


def _error_response(
    status: int, body: dict[str, Any], default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    """A whole HTTP/1.1 response that ends the connection, with a JSON error body in the
    service's shape (``error``, ``message``, and what limit was passed)."""
    content = orjson.dumps(body)
    head = [STATUS_LINE[status]]
    head.extend(name + b": " + value + b"\r\n" for name, value in default_headers)
    if status == 503:
        head.append(b"retry-after: 1\r\n")
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(content))
    head.append(b"connection: close\r\n\r\n")
    return b"".join(head) + content


# The base class's methods, called directly: these run for every request, and super() would
# build a proxy object each time.
_base_data_received = HttpToolsProtocol.data_received
_base_on_body = HttpToolsProtocol.on_body
_base_on_response_complete = HttpToolsProtocol.on_response_complete


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits``; make one with ``guarded_http``.

    Few of httptools' callbacks are overridden, as each one is a Python call per request: a
    request's headers are known to have ended when uvicorn has made a new request cycle, and
    its body to have ended when the cycle says so (``more_body``).
    """

    limits: ClassVar[ConnectionLimits]
    on_refused: ClassVar[Callable[[str], object] | None] = None
    _last_refusal_log: ClassVar[float] = float("-inf")
    _refused_since_log: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # Of the request being received: bytes read, bytes of body among them, body chunks.
        self._received = 0
        self._body_bytes = 0
        self._chunks = 0

    # --- the connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.limits.max_connections
        if len(self.connections) > limit:  # this one included
            self._log_refusal(limit)
            message = f"connections: the limit of {limit} open is reached; retry later"
            body = {"error": "too_many_connections", "message": message, "limit": limit}
            self._close_with(503, body, "connections")
            return
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes | memoryview) -> None:
        if self._phase == _IDLE:
            self._expect_headers()  # the first byte of a new request starts its header deadline
        cycle = self.cycle
        if self._phase == _HEADERS:
            if len(data) > self.limits.max_header_bytes - self._received:
                self._feed_beyond_header_room(data, cycle)
                return
            self._received += len(data)
        elif cycle.more_body:  # not counted: a pipelined request's bytes, while the app works
            self._received += len(data)
        _base_data_received(self, data)  # type: ignore[arg-type]  # httptools takes any buffer
        if self.cycle is not cycle:
            self._expect(_BODY, self.limits.body_timeout)  # headers in: the body is due
        elif self._phase == _BODY and self.cycle.more_body:
            self._check_framing()

    def _feed_beyond_header_room(self, data: bytes | memoryview, cycle: Any) -> None:
        """Feed only what the header allowance has room for: httptools buffers a header of any
        size and shows none of it until it ends, so the bytes are counted as they come. If the
        headers end within the room, the rest is body (or a next request) and is fed on."""
        room = self.limits.max_header_bytes - self._received
        view = memoryview(data)
        self._received += room
        _base_data_received(self, view[:room])  # type: ignore[arg-type]
        if self.cycle is cycle:
            limit = self.limits.max_header_bytes
            self._refuse_header_bytes("headers", limit, self._received + len(view) - room)
        elif not self.transport.is_closing():
            self._expect(_BODY, self.limits.body_timeout)
            self.data_received(view[room:])

    def _check_framing(self) -> None:
        """Past the headers, what is not body is chunk framing and trailers, which httptools
        buffers as it does headers: they get the header allowance again, and 64 bytes a chunk."""
        framing = self._received - self._body_bytes
        allowance = 2 * self.limits.max_header_bytes + 64 * self._chunks
        if framing > allowance:
            self._refuse_header_bytes("trailers", allowance, framing)

    def _refuse_header_bytes(self, part: str, limit: int, size: int) -> None:
        self._close_with(
            431,
            {
                "error": "headers_too_large",
                "message": f"{part}: more than the limit of {limit} bytes",
                "field": part,
                "limit": limit,
                "size": size,
                "unit": "bytes",
            },
            "header_bytes",
        )

    def handle_websocket_upgrade(self) -> None:
        self._phase = _IDLE  # the connection is the websocket protocol's from here
        super().handle_websocket_upgrade()

    # --- httptools' callbacks -----------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        _base_on_body(self, body)
        self._body_bytes += len(body)
        self._deadline = self.loop.time() + self.limits.body_timeout

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_response_complete(self) -> None:
        _base_on_response_complete(self)
        if self._phase != _BODY:
            return
        if not self.cycle.more_body:
            self._phase = _IDLE
        elif self.cycle.response_complete:
            # Answered before its body arrived (a 401 before the body): what came with the
            # headers will never be read, and uvicorn would keep it until the connection ends;
            # the rest is dropped as it arrives, under the body deadline.
            self.cycle.body = bytearray()

    # --- the deadline -------------------------------------------------------------------------

    def _expect_headers(self) -> None:
        self._received = self._body_bytes = self._chunks = 0
        self._expect(_HEADERS, self.limits.header_timeout)

    def _expect(self, phase: int, timeout: float) -> None:
        """Enter ``phase`` with a deadline ``timeout`` from now. One timer per connection,
        re-armed only when it would fire too late: most requests arm none (the timer left by
        the previous one fires later and finds nothing to do)."""
        self._phase = phase
        self._deadline = self.loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > self._deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        phase = self._phase
        if phase == _IDLE or self.transport.is_closing():
            return
        if phase == _BODY and not self.cycle.more_body:
            return  # the app has the whole request: its time is not the client's
        now = self.loop.time()
        timeout = self.limits.header_timeout if phase == _HEADERS else self.limits.body_timeout
        if self.flow.read_paused or (phase == _BODY and self.cycle.waiting_for_100_continue):
            # uvicorn is not reading, or the client waits for the app to ask for the body
            # (Expect: 100-continue): the wait is not the client's.
            self._deadline = now + timeout
        if self._deadline - now > _TIMER_SLACK:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        part = "headers" if phase == _HEADERS else "body"
        message = (
            f"headers: not complete within {timeout:g} s"
            if phase == _HEADERS
            else f"body: nothing received for {timeout:g} s"
        )
        log.info("connection closed: %s", message)
        body = {"error": "request_timeout", "message": message, "field": part}
        limit = "header_timeout" if phase == _HEADERS else "body_timeout"
        self._close_with(408, {**body, "limit": timeout, "unit": "seconds"}, limit)

    def _close_with(self, status: int, body: dict[str, Any], limit: str) -> None:
        """Answer ``status`` unless the request was answered or a response is on its way, and
        close the connection. A request the app waits on sees a disconnect; what the app sends
        after that is dropped. ``limit`` names the limit for ``on_refused``."""
        if self.transport.is_closing():
            return
        on_refused = type(self).on_refused  # from the class: a plain function, not a method
        if on_refused is not None:
            on_refused(limit)
        cycle = self.cycle  # the request being received (body) or the one before (headers)
        if cycle is None or not cycle.response_started:
            write = True
        else:
            write = self._phase == _HEADERS and cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if write:
            self.transport.write(_error_response(status, body, self.server_state.default_headers))
        self._phase = _IDLE
        self.transport.close()

    @classmethod
    def _log_refusal(cls, limit: int) -> None:
        cls._refused_since_log += 1
        now = time.monotonic()
        if now - cls._last_refusal_log >= _REFUSAL_LOG_INTERVAL:
            log.warning(
                "connections refused (503) at the limit of %d open: %d since the last warning",
                limit,
                cls._refused_since_log,
            )
            cls._last_refusal_log = now
            cls._refused_since_log = 0


def guarded_http(
    limits: ConnectionLimits, on_refused: Callable[[str], object] | None = None
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``: uvicorn makes one per
    connection from the class alone, so the limits travel as class attributes."""
    attributes = {"limits": limits, "on_refused": staticmethod(on_refused) if on_refused else None}
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), attributes)
