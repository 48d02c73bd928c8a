"""The emulator's ASGI app: region, auth and fault handling around the Track and App handlers.

A request's way through: read the body whole, find its route, apply any fault rule (latency,
rate limit, dropped connection, injected error), judge the region by the Host header, check the
credentials, run the handler, count (endpoint, status). ``/_emulator/`` (inspection and faults)
skips all of that: it has no auth, which is why the emulator binds 127.0.0.1 by default.

Region (customerio-api.md §1): a Host naming a Customer.io host is judged by that host's
region, any other Host counts as the account's own; ``GET /api/v1/accounts/region`` answers
from either region. App API to the wrong region answers 301
"wrong datacenter"; Track from an EU account to the US host is redirected (307) to the EU host;
Track from a US account to the EU host fails with 401.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from . import inspection
from .config import EmulatorConfig
from .faults import DROP, FaultDecision, Faults
from .http import JSON_HEADERS, Problem, Reply, Request
from .limits import NESTED_TOO_DEEPLY, Invalid
from .routes import APP, TRACK, Route, find_route
from .state import EmulatorState
from .webhooks import WebhookSender

__all__ = ["ConnectionDropped", "Emulator", "create_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_CUSTOMERIO_HOSTS = {
    "track.customer.io": (TRACK, "us"),
    "track-eu.customer.io": (TRACK, "eu"),
    "api.customer.io": (APP, "us"),
    "api-eu.customer.io": (APP, "eu"),
}
_UNAUTHORIZED_TRACK = Reply(401, b'{"meta":{"error":"Unauthorized request"}}', JSON_HEADERS)
_UNAUTHORIZED_APP = Reply(401, b'{"errors":[{"detail":"Unauthorized","status":"401"}]}')
_WRONG_DATACENTER = Reply(301, b'{"errors":[{"detail":"wrong datacenter","status":"301"}]}')
_NOT_FOUND = Reply(404, b'{"meta":{"error":"not found"}}')
_TOO_LARGE = Reply(413, b'{"meta":{"error":"request body too large"}}')
_NOT_UTF8 = Reply(400, b'{"meta":{"error":"request path is not UTF-8 once percent-decoded"}}')
_V2_ENDPOINTS = frozenset({"POST /api/v2/entity", "POST /api/v2/batch"})
# Documented with ``security: []`` (track-api.json): no credentials are asked.
_NO_CREDENTIALS = frozenset(
    {"POST /api/v1/metrics", "POST /api/v1/push/events", "POST /unsubscribe/{delivery_id}"}
)
# "You can perform this operation against either of the track API regional URLs; it returns
# your region in either case" (track-api.json, getRegion).
_ANY_REGION = frozenset({"GET /api/v1/accounts/region"})


class ConnectionDropped(Exception):
    """Raised after the answer has started: the server then cuts the connection (a fault)."""


class _QuietDrops(logging.Filter):
    """Keeps injected connection drops out of uvicorn's error log; they are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


def _expected_credentials(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def _basic_matches(header: bytes, expected: bytes, site_id: str, key: str) -> bool:
    if hmac.compare_digest(header, expected):
        return True
    # Slow path: a different but valid spelling (scheme case, padding) of the same credentials.
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except ValueError:
        return False
    return hmac.compare_digest(user, site_id.encode()) & hmac.compare_digest(password, key.encode())


def _bearer_matches(header: bytes, key: str) -> bool:
    scheme, _, token = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key.encode())


def _segments(raw_path: bytes) -> list[str] | None:
    """The percent-decoded path segments; None when one is not UTF-8 (decoding it with
    replacement would make ``%ff`` and ``%fe`` the same person)."""
    try:
        return [
            unquote_to_bytes(part).decode() if b"%" in part else part.decode()
            for part in raw_path.split(b"/")[1:]
        ]
    except UnicodeDecodeError:
        return None


