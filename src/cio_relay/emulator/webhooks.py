"""Reporting webhooks after a transactional send, signed as Customer.io signs them.

Each send becomes a short story of metrics (customerio-api.md §6), one event per POST:
email sent, delivered, opened, clicked; push sent, delivered, opened, clicked; SMS sent,
delivered, clicked. An email to a ``bounce.test`` address is sent then bounced (with a
``failure_message``); to ``spam.test`` it is sent, delivered, then spammed.

Webhooks go out in the background, never on the API answer's path: one queue per worker, a
delivery's whole story on one queue, so its events arrive in order. A failed POST is retried
with exponential backoff a few times, then recorded as failed and the next one goes. ``flush``
returns when every queued webhook has been sent or has failed for good (tests wait on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import deque
from typing import Any

import httpx
import orjson
from ulid import ULID

from cio_relay.webhooks.signature import signature_headers

from .config import EmulatorConfig

__all__ = ["BOUNCE_DOMAIN", "SPAM_DOMAIN", "WebhookSender", "webhook_events"]

BOUNCE_DOMAIN = "bounce.test"
SPAM_DOMAIN = "spam.test"
BOUNCE_MESSAGE = "550 5.1.1 The email account that you tried to reach does not exist (emulated)"
CLICKED_HREF = "https://example.com/emulated-link"
WORKERS = 4
LOG_SIZE = 10_000

_STORIES = {
    "email": ("sent", "delivered", "opened", "clicked"),
    "push": ("sent", "delivered", "opened", "clicked"),
    "sms": ("sent", "delivered", "clicked"),
}


def _first_address(to: Any) -> str:
    if isinstance(to, list):
        to = to[0] if to else ""
    return str(to or "").split(",")[0].strip()


def _story(channel: str, address: str) -> tuple[str, ...]:
    if channel == "email":
        domain = address.rsplit("@", 1)[-1].rstrip(">").lower()
        if domain == BOUNCE_DOMAIN:
            return ("sent", "bounced")
        if domain == SPAM_DOMAIN:
            return ("sent", "delivered", "spammed")
    return _STORIES.get(channel, ())


def webhook_events(delivery: dict[str, Any], now: int | None = None) -> list[dict[str, Any]]:
    """The webhook payloads a delivery produces, in the order they are sent."""
    channel = delivery["channel"]
    address = _first_address(delivery.get("to"))
    started = int(time.time()) if now is None else now
    base: dict[str, Any] = {
        "customer_id": delivery.get("customer_id"),
        "identifiers": delivery["identifiers"],
        "delivery_id": delivery["delivery_id"],
        # Without a template, metrics are reported under id 1 (customerio-api.md §5).
        "transactional_message_id": delivery.get("transactional_message_id") or 1,
    }
    if channel == "email":
        base["email_address"] = address
        base["recipient"] = address
        base["subject"] = delivery.get("subject") or ""
    elif channel == "sms":
        base["recipient"] = address
    elif channel == "push":
        base["recipients"] = [
            {"device_id": d["id"], "device_platform": d["platform"]}
            for d in delivery.get("devices", [])
        ]
    events = []
    for offset, metric in enumerate(_story(channel, address)):
        data = dict(base)
        if metric == "clicked":
            data["href"] = CLICKED_HREF
            data["link_id"] = 1
        elif metric == "bounced":
            data["failure_message"] = BOUNCE_MESSAGE
        events.append(
            {
                "event_id": str(ULID()),
                "object_type": channel,
                "metric": metric,
                # One second apart so the story reads in order by timestamp too.
                "timestamp": started + offset,
                "data": data,
            }
        )
    return events


class WebhookSender:
    """Posts webhook events to ``config.webhook_url``; inert when no URL is configured."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.url = config.webhook_url
        self._key = config.webhook_signing_key or ""
        self._attempts = max(1, config.webhook_attempts)
        self._backoff = config.webhook_backoff
        self._timeout = config.webhook_timeout
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.queued = self.sent = self.failed = 0
        self._pending = 0
        self._queues: list[asyncio.Queue[list[dict[str, Any]]]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._idle: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"WebhookSender(url={self.url!r}, pending={self._pending})"

    def counts(self) -> dict[str, Any]:
        return {
            "enabled": bool(self.url),
            "queued": self.queued,
            "sent": self.sent,
            "failed": self.failed,
            "pending": self._pending,
        }

    def reset_log(self) -> None:
        """Forget what was sent (``POST /_emulator/reset``); webhooks still queued still go."""
        self.log.clear()
        self.queued, self.sent, self.failed = self._pending, 0, 0

    def report(self, delivery: dict[str, Any]) -> None:
        """Queue the webhooks of ``delivery``; returns at once (called on the event loop)."""
        if not self.url:
            return
        events = webhook_events(delivery)
        if not events:
            return
        self._start()
        assert self._idle is not None
        worker = zlib.crc32(delivery["delivery_id"].encode()) % WORKERS
        self._queues[worker].put_nowait(events)
        self._pending += len(events)
        self.queued += len(events)
        self._idle.clear()

    def _start(self) -> None:
        if self._workers:
            return
        self._idle = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self._timeout)
        self._queues = [asyncio.Queue() for _ in range(WORKERS)]
        self._workers = [
            asyncio.get_running_loop().create_task(self._work(queue), name=f"webhooks-{n}")
            for n, queue in enumerate(self._queues)
        ]

    async def _work(self, queue: asyncio.Queue[list[dict[str, Any]]]) -> None:
        while True:
            events = await queue.get()
            for event in events:
                await self._deliver(event)
                self._pending -= 1
            if self._pending == 0 and self._idle is not None:
                self._idle.set()

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self._client is not None and self.url is not None
        body = orjson.dumps(event)
        error = ""
        for attempt in range(1, self._attempts + 1):
            headers = {"Content-Type": "application/json", **signature_headers(self._key, body)}
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    self.sent += 1
                    self._record(event, "sent", attempt, response.status_code, "")
                    return
                error = f"HTTP {response.status_code}"
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        self.failed += 1
        self._record(event, "failed", self._attempts, None, error)

    def _record(
        self, event: dict[str, Any], outcome: str, attempts: int, status: int | None, error: str
    ) -> None:
        self.log.append(
            {
                "event_id": event["event_id"],
                "object_type": event["object_type"],
                "metric": event["metric"],
                "delivery_id": event["data"]["delivery_id"],
                "outcome": outcome,
                "attempts": attempts,
                "http_status": status,
                "error": error,
            }
        )

    async def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending; False if ``timeout`` seconds pass first."""
        if self._pending == 0 or self._idle is None:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None
