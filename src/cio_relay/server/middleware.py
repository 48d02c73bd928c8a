"""Request ids and tracing around every HTTP request, as plain ASGI (no per-request objects).

``X-Request-Id`` is taken from the request when it looks like an id (1-128 of ``A-Za-z0-9._:-``),
or made up; it is bound to the logging context for the request and sent back on the response.
Anything else a client sends there is replaced, not echoed: a header is no place to inject text
into our logs.

It is the app's one user middleware, so it runs inside Starlette's error middleware: an
unexpected error passes through it, the span records it as a 500, and the app's 500 handler
(``app._internal_error``) puts the id on that answer, which it sends without this ``send``.
"""

from __future__ import annotations

import os
import random
import re
from contextvars import ContextVar
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cio_relay.observability.tracing import Tracing

__all__ = ["REQUEST_ID_HEADER", "RequestIdMiddleware"]

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class _RequestIds:
    """16-hex-digit request ids from a generator seeded by ``os.urandom`` (no system call per
    request); they name a request in the logs, they guard nothing."""

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))

    def __call__(self) -> str:
        return self._random.getrandbits(64).to_bytes(8).hex()  # cheaper than f"{n:016x}"


def _given_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return str(value.decode("ascii")) if _VALID_ID.match(value) else None
    return None


def _structlog_variable(key: str) -> ContextVar[Any]:
    """The context variable structlog keeps ``key`` in (a token names its variable).

    Setting it directly is what ``structlog.contextvars.bind_contextvars(key=...)`` does, at a
    fraction of the cost per request (no keyword dicts, no name formatting or lookups); log
    lines still get the value from structlog's ``merge_contextvars``.
    """
    tokens = structlog.contextvars.bind_contextvars(**{key: None})
    structlog.contextvars.reset_contextvars(**tokens)
    return tokens[key].var


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing | None = None) -> None:
        self.app = app
        self.tracing = tracing if tracing is not None and tracing.enabled else None
        self._new_id = _RequestIds()
        self._log_request_id = _structlog_variable("request_id")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _given_request_id(scope) or self._new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))
        token = self._log_request_id.set(request_id)
        try:
            if self.tracing is None:
                await self._answer(scope, receive, send, header)
                return
            with self.tracing.request_span(scope["method"], request_id) as span:
                status = 500  # unless answered: the error middleware outside answers 500
                try:
                    status = await self._answer(scope, receive, send, header)
                finally:
                    route = getattr(scope.get("route"), "path", None)
                    if route is not None:
                        span.update_name(f"{scope['method']} {route}")
                        span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
        finally:
            self._log_request_id.reset(token)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, header: tuple[bytes, bytes]
    ) -> int:
        """Serve the request with ``header`` on the response; the status sent (0: none)."""
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
        return status
