"""``WebhookReceiver``: the Customer.io reporting-webhook endpoint as a plain ASGI app.

It checks the signature headers first (present, well formed, timestamp within the tolerance)
and answers 401 before reading any of the body when they cannot be authentic: an unsigned or
stale request costs no more than its headers, whatever body it declares (the server discards
what it sends after the answer, under its own deadlines: ``cio_relay.http_guard``). Then it
streams the body through the HMAC of every signing key, keeping its first ``max_body`` bytes
(16 MiB by default), and hands them to ``WebhookIntake`` (compare the signature, parse, persist,
reply). No size is refused: an authentic body past ``max_body`` is stored as its event's fields,
marked truncated, and answered 200 (Customer.io pauses an endpoint that answers errors); one
whose signature fails is refused once it has been read, having cost at most ``max_body`` bytes.
No handler runs in the request path: the answer is sent once the event is durable, and the
router works from the inbox afterwards. ``on_stored`` is called with each new event after it is
persisted (a cheap wake-up such as ``WebhookPipeline.notify``; it must not block), and
``on_outcome`` with the ``Outcome`` of every answered request (``webhooks/intake.py``).

Run it alone (``uvicorn`` serves any ASGI app; it ignores the path), or mount it::

    from starlette.applications import Starlette
    from starlette.routing import Route
    from cio_relay.webhooks import SQLiteInbox, WebhookReceiver

    receiver = WebhookReceiver(SQLiteInbox("webhooks.db"), ["signing-key"])
    app = Starlette(routes=[Route("/webhooks/customerio", receiver, methods=["POST"])])

    # FastAPI: app.mount("/webhooks/customerio", receiver)
    # (or app.add_route("/webhooks/customerio", receiver, methods=["POST"]))

A raw ASGI app rather than a Starlette endpoint because this is the hot path: no request
object, no middleware stack, one pass over the headers: every microsecond here is a share of
what a bare endpoint serves (``bench_webhooks``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable

from starlette.types import Receive, Scope, Send

from cio_relay.asgi_body import stream_body
from cio_relay.webhooks.events import Event
from cio_relay.webhooks.inbox import Inbox
from cio_relay.webhooks.intake import (
    DEFAULT_MAX_BODY,
    DEFAULT_STORE_TIMEOUT,
    METHOD_NOT_ALLOWED,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    UNAUTHORIZED,
    Outcome,
    Reply,
    SigningKey,
    WebhookIntake,
)
from cio_relay.webhooks.signature import DEFAULT_TOLERANCE

__all__ = ["WebhookReceiver"]

_TIMESTAMP = TIMESTAMP_HEADER.encode()
_SIGNATURE = SIGNATURE_HEADER.encode()
_JSON = (b"content-type", b"application/json")


@functools.lru_cache(maxsize=64)
def _raw_headers(reply: Reply) -> tuple[tuple[bytes, bytes], ...]:
    """The ASGI headers of a reply, encoded once per distinct reply (they are constants)."""
    headers = [_JSON, (b"content-length", str(len(reply.body)).encode())]
    headers.extend((name.encode(), value.encode()) for name, value in reply.headers)
    return tuple(headers)


async def _answer(send: Send, reply: Reply) -> None:
    headers = list(_raw_headers(reply))  # a fresh list: middleware may append to it
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Let the receiver run as the whole app under uvicorn (nothing to start or stop)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class WebhookReceiver:
    """ASGI app: ``POST`` a Customer.io reporting webhook; answers 200/401/503."""

    def __init__(
        self,
        inbox: Inbox,
        signing_keys: Iterable[SigningKey],
        tolerance: int = DEFAULT_TOLERANCE,
        max_body: int = DEFAULT_MAX_BODY,
        on_stored: Callable[[Event], None] | None = None,
        *,
        store_timeout: float = DEFAULT_STORE_TIMEOUT,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.intake = WebhookIntake(
            inbox,
            signing_keys,
            tolerance=tolerance,
            max_body=max_body,
            on_stored=on_stored,
            store_timeout=store_timeout,
            clock=clock,
            on_outcome=on_outcome,
        )

    def __repr__(self) -> str:
        return f"WebhookReceiver({self.intake!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not ours to serve; closing the scope refuses them
        intake = self.intake
        if scope["method"] != "POST":
            await _answer(send, intake.report(METHOD_NOT_ALLOWED))
            return
        timestamp = signature = None
        for name, value in scope["headers"]:
            if name == _TIMESTAMP:
                timestamp = value.decode("latin-1")
            elif name == _SIGNATURE:
                signature = value.decode("latin-1")
        if timestamp is None or not intake.headers_acceptable(timestamp, signature):
            await _answer(send, intake.report(UNAUTHORIZED))
            return
        digest = intake.start_signature(timestamp)
        body = await stream_body(receive, intake.max_body, digest.update)
        if body is None:
            return  # the client went away: nobody to answer, nothing to report
        reply = await intake.accept_async(
            body.kept, timestamp, signature, digest=digest, size=body.size
        )
        await _answer(send, reply)