class Emulator:
    """One emulated account: its config, state, faults and webhook sender, served over ASGI."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = EmulatorState(self.config.max_stored_events, self.config.dedupe_window)
        self.faults = Faults()
        self.webhooks = WebhookSender(self.config)
        self._track_auth = _expected_credentials(self.config.site_id, self.config.track_api_key)
        _install_log_filter()

    def __repr__(self) -> str:
        return f"Emulator({self.config!r})"

    def report_delivery(self, delivery: dict[str, Any]) -> None:
        self.webhooks.report(delivery)

    def reset(self) -> None:
        self.state.reset()
        self.faults.clear()
        self.webhooks.reset_log()

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.webhooks.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.monotonic()  # for the request log (GET /_emulator/requests)
        body = await self._read_body(receive)
        if body is None:
            await _send_reply(send, _TOO_LARGE)
            return
        host, authorization = "", b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value
        raw_path = scope.get("raw_path") or scope["path"].encode()
        segments = _segments(raw_path)
        if segments is None:
            self.state.stats.count_request("unknown", _NOT_UTF8.status)
            self.state.request_log.append(
                (arrived, scope["method"], scope["path"], _NOT_UTF8.status)
            )
            await _send_reply(send, _NOT_UTF8)
            return
        request = Request(
            scope["method"],
            scope["path"],
            segments,
            scope.get("query_string", b""),
            body,
            host,
            authorization,
        )
        if request.segments and request.segments[0] == "_emulator":
            await _send_reply(send, await inspection.handle(self, request))
            return
        route = find_route(request.method, request.segments)
        reply = await self._answer(route, request, raw_path, send)
        self.state.stats.count_request(route.endpoint, reply.status)
        self.state.request_log.append((arrived, request.method, request.path, reply.status))
        await _send_reply(send, reply)

    async def _read_body(self, receive: Receive) -> bytes | None:
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _answer(self, route: Route, request: Request, raw_path: bytes, send: Send) -> Reply:
        decision = await self._decide_fault(request) if self.faults.rules else None
        if decision is not None and decision.status is not None:
            if decision.status != DROP:
                return self._fault_reply(route, decision)
            if not decision.process_first:
                await self._drop(route, request, send)
        reply = self._handle(route, request, raw_path)
        if decision is not None and decision.status == DROP:  # processed, then the answer is lost
            await self._drop(route, request, send)
        return reply

    def _handle(self, route: Route, request: Request, raw_path: bytes) -> Reply:
        if route.handler is None:
            return _NOT_FOUND
        refused = self._check_region(route, request, raw_path) or self._check_auth(route, request)
        if refused is not None:
            return refused
        try:
            reply: Reply = route.handler(self, request, *route.args)
            return reply
        except Invalid as invalid:
            problem = Problem(400, invalid.message, invalid.field, reason=invalid.reason)
            return _problem_reply(route, problem)
        except orjson.JSONEncodeError:  # deeper than any JSON encoder will write back
            return _problem_reply(route, Problem(400, NESTED_TOO_DEEPLY))
        except Problem as problem:
            return _problem_reply(route, problem)

    async def _decide_fault(self, request: Request) -> FaultDecision | None:
        decision = self.faults.decide(request.path)
        if decision is not None and decision.latency:
            self.state.stats.delayed_requests += 1
            await asyncio.sleep(decision.latency)
        return decision

    async def _drop(self, route: Route, request: Request, send: Send) -> None:
        """Start an answer that promises a body, then cut the connection: the client has
        written its request whole and sees it lost (an ambiguous failure)."""
        self.state.stats.dropped_connections += 1
        self.state.stats.count_request(route.endpoint, 0)  # 0: no status reached the client
        started = [(b"content-type", b"application/json"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": started})
        raise ConnectionDropped(request.path)

    def _fault_reply(self, route: Route, decision: FaultDecision) -> Reply:
        assert decision.status is not None
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if decision.retry_after is not None:
            headers = ((b"retry-after", str(math.ceil(decision.retry_after)).encode()),)
        if decision.rate_limited:
            self.state.stats.rate_limited += 1
            message, reason = "rate limit exceeded", "rate_limited"
        else:
            self.state.stats.injected_errors += 1
            message, reason = "injected fault", "injected_fault"
        problem = Problem(decision.status, message, headers=headers, reason=reason)
        return _problem_reply(route, problem)

    def _check_region(self, route: Route, request: Request, raw_path: bytes) -> Reply | None:
        named = _CUSTOMERIO_HOSTS.get(request.host.rsplit(":", 1)[0].lower())
        if named is None or named[1] == self.config.region or route.endpoint in _ANY_REGION:
            return None
        if route.api == APP:
            return _WRONG_DATACENTER
        if self.config.region == "us":  # a US account's Track call to the EU host fails
            return _UNAUTHORIZED_TRACK
        location = self.config.eu_track_url.rstrip("/").encode() + raw_path
        if request.query:
            location += b"?" + request.query
        return Reply(307, b"", ((b"location", location),))

    def _check_auth(self, route: Route, request: Request) -> Reply | None:
        if route.endpoint in _NO_CREDENTIALS:
            return None
        if route.api == TRACK:
            if _basic_matches(
                request.authorization,
                self._track_auth,
                self.config.site_id,
                self.config.track_api_key,
            ):
                return None
            return _UNAUTHORIZED_TRACK
        if _bearer_matches(request.authorization, self.config.app_api_key):
            return None
        return _UNAUTHORIZED_APP


def _problem_reply(route: Route, problem: Problem) -> Reply:
    """An error in the documented shape of its API (track-api.json): v2 answers
    ``{"errors": [{reason, field, message}]}``; v1 documents both ``meta.error`` (merge) and
    ``meta.errors`` (the shared 400, delete device, forms), so both are given; the App API
    answers ``{"errors": [{detail, status}]}``."""
    if route.api == TRACK:
        if route.endpoint in _V2_ENDPOINTS:
            error = {"reason": problem.reason, "field": problem.field, "message": problem.message}
            return Reply(problem.status, orjson.dumps({"errors": [error]}), problem.headers)
        body: dict[str, Any] = {"meta": {"error": problem.message, "errors": [problem.message]}}
    else:
        body = {"errors": [{"detail": problem.message, "status": str(problem.status)}]}
        if route.endpoint.startswith("POST /v1/send/"):
            # Transactional sends are documented with meta.error too (customerio-api.md §5, GO).
            body["meta"] = {"error": problem.message}
    return Reply(problem.status, orjson.dumps(body), problem.headers)


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = (
        []  # 204: no content, so no content headers
        if reply.status == 204
        else [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(reply.body)).encode()),
        ]
    )
    headers.extend(h for h in reply.headers if h[0] != b"content-type")
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def create_app(config: EmulatorConfig | None = None) -> Emulator:
    """The emulator as an ASGI app (an ``Emulator``: its ``.state`` is the in-memory world)."""
    return Emulator(config)
