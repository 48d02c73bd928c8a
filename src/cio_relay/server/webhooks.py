"""The webhook side of the service: receiver, inbox, pipeline and lake, observed and shown.

``WebhookStack.from_settings`` opens the inbox (``<data_dir>/webhooks.db``) and the lake
(``CIO_RELAY_LAKE``), installs the built-in handlers (suppress the person on a hard bounce or a
spam complaint, through the relay's outbox), and wraps the ``WebhookReceiver`` so that every
answer is counted in ``cio_relay_webhooks_total{metric,result}`` and the newest ones are kept
for the dashboard. The pipeline (lake feed and handlers) runs in its own thread between
``start`` and ``stop``.

The metric label comes from the parsed event of an *authentic* request only, and is clamped to
the metrics Customer.io documents; refused requests count as ``unknown``: an unauthenticated
caller must not be able to invent label values (each one a new time series).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cio_relay.config import Settings
from cio_relay.lake.base import Lake
from cio_relay.observability.metrics import Metrics
from cio_relay.relay import Relay
from cio_relay.server.dashboard.sources import FunnelRow, WebhookRow
from cio_relay.webhooks.events import METRICS, Event
from cio_relay.webhooks.inbox import Inbox

__all__ = ["LakeFunnel", "ObservedReceiver", "RecentWebhookRing", "WebhookStack"]

log = logging.getLogger("cio_relay.server")

_RESULTS_BY_STATUS = {401: "refused", 413: "too_large", 503: "unavailable"}
_KNOWN_NAMES = frozenset(f"{kind}_{metric}" for kind, names in METRICS.items() for metric in names)
_FUNNEL_STEPS = ("sent", "delivered", "opened", "clicked", "bounced")


def _label(name: str | None) -> str:
    if not name:
        return "unknown"
    return name if name in _KNOWN_NAMES else "other"


class RecentWebhookRing:
    """The newest webhooks this process answered (default 500), newest first."""

    def __init__(self, size: int = 500, inbox: Inbox | None = None) -> None:
        self._rows: deque[WebhookRow] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.inbox = inbox

    def add(self, row: WebhookRow) -> None:
        with self._lock:
            self._rows.appendleft(row)

    def recent(self, limit: int, offset: int = 0) -> Sequence[WebhookRow]:
        with self._lock:
            return list(self._rows)[offset : offset + limit]

    def total(self) -> int:
        with self._lock:
            return len(self._rows)

    def counts(self) -> Mapping[str, int] | None:
        if self.inbox is None:
            return None
        return dataclasses.asdict(self.inbox.counts())


@dataclass
class _Outcome:
    event: Event | None = None


_current: contextvars.ContextVar[_Outcome | None] = contextvars.ContextVar(
    "cio_relay_webhook_outcome", default=None
)


class ObservedReceiver:
    """Wraps the receiver (plain ASGI): counts each answer and remembers the newest ones."""

    def __init__(self, receiver: ASGIApp, metrics: Metrics, recent: RecentWebhookRing) -> None:
        self.receiver = receiver
        self.metrics = metrics
        self.recent = recent

    @staticmethod
    def on_stored(event: Event) -> None:
        """The receiver's ``on_stored`` (same task as the request): note the event."""
        outcome = _current.get()
        if outcome is not None:
            outcome.event = event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.receiver(scope, receive, send)
            return
        outcome = _Outcome()
        token = _current.set(outcome)
        status = 0
        reply = b""
        body: list[bytes] = []

        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def capture_send(message: Message) -> None:
            nonlocal status, reply
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                reply += message.get("body", b"")
            await send(message)

        try:
            await self.receiver(scope, tee_receive, capture_send)
        finally:
            _current.reset(token)
        self._observe(status, reply, outcome.event, body)

    def _observe(self, status: int, reply: bytes, event: Event | None, body: list[bytes]) -> None:
        if status == 200:
            result = _reply_status(reply)
            name = event.name if event is not None else _name_of(b"".join(body))
        else:
            result = _RESULTS_BY_STATUS.get(status, str(status))
            name = None  # not authentic, or not read: never label by what a stranger sent
        self.metrics.on_webhook(_label(name), result)
        if status == 200:
            self.recent.add(
                WebhookRow(
                    received_at=time.time(),
                    event_id=event.event_id if event is not None else "",
                    metric=_label(name),
                    recipient=(event.recipient or event.email or "") if event is not None else "",
                    state=result,
                )
            )


