"""The webhook side of the service: receiver, inbox, pipeline and lake, observed and shown.

``WebhookStack.from_settings`` opens the inbox (``<data_dir>/webhooks.db``) and the lake
(``CIO_RELAY_LAKE``), installs the built-in handlers (bounces and spam complaints by their
policies, ``record`` unless configured: ``webhooks/builtin.py``; subscription changes into the
user repository's local preferences when there is one), and gives the
``WebhookReceiver`` a ``WebhookObserver`` as its ``on_outcome``, so that every answer is counted in
``cio_relay_webhooks_total{metric,result}`` and the newest ones are kept for the dashboard. The
pipeline (lake feed and handlers) runs in its own thread between ``start`` and ``stop``.

The metric label comes from the event the receiver parsed, which it reports for an authentic
request only, and is clamped to the metrics Customer.io documents; every other answer counts as
``unknown``: an unauthenticated caller must not be able to invent label values (each one a new
time series).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp

from cio_relay.config import Settings
from cio_relay.lake.base import Lake
from cio_relay.observability.metrics import Metrics
from cio_relay.relay import Relay
from cio_relay.server.dashboard.sources import FunnelRow, WebhookRow
from cio_relay.sync import UserRepository, preference_handler
from cio_relay.webhooks.events import METRICS
from cio_relay.webhooks.inbox import Inbox
from cio_relay.webhooks.intake import Outcome

__all__ = [
    "LakeFunnel",
    "RecentWebhookRing",
    "WebhookObserver",
    "WebhookStack",
    "unsubscribe_person",
]

log = logging.getLogger("cio_relay.server")

_KNOWN_NAMES = frozenset(f"{kind}_{metric}" for kind, names in METRICS.items() for metric in names)
_FUNNEL_STEPS = ("sent", "delivered", "opened", "clicked", "bounced")


def unsubscribe_person(relay: Relay, person: Mapping[str, str]) -> str:
    """The ``unsubscribe`` policy's action: the person's documented global ``unsubscribed``
    attribute, set by an identify through the relay's outbox."""
    return relay.identify(person, unsubscribed=True)


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


class WebhookObserver:
    """The receiver's ``on_outcome``: counts each answer and remembers the newest accepted ones."""

    def __init__(self, metrics: Metrics, recent: RecentWebhookRing) -> None:
        self.metrics = metrics
        self.recent = recent

    def __call__(self, outcome: Outcome) -> None:
        event, reply = outcome.event, outcome.reply
        metric = _label(event.name if event is not None else None)
        self.metrics.on_webhook(metric, reply.result)
        if reply.status != 200:
            return
        self.recent.add(
            WebhookRow(
                received_at=time.time(),
                event_id=event.event_id if event is not None else "",
                metric=metric,
                recipient=(event.recipient or event.email or "") if event is not None else "",
                state=reply.result,
            )
        )


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
        cls,
        settings: Settings,
        relay: Relay,
        metrics: Metrics,
        *,
        users: UserRepository | None = None,
    ) -> WebhookStack | None:
        """None (and a warning) without signing keys: unverifiable webhooks are not accepted.

        ``users``: subscription webhooks (every channel) update its people's local preferences
        (``cio_relay.sync.preference_handler``, two-way preferences); None records nothing of
        them locally (a Redis outbox has no user store: server/users.py says so at start)."""
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
        # Bounces and spam complaints follow CIO_RELAY_BOUNCE_POLICY / CIO_RELAY_SPAM_POLICY
        # (record by default): unsubscribe and suppress go through the relay's outbox.
        install_builtin_handlers(
            router,
            bounce_policy=settings.bounce_policy,
            spam_policy=settings.spam_policy,
            suppress=relay.suppress,
            unsubscribe=functools.partial(unsubscribe_person, relay),
            record_unsubscribes=False,
            on_subscription_change=None if users is None else preference_handler(users),
        )
        pipeline = WebhookPipeline(inbox, router, lake)
        recent = RecentWebhookRing(inbox=inbox)
        receiver = WebhookReceiver(
            inbox,
            settings.webhook_signing_keys,
            tolerance=settings.webhook_tolerance,
            max_body=settings.webhook_max_body,
            on_stored=pipeline.notify,
            on_outcome=WebhookObserver(metrics, recent),
        )
        return cls(
            app=receiver,
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
