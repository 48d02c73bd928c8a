"""What to answer a webhook POST: verify, parse, persist, reply. Shared by every front end.

The ASGI ``WebhookReceiver`` and the Django/Flask adapters only move bytes; the decisions of
contract 8 live here, once:

1. over ``max_body`` bytes -> 413 (front ends also check Content-Length and while streaming);
2. signature or timestamp wrong against every signing key -> 401 with an empty body (a front end
   that can answer before reading the body asks ``headers_acceptable`` first: headers missing,
   malformed or out of tolerance get the same 401 without the body being read);
3. authentic but not an event -> quarantined (raw bytes + error), 200: Customer.io holds every
   later webhook behind one that fails, so a payload we cannot read must not block the stream;
4. authentic event -> persisted raw in the inbox (a duplicate ``event_id`` is stored once), 200;
5. the inbox cannot store now -> 503, the only 5xx: Customer.io retries, nothing is lost.

Every answer is also reported to ``on_outcome`` as an ``Outcome``: the reply (its ``result``
names it: stored, duplicate, quarantined, refused, too_large, unavailable, method_not_allowed)
and, for an authentic event that is stored or a duplicate, the parsed event. Front ends report
the answers they give before the body is whole through ``report``; observers (metrics, a list
of recent webhooks) learn what happened from the outcome, never from the bytes.

Signing keys are held as bytes and never appear in reprs, logs or replies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cio_relay.asgi_body import TooLarge
from cio_relay.errors import ConfigError, EventParseError, SignatureError
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import Inbox
from cio_relay.webhooks.signature import DEFAULT_TOLERANCE, check_headers, verify

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_STORE_TIMEOUT",
    "Outcome",
    "Reply",
    "SigningKey",
    "WebhookIntake",
    "header",
]

log = logging.getLogger("cio_relay.webhooks")

DEFAULT_MAX_BODY = 1_000_000
#: Seconds a request waits for the inbox before answering 503: well inside Customer.io's 4 s.
DEFAULT_STORE_TIMEOUT = 2.5
TIMESTAMP_HEADER = "x-cio-timestamp"
SIGNATURE_HEADER = "x-cio-signature"


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


SigningKey = str | bytes | _Secret


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, body, extra headers, and ``result``, what it means in a word."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    result: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one webhook request: the reply, and the event when the request was an
    authentic event that is now in the inbox (``stored``, or a ``duplicate``)."""

    reply: Reply
    event: Event | None = None


STORED = Reply(200, b'{"status":"stored"}', result="stored")
DUPLICATE = Reply(200, b'{"status":"duplicate"}', result="duplicate")
QUARANTINED = Reply(200, b'{"status":"quarantined"}', result="quarantined")
UNAUTHORIZED = Reply(401, result="refused")
METHOD_NOT_ALLOWED = Reply(
    405,
    b'{"error":"method: only POST is allowed"}',
    (("allow", "POST"),),
    result="method_not_allowed",
)
UNAVAILABLE = Reply(
    503,
    b'{"error":"storage unavailable; retry later"}',
    (("retry-after", "1"),),
    result="unavailable",
)


def too_large(refusal: TooLarge) -> Reply:
    """413 with the body every 413 of the service has (``cio_relay.asgi_body``)."""
    return Reply(413, refusal.json(), result="too_large")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup for plain dicts as well as framework header objects."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None


def _key_bytes(key: SigningKey) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    return key.get_secret_value().encode()


