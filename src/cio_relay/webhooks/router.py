"""The handler registry: ``@router.on("email_bounced")``, ``"email.*"``, ``"*.bounced"``, ``"*"``.

Handlers never run in the request path. The receiver persists the raw event and answers; later a
worker calls ``router.process_pending(inbox)`` (or ``drain``), which runs the handlers of every
due event from the inbox, at least once:

- all handlers matching an event run, in registration order; when every one succeeds the event
  is ``done``;
- when any raises, the event is retried later with exponential backoff (``HandlerRetry``); it is
  never lost. A retry runs *all* its handlers again, so handlers must be idempotent (suppressing
  a person twice, or recording the same unsubscribe twice, is harmless);
- after ``max_attempts`` failures, or at once when a handler raises ``ParkEvent``, the event is
  parked with its error for an operator: ``inbox.list_parked()`` / ``inbox.retry_parked()``.

Patterns: an exact event name (``email_bounced``, see ``EventName``; unknown names are allowed,
so a handler can be ready before Customer.io ships a metric), ``{object_type}.*``, ``*.{metric}``
(that metric from every channel: ``*.unsubscribed`` is every unsubscribe, whichever channel's
message triggered it) or ``*``.
Handlers may be plain functions or coroutine functions; a coroutine is run to completion with
``asyncio.run`` in the worker's thread, so ``drain()`` must not be called from inside a running
event loop when async handlers are registered (use ``await asyncio.to_thread(router.drain,
inbox)`` there).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cio_relay.errors import EventParseError
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import Inbox, StoredEvent

__all__ = ["DrainReport", "Handler", "HandlerRetry", "ParkEvent", "Router"]

log = logging.getLogger("cio_relay.webhooks")

Handler = Callable[[Event], None] | Callable[[Event], Awaitable[None]]
H = TypeVar("H", bound=Callable[..., Any])

_PATTERN = re.compile(r"^(\*|[a-z0-9_]+\.\*|\*\.[a-z0-9_]+|[a-z0-9_]+)$")
_MAX_DRAIN_ROUNDS = 1_000_000  # a backstop; each round handles up to ``limit`` distinct events


class ParkEvent(Exception):
    """Raised by a handler when retrying cannot help: the event is parked at once."""


@dataclass(frozen=True, slots=True)
class HandlerRetry:
    """Backoff for failing handlers: ``base * 2**(attempt-1)`` capped, with +-25 % jitter."""

    base: float = 2.0
    cap: float = 3600.0
    max_attempts: int = 10
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"retry: need 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.max_attempts < 1:
            raise ValueError(f"retry: max_attempts must be >= 1, got {self.max_attempts}")

    def delay(self, attempts: int) -> float:
        """Seconds before the next try, ``attempts`` failures having been made (>= 1)."""
        window = min(self.cap, self.base * float(2 ** min(max(attempts - 1, 0), 62)))
        return window * self.rng.uniform(0.75, 1.25) if self.jitter else window


@dataclass(slots=True)
class DrainReport:
    """What one ``process_pending``/``drain`` call did."""

    done: int = 0
    retried: int = 0
    parked: int = 0

    @property
    def handled(self) -> int:
        return self.done + self.retried + self.parked

    def add(self, other: DrainReport) -> None:
        self.done += other.done
        self.retried += other.retried
        self.parked += other.parked


def _describe(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


class Router:
    """Which handlers run for which events; runs them from an ``Inbox``."""

    def __init__(
        self,
        *,
        retry: HandlerRetry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retry = retry or HandlerRetry()
        self._clock = clock
        self._exact: dict[str, list[Handler]] = {}
        self._by_type: dict[str, list[Handler]] = {}
        self._by_metric: dict[str, list[Handler]] = {}
        self._everything: list[Handler] = []
        self._order: dict[int, int] = {}
        self._cache: dict[tuple[str, str], tuple[Handler, ...]] = {}
        self._drain_lock = threading.Lock()

    def on(self, pattern: str) -> Callable[[H], H]:
        """Register the decorated function for events matching ``pattern``."""

        def register(handler: H) -> H:
            self.add(pattern, handler)
            return handler

        return register

    def add(self, pattern: str, handler: Handler) -> None:
        if not isinstance(pattern, str) or not _PATTERN.match(pattern):
            raise ValueError(
                f"pattern: {pattern!r} is not an event name (email_bounced), an object type "
                "wildcard (email.*), a metric wildcard (*.unsubscribed) or '*'"
            )
        if pattern == "*":
            self._everything.append(handler)
        elif pattern.endswith(".*"):
            self._by_type.setdefault(pattern[:-2], []).append(handler)
        elif pattern.startswith("*."):
            self._by_metric.setdefault(pattern[2:], []).append(handler)
        else:
            self._exact.setdefault(pattern, []).append(handler)
        self._order.setdefault(id(handler), len(self._order))
        self._cache.clear()

    def handlers_for(self, event: Event) -> tuple[Handler, ...]:
        """The handlers ``event`` triggers, each once, in registration order."""
        key = (event.object_type, event.name)
        found = self._cache.get(key)
        if found is None:
            chosen = {
                id(h): h
                for h in (
                    *self._exact.get(event.name, ()),
                    *self._by_type.get(event.object_type, ()),
                    *self._by_metric.get(event.metric, ()),
                    *self._everything,
                )
            }
            found = tuple(chosen[i] for i in sorted(chosen, key=self._order.__getitem__))
            self._cache[key] = found
        return found

    # --- running handlers -------------------------------------------------------------------

    def _run_handlers(self, event: Event) -> None:
        for handler in self.handlers_for(event):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    asyncio.run(_awaited(result))
            except ParkEvent:
                raise
            except Exception as exc:
                raise _HandlerFailed(f"{_describe(handler)}: {type(exc).__name__}: {exc}") from exc

    def _handle(self, inbox: Inbox, stored: StoredEvent, now: float) -> str:
        """Run one event's handlers; return ``done``, ``retried`` or ``parked``."""
        try:
            self._run_handlers(parse_event(stored.raw))
        except EventParseError as exc:
            # It parsed at intake; failing now means the model changed under stored data.
            inbox.park(stored.event_id, error=f"no longer parses: {exc}")
            return "parked"
        except ParkEvent as exc:
            inbox.park(stored.event_id, error=f"parked by handler: {exc}")
            return "parked"
        except _HandlerFailed as exc:
            attempts = stored.attempts + 1
            if attempts >= self.retry.max_attempts:
                log.warning("webhook %s parked after %d attempts", stored.event_id, attempts)
                inbox.park(stored.event_id, error=str(exc))
                return "parked"
            retry_at = now + self.retry.delay(attempts)
            log.info("webhook %s handler failed (attempt %d): %s", stored.event_id, attempts, exc)
            inbox.retry_later(stored.event_id, error=str(exc), retry_at=retry_at)
            return "retried"
        return "done"

    def process_pending(
        self, inbox: Inbox, *, limit: int = 500, now: float | None = None
    ) -> DrainReport:
        """Run the handlers of up to ``limit`` due events once; report what happened."""
        at = self._clock() if now is None else now
        report = DrainReport()
        done: list[str] = []
        for stored in inbox.due(limit, now=at):
            outcome = self._handle(inbox, stored, at)
            if outcome == "done":
                done.append(stored.event_id)
            elif outcome == "retried":
                report.retried += 1
            else:
                report.parked += 1
        if done:
            inbox.mark_done(done)
            report.done = len(done)
        return report

    def drain(self, inbox: Inbox, *, limit: int = 500, now: float | None = None) -> DrainReport:
        """Process until no event is due at ``now`` (events retried meanwhile wait), then return.

        Deterministic for tests: pass ``now`` to step through retry times without sleeping.
        One drain at a time per router, so two threads never run one event's handlers at once.
        """
        total = DrainReport()
        with self._drain_lock:
            for _ in range(_MAX_DRAIN_ROUNDS):
                report = self.process_pending(inbox, limit=limit, now=now)
                total.add(report)
                if report.handled == 0:
                    break
        return total


class _HandlerFailed(Exception):
    """A handler raised; the message names the handler and the error (no payload)."""


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
