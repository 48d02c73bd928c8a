"""uvicorn's httptools protocol with a response's writes coalesced into one ``send`` system call.

uvicorn writes a response's status line and headers to the socket when the app sends
``http.response.start``, and its body on ``http.response.body``: two system calls, and on a
client waiting on another CPU, two wake-ups, per response. Under load on this 2-core machine
those dominated what a request cost the server (wrk, 64 connections, ``POST
/v1/people/{id}/events`` with the outbox write stubbed out: 57 -> 37 us of server CPU a
request; the bare Starlette endpoint 37 -> 31 us).

``CoalescingTransport`` keeps what is written during one turn of the event loop and hands it to
the socket's transport in one piece at the end of that turn (``loop.call_soon``): no timer, no
added latency beyond the callbacks already due. Closing flushes first. Everything else is the
real transport's.

Import this module only where ``httptools`` is installed (the ``fast`` extra).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport whose writes within one event-loop turn reach the socket as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        if not self._transport.is_closing():  # the connection went away meanwhile
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, set_protocol ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``uvicorn.Config(http=CoalescingHttpToolsProtocol)``: httptools with coalesced writes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)
