"""Observability hooks around delivery: on_enqueued, on_delivered, on_retry, on_dead, and the
rest below (requests, rate-limiter waits, outbox failures, an API family paused for a wrong
region and resumed).

Metrics, logs and tracing subscribe here instead of living in the dispatcher loop. A hook that
raises is logged and ignored: observing must never break delivery. Hooks run on the thread where
the event happens; ``on_enqueued`` under ``AsyncRelay`` or the HTTP service often on the event
loop's own thread: like any observer, a hook must be quick and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cio_relay.operations import Operation

__all__ = ["Hooks"]

log = logging.getLogger("cio_relay.hooks")

EnqueuedHook = Callable[[Operation], Any]
DeliveredHook = Callable[[Operation, float], Any]  # latency: seconds from enqueue to accepted
RetryHook = Callable[[Operation, str, float], Any]  # error, delay before the next attempt
DeadHook = Callable[[Operation, str, str], Any]  # reason, detail
RequestHook = Callable[[str, str, int | None, float], Any]  # api, endpoint, status, seconds
WaitHook = Callable[[str, float], Any]  # api family, seconds waited on the rate limiter
StorageErrorHook = Callable[[str, BaseException], Any]  # outbox call (lease, ack ...), error
RegionMismatchHook = Callable[[str, str], Any]  # API family (track, app) paused, why
RegionResolvedHook = Callable[[str], Any]  # API family resumed


@dataclass
class Hooks:
    enqueued: list[EnqueuedHook] = field(default_factory=list)
    delivered: list[DeliveredHook] = field(default_factory=list)
    retry: list[RetryHook] = field(default_factory=list)
    dead: list[DeadHook] = field(default_factory=list)
    request: list[RequestHook] = field(default_factory=list)
    rate_wait: list[WaitHook] = field(default_factory=list)
    storage_error: list[StorageErrorHook] = field(default_factory=list)
    region_mismatch: list[RegionMismatchHook] = field(default_factory=list)
    region_resolved: list[RegionResolvedHook] = field(default_factory=list)

    # Decorator-style registration: ``@relay.hooks.on_dead``.
    def on_enqueued(self, fn: EnqueuedHook) -> EnqueuedHook:
        self.enqueued.append(fn)
        return fn

    def on_delivered(self, fn: DeliveredHook) -> DeliveredHook:
        self.delivered.append(fn)
        return fn

    def on_retry(self, fn: RetryHook) -> RetryHook:
        self.retry.append(fn)
        return fn

    def on_dead(self, fn: DeadHook) -> DeadHook:
        self.dead.append(fn)
        return fn

    def on_request(self, fn: RequestHook) -> RequestHook:
        self.request.append(fn)
        return fn

    def on_rate_wait(self, fn: WaitHook) -> WaitHook:
        self.rate_wait.append(fn)
        return fn

    def on_storage_error(self, fn: StorageErrorHook) -> StorageErrorHook:
        self.storage_error.append(fn)
        return fn

    def on_region_mismatch(self, fn: RegionMismatchHook) -> RegionMismatchHook:
        self.region_mismatch.append(fn)
        return fn

    def on_region_resolved(self, fn: RegionResolvedHook) -> RegionResolvedHook:
        self.region_resolved.append(fn)
        return fn

    @staticmethod
    def fire(subscribers: list[Callable[..., Any]], *args: Any) -> None:
        for subscriber in subscribers:
            try:
                subscriber(*args)
            except Exception:
                log.exception("hook %r failed", getattr(subscriber, "__name__", subscriber))