class WebhookIntake:
    """Verify, parse and persist one webhook body. Use one per endpoint; it is thread-safe."""

    def __init__(
        self,
        inbox: Inbox,
        signing_keys: Iterable[SigningKey],
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        max_body: int = DEFAULT_MAX_BODY,
        on_stored: Callable[[Event], None] | None = None,
        store_timeout: float = DEFAULT_STORE_TIMEOUT,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        """``on_stored(event)``: a cheap wake-up for each new event, once it is durable.
        ``on_outcome(outcome)``: every answer, with the event when there is one. Both run in
        the request's thread or task and must not block; an exception from either is logged
        and changes no answer."""
        keys = tuple(_key_bytes(key) for key in signing_keys)
        if not keys or not all(keys):
            raise ConfigError(
                "webhook signing keys: none configured (set CUSTOMERIO_WEBHOOK_SIGNING_KEY); "
                "refusing to accept unverifiable webhooks"
            )
        if max_body < 1:
            raise ValueError(f"max_body: must be at least 1 byte, got {max_body}")
        self.inbox = inbox
        self._keys = keys
        self.tolerance = tolerance
        self.max_body = max_body
        self.on_stored = on_stored
        self.on_outcome = on_outcome
        self.store_timeout = store_timeout
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"WebhookIntake(inbox={self.inbox!r}, signing_keys=<{len(self._keys)} hidden>, "
            f"tolerance={self.tolerance}, max_body={self.max_body})"
        )

    def headers_acceptable(self, timestamp: str | None, signature: str | None) -> bool:
        """Whether the signature headers may belong to an authentic webhook: what ``authenticate``
        checks before the HMAC, which needs the body."""
        try:
            check_headers(timestamp, signature, tolerance=self.tolerance, now=self._clock())
        except SignatureError as exc:
            log.info("webhook rejected: %s", exc)  # fixed reasons only; never keys or bodies
            return False
        return True

    def authenticate(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        try:
            verify(
                self._keys, timestamp, signature, body, tolerance=self.tolerance, now=self._clock()
            )
        except SignatureError as exc:
            log.info("webhook rejected: %s", exc)  # fixed reasons only; never keys or bodies
            return False
        return True

    def report(self, reply: Reply, event: Event | None = None) -> Reply:
        """``reply``, once ``on_outcome`` has it. The intake reports its own answers; a front
        end reports those it gives before it has the whole body (401 on the headers, 413 on
        the length, 405)."""
        if self.on_outcome is not None:
            try:
                self.on_outcome(Outcome(reply, event))
            except Exception:  # an observer must never change an answer
                log.exception("webhook on_outcome hook failed")
        return reply

    def _stored(self, event: Event, is_new: bool) -> Reply:
        reply = STORED if is_new else DUPLICATE
        if is_new and self.on_stored is not None:
            try:
                self.on_stored(event)
            except Exception:  # a wake-up hook must never turn a stored event into an error
                log.exception("webhook on_stored hook failed")
        return self.report(reply, event)

    def _refused_before_storing(
        self, body: bytes, timestamp: str | None, signature: str | None
    ) -> Reply | None:
        """413 or 401 (reported), or None for a body to store."""
        if len(body) > self.max_body:
            return self.report(too_large(TooLarge(self.max_body, len(body))))
        if not self.authenticate(body, timestamp, signature):
            return self.report(UNAUTHORIZED)
        return None

    def accept(self, body: bytes, timestamp: str | None, signature: str | None) -> Reply:
        """The whole decision for one body, blocking until it is stored (WSGI-style callers)."""
        refused = self._refused_before_storing(body, timestamp, signature)
        if refused is not None:
            return refused
        received_at = self._clock()
        try:
            try:
                event = parse_event(body)
            except EventParseError as exc:
                self.inbox.quarantine(body, str(exc), received_at=received_at)
                return self.report(QUARANTINED)
            is_new = self.inbox.store(event, body, received_at=received_at)
        except Exception as exc:
            log.warning("webhook not stored: %s", type(exc).__name__)
            return self.report(UNAVAILABLE)
        return self._stored(event, is_new)

    async def accept_async(
        self, body: bytes, timestamp: str | None, signature: str | None
    ) -> Reply:
        """``accept`` for an event loop: the inbox write is awaited, with ``store_timeout``."""
        refused = self._refused_before_storing(body, timestamp, signature)
        if refused is not None:
            return refused
        received_at = self._clock()
        timeout = self.store_timeout
        try:
            try:
                event = parse_event(body)
            except EventParseError as exc:
                await self.inbox.quarantine_async(
                    body, str(exc), received_at=received_at, timeout=timeout
                )
                return self.report(QUARANTINED)
            is_new = await self.inbox.store_async(
                event, body, received_at=received_at, timeout=timeout
            )
        except Exception as exc:
            # A late write may still land; Customer.io's retry is then a harmless duplicate.
            log.warning("webhook not stored: %s", type(exc).__name__)
            return self.report(UNAVAILABLE)
        return self._stored(event, is_new)
