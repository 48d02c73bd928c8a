"""What to answer a webhook POST: verify, parse, persist, reply. Shared by every front end.

The ASGI ``WebhookReceiver`` and the Django/Flask adapters only move bytes; the decisions of
contract 8 live here, once:

1. signature or timestamp wrong against every signing key -> 401 with an empty body (a front end
   that can answer before reading the body asks ``headers_acceptable`` first: headers missing,
   malformed or out of tolerance get the same 401 without the body being read);
2. authentic but not an event -> quarantined (raw bytes + error), 200: Customer.io holds every
   later webhook behind one that fails, so a payload we cannot read must not block the stream;
3. authentic event -> persisted raw in the inbox (a duplicate ``event_id`` is stored once), 200;
4. authentic event larger than ``max_body`` (16 MiB by default) -> its fields, read from the
   first ``max_body`` bytes (``webhooks/truncated.py``), stored and marked truncated, 200. Never a
   413: Customer.io pauses every later webhook to an endpoint that answers an error, for days.
   Front ends stream the body through the HMAC (``start_signature``) and keep only its first
   ``max_body`` bytes, so an unauthenticated client costs at most that much memory, and a body
   whose signature then fails is refused (401) like any other;
5. the inbox cannot store now -> 503, the only 5xx: Customer.io retries, nothing is lost.

Every answer is also reported to ``on_outcome`` as an ``Outcome``: the reply (its ``result``
names it: stored, truncated, duplicate, quarantined, refused, unavailable, method_not_allowed)
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

import orjson

from cio_relay.config import DEFAULT_WEBHOOK_MAX_BODY
from cio_relay.errors import ConfigError, EventParseError, SignatureError
from cio_relay.webhooks.events import Event, event_from_document, parse_event
from cio_relay.webhooks.inbox import Inbox
from cio_relay.webhooks.signature import (
    DEFAULT_TOLERANCE,
    StreamingSignature,
    check_headers,
    verify,
)
from cio_relay.webhooks.truncated import leading_fields

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

#: Bytes of a body kept whole; past it an authentic event is stored as its fields, truncated.
DEFAULT_MAX_BODY = DEFAULT_WEBHOOK_MAX_BODY
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
STORED_TRUNCATED = Reply(200, b'{"status":"stored","truncated":true}', result="truncated")
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

    def _stored(self, read: _Readable, is_new: bool) -> Reply:
        event = read.event
        assert event is not None  # only events are stored
        reply = (STORED_TRUNCATED if read.truncated else STORED) if is_new else DUPLICATE
        if is_new and self.on_stored is not None:
            try:
                self.on_stored(event)
            except Exception:  # a wake-up hook must never turn a stored event into an error
                log.exception("webhook on_stored hook failed")
        return self.report(reply, event)

    def start_signature(self, timestamp: str) -> StreamingSignature:
        """The HMAC a front end feeds the body to as it streams in, for ``accept(digest=...)``."""
        return StreamingSignature(self._keys, timestamp)

    def _refused(
        self,
        body: bytes,
        timestamp: str | None,
        signature: str | None,
        digest: StreamingSignature | None,
    ) -> Reply | None:
        """401 (reported), or None for an authentic body to store."""
        if digest is None:
            authentic = self.authenticate(body, timestamp, signature)
        else:
            authentic = signature is not None and digest.matches(signature)
            if not authentic:
                log.info("webhook rejected: signature mismatch")
        return None if authentic else self.report(UNAUTHORIZED)

    def _read(self, kept: bytes, size: int) -> _Readable:
        """The event to store and its bytes, or the error to quarantine the bytes with."""
        if size <= len(kept):
            try:
                return _Readable(parse_event(kept), kept)
            except EventParseError as exc:
                return _Readable(None, kept, str(exc))
        # Too large to keep whole: the event's fields from the kept beginning, marked.
        fields = leading_fields(kept)
        try:
            event = event_from_document(fields)
        except EventParseError as exc:
            error = f"body of {size} bytes cut at {len(kept)}: {exc}"
            return _Readable(None, kept, error)
        return _Readable(event, orjson.dumps(fields), truncated=True)

    def _split(self, body: bytes, size: int | None) -> tuple[bytes, int]:
        """What is kept of ``body`` (``max_body`` bytes at most) and the whole body's size."""
        whole = len(body) if size is None else size
        return (body if len(body) <= self.max_body else body[: self.max_body]), whole

    def accept(
        self,
        body: bytes,
        timestamp: str | None,
        signature: str | None,
        *,
        digest: StreamingSignature | None = None,
        size: int | None = None,
    ) -> Reply:
        """The whole decision for one body, blocking until it is stored (WSGI-style callers).

        ``body`` is the whole body, or, with ``digest`` (the HMAC fed while it streamed in,
        ``start_signature``) and ``size``, its first ``max_body`` bytes."""
        refused = self._refused(body, timestamp, signature, digest)
        if refused is not None:
            return refused
        received_at = self._clock()
        read = self._read(*self._split(body, size))
        try:
            if read.event is None:
                self.inbox.quarantine(read.raw, read.error, received_at=received_at)
                return self.report(QUARANTINED)
            is_new = self.inbox.store(
                read.event, read.raw, received_at=received_at, truncated=read.truncated
            )
        except Exception as exc:
            log.warning("webhook not stored: %s", type(exc).__name__)
            return self.report(UNAVAILABLE)
        return self._stored(read, is_new)

    async def accept_async(
        self,
        body: bytes,
        timestamp: str | None,
        signature: str | None,
        *,
        digest: StreamingSignature | None = None,
        size: int | None = None,
    ) -> Reply:
        """``accept`` for an event loop: the inbox write is awaited, with ``store_timeout``."""
        refused = self._refused(body, timestamp, signature, digest)
        if refused is not None:
            return refused
        received_at = self._clock()
        timeout = self.store_timeout
        read = self._read(*self._split(body, size))
        try:
            if read.event is None:
                await self.inbox.quarantine_async(
                    read.raw, read.error, received_at=received_at, timeout=timeout
                )
                return self.report(QUARANTINED)
            is_new = await self.inbox.store_async(
                read.event,
                read.raw,
                received_at=received_at,
                timeout=timeout,
                truncated=read.truncated,
            )
        except Exception as exc:
            # A late write may still land; Customer.io's retry is then a harmless duplicate.
            log.warning("webhook not stored: %s", type(exc).__name__)
            return self.report(UNAVAILABLE)
        return self._stored(read, is_new)


@dataclass(frozen=True, slots=True)
class _Readable:
    """An authentic body read: the event and the bytes to store, or what to quarantine."""

    event: Event | None
    raw: bytes
    error: str = ""
    truncated: bool = False