def _reply_status(reply: bytes) -> str:
    try:
        answer = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return "accepted"
    value = answer.get("status") if isinstance(answer, dict) else None
    return value if value in ("stored", "duplicate", "quarantined") else "accepted"


def _name_of(raw: bytes) -> str | None:
    """``{object_type}_{metric}`` of an authentic payload the receiver did not store anew."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    return f"{payload.get('object_type')}_{payload.get('metric')}"


class LakeFunnel:
    """The dashboard's funnel: the lake's per-day rows summed per message."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def funnel(self, days: int, limit: int) -> Sequence[FunnelRow]:
        totals: dict[tuple[str, str], list[int]] = {}
        for by in ("campaign", "broadcast", "transactional"):
            for row in self.lake.funnel(by=by, days=days):
                counts = totals.setdefault((by, row.message_id), [0] * len(_FUNNEL_STEPS))
                for index, step in enumerate(_FUNNEL_STEPS):
                    counts[index] += getattr(row, step)
        busiest = sorted(totals.items(), key=lambda item: -item[1][0])[:limit]
        return [
            FunnelRow(f"{by} {message_id}", tuple(zip(_FUNNEL_STEPS, counts, strict=True)))
            for (by, message_id), counts in busiest
        ]


class WebhookStack:
    """Inbox, lake, pipeline and the observed receiver, opened from settings."""

    def __init__(
        self,
        *,
        app: ASGIApp,
        inbox: Inbox,
        lake: Lake | None,
        pipeline: Any,
        recent: RecentWebhookRing,
    ) -> None:
        self.app = app
        self.inbox = inbox
        self.lake = lake
        self.pipeline = pipeline
        self.recent = recent
        self.funnel = LakeFunnel(lake) if lake is not None else None

    @classmethod
    def from_settings(
        cls, settings: Settings, relay: Relay, metrics: Metrics
    ) -> WebhookStack | None:
        """None (and a warning) without signing keys: unverifiable webhooks are not accepted."""
        if not settings.webhook_signing_keys:
            log.warning("webhook route disabled: no CUSTOMERIO_WEBHOOK_SIGNING_KEY is configured")
            return None
        from cio_relay.lake.factory import open_lake
        from cio_relay.webhooks import (
            Router,
            SQLiteInbox,
            WebhookPipeline,
            WebhookReceiver,
            install_builtin_handlers,
        )

        inbox = SQLiteInbox(
            settings.data_dir / "webhooks.db", durability=settings.outbox_durability
        )
        lake = open_lake(settings.lake_url)
        router = Router()
        # Unsubscribes are recorded by the user-sync repository when it is wired in; here the
        # relay suppresses hard bounces and spam complaints through the outbox, each unless
        # its setting turns it off.
        install_builtin_handlers(
            router,
            suppress=relay.suppress,
            suppress_on_bounce=settings.webhook_suppress_on_bounce,
            suppress_on_spam=settings.webhook_suppress_on_spam,
            record_unsubscribes=False,
        )
        pipeline = WebhookPipeline(inbox, router, lake)

        def on_stored(event: Event) -> None:
            ObservedReceiver.on_stored(event)
            pipeline.notify(event)

        receiver = WebhookReceiver(
            inbox,
            settings.webhook_signing_keys,
            tolerance=settings.webhook_tolerance,
            max_body=settings.webhook_max_body,
            on_stored=on_stored,
        )
        recent = RecentWebhookRing(inbox=inbox)
        return cls(
            app=ObservedReceiver(receiver, metrics, recent),
            inbox=inbox,
            lake=lake,
            pipeline=pipeline,
            recent=recent,
        )

    def start(self) -> None:
        self.pipeline.start()

    def stop(self) -> None:
        """Stop the pipeline (flushing the lake), then close the lake and the inbox."""
        self.pipeline.stop()
        if self.lake is not None:
            self.lake.close()
        self.inbox.close()
