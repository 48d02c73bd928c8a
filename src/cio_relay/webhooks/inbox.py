"""The ``Inbox`` protocol: the durable store of raw webhook events between the 200 and the work.

The receiver writes every authentic event here *before* answering 200 (contract 8); handlers
and the lake feed read from here afterwards, so nothing the receiver acknowledged is lost by a
crash, a failing handler or a restart. What every backend keeps:

- ``store`` returns only once the raw event is durable, and keeps an ``event_id`` once however
  often Customer.io delivers it (it returns False for a duplicate). Event ids are remembered for
  ``retention`` (default 8 days: Customer.io retries a failed webhook for 7).
- Each event has a handler state: ``pending`` (due at ``next_attempt_at``), ``done``, or
  ``parked`` (failed ``max_attempts`` times, or a handler asked to park it) with its last error,
  for an operator to ``retry_parked`` once the cause is fixed.
- Events are numbered by ``seq`` in arrival order, and seqs are never reused, so a consumer such
  as the lake feed can keep a durable cursor (``cursor``/``set_cursor``) and resume after it.
- ``store(..., truncated=True)`` keeps an event whose body was too large to keep whole: its
  fields, with the mark (``StoredEvent.truncated``).
- ``quarantine`` keeps authentic but unparseable payloads (raw bytes and the parse error), once
  per distinct bytes: having no event id to de-duplicate by, a payload replayed within the
  signature's tolerance (or retried by Customer.io) would otherwise be kept again each time.
- ``prune`` forgets events that are done, older than the retention, and behind every cursor;
  it always keeps the newest event, which anchors the seq numbering.

``MemoryInbox`` below is the reference semantics, for tests; ``SQLiteInbox`` is the default.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cio_relay.clock import now_or
from cio_relay.errors import InboxUnavailableError
from cio_relay.webhooks.events import Event

__all__ = [
    "DEFAULT_RETENTION",
    "HandlerState",
    "Inbox",
    "InboxCounts",
    "MemoryInbox",
    "QuarantinedPayload",
    "StoredEvent",
]

#: Seconds an event id is remembered for de-duplication: Customer.io's 7 days of retries + 1.
DEFAULT_RETENTION = 8 * 24 * 3600.0
_MAX_ERROR_LENGTH = 2000


class HandlerState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    PARKED = "parked"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A raw event as the inbox holds it, with its handler state."""

    seq: int
    event_id: str
    name: str  # {object_type}_{metric}
    raw: bytes
    received_at: float
    state: HandlerState
    attempts: int
    next_attempt_at: float
    last_error: str | None = None
    #: The body was larger than the receiver keeps: ``raw`` holds the event's fields (JSON)
    #: read from its beginning, not the bytes Customer.io sent (``webhooks/truncated.py``).
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class QuarantinedPayload:
    """An authentic payload that did not parse as an event: kept for an operator, acknowledged."""

    id: int
    raw: bytes
    error: str
    received_at: float


@dataclass(frozen=True, slots=True)
class InboxCounts:
    pending: int
    done: int
    parked: int
    quarantined: int


def quarantine_digest(raw: bytes) -> bytes:
    """What makes two quarantined payloads the same: their bytes."""
    return hashlib.sha256(raw).digest()


def clip_error(error: str) -> str:
    return error if len(error) <= _MAX_ERROR_LENGTH else error[: _MAX_ERROR_LENGTH - 3] + "..."


@runtime_checkable
class Inbox(Protocol):
    """Durable store of raw webhook events. Thread-safe; ``now`` arguments are for tests."""

    def store(
        self,
        event: Event,
        raw: bytes,
        *,
        received_at: float | None = None,
        truncated: bool = False,
    ) -> bool:
        """Persist ``raw`` durably; True if new, False if ``event.event_id`` was already stored."""

    async def store_async(
        self,
        event: Event,
        raw: bytes,
        *,
        received_at: float | None = None,
        timeout: float | None = None,
        truncated: bool = False,
    ) -> bool:
        """``store`` for an event loop: waits for the write without blocking the loop.

        Raises ``InboxUnavailableError`` if the write is not durable within ``timeout`` s (it
        may still land later; a redelivery is then a harmless duplicate).
        """

    def quarantine(self, raw: bytes, error: str, *, received_at: float | None = None) -> int:
        """Keep an unparseable payload with its error; returns its quarantine id (the first
        one's, when the same bytes were quarantined before: they are kept once)."""

    async def quarantine_async(
        self,
        raw: bytes,
        error: str,
        *,
        received_at: float | None = None,
        timeout: float | None = None,
    ) -> int:
        """``quarantine`` for an event loop, with the same ``timeout`` as ``store_async``."""

    def due(self, limit: int, *, now: float | None = None) -> list[StoredEvent]:
        """Pending events whose ``next_attempt_at`` has come, oldest (lowest seq) first."""

    def next_due_at(self) -> float | None:
        """When the earliest pending event becomes due, or None if nothing is pending."""

    def mark_done(self, event_ids: Sequence[str]) -> None:
        """Every handler succeeded for these events."""

    def retry_later(self, event_id: str, *, error: str, retry_at: float) -> None:
        """Count a failed attempt, keep ``error``, and make the event due again at ``retry_at``."""

    def park(self, event_id: str, *, error: str) -> None:
        """Count a failed attempt and stop retrying until an operator calls ``retry_parked``."""

    def list_parked(self, *, limit: int = 100, offset: int = 0) -> list[StoredEvent]:
        """Parked events, oldest first."""

    def retry_parked(self, event_ids: Sequence[str] = (), *, now: float | None = None) -> int:
        """Make parked events (all of them if ``event_ids`` is empty) pending again, due now."""

    def list_quarantined(self, *, limit: int = 100, offset: int = 0) -> list[QuarantinedPayload]:
        """Quarantined payloads, oldest first."""

    def read_after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Events with a seq above ``seq`` in any state, in seq order (for cursor consumers)."""

    def cursor(self, name: str) -> int:
        """The durable position of consumer ``name`` (0 if it never saved one)."""

    def set_cursor(self, name: str, seq: int) -> None:
        """Save consumer ``name``'s position durably."""

    def prune(self, *, retention: float = DEFAULT_RETENTION, now: float | None = None) -> int:
        """Forget done events older than ``retention`` that every cursor has passed.

        The newest event is always kept: it anchors the seq numbering.
        """

    def counts(self) -> InboxCounts:
        """Events by handler state, and the quarantine size."""

    def close(self) -> None:
        """Finish pending writes and release files. Idempotent."""


class MemoryInbox:
    """The reference ``Inbox`` in process memory (tests, examples): nothing here is durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, StoredEvent] = {}  # by event_id, insertion order = seq order
        self._quarantine: list[QuarantinedPayload] = []
        self._quarantined_ids: dict[bytes, int] = {}  # digest of the raw bytes -> id
        self._cursors: dict[str, int] = {}
        self._seq = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise InboxUnavailableError("the inbox is closed")

    def store(
        self,
        event: Event,
        raw: bytes,
        *,
        received_at: float | None = None,
        truncated: bool = False,
    ) -> bool:
        at = now_or(received_at)
        with self._lock:
            self._check_open()
            if event.event_id in self._events:
                return False
            self._seq += 1
            self._events[event.event_id] = StoredEvent(
                self._seq,
                event.event_id,
                event.name,
                bytes(raw),
                at,
                HandlerState.PENDING,
                0,
                at,
                truncated=truncated,
            )
            return True

    async def store_async(
        self,
        event: Event,
        raw: bytes,
        *,
        received_at: float | None = None,
        timeout: float | None = None,
        truncated: bool = False,
    ) -> bool:
        # Instant: no timeout needed.
        return self.store(event, raw, received_at=received_at, truncated=truncated)

    def quarantine(self, raw: bytes, error: str, *, received_at: float | None = None) -> int:
        digest = quarantine_digest(raw)
        with self._lock:
            self._check_open()
            if digest in self._quarantined_ids:
                return self._quarantined_ids[digest]
            item_id = self._quarantined_ids[digest] = len(self._quarantine) + 1
            self._quarantine.append(
                QuarantinedPayload(item_id, bytes(raw), clip_error(error), now_or(received_at))
            )
            return item_id

    async def quarantine_async(
        self,
        raw: bytes,
        error: str,
        *,
        received_at: float | None = None,
        timeout: float | None = None,
    ) -> int:
        return self.quarantine(raw, error, received_at=received_at)

    def due(self, limit: int, *, now: float | None = None) -> list[StoredEvent]:
        at = now_or(now)
        with self._lock:
            found = [
                e
                for e in self._events.values()
                if e.state is HandlerState.PENDING and e.next_attempt_at <= at
            ]
        return found[:limit]

    def next_due_at(self) -> float | None:
        with self._lock:
            times = [
                e.next_attempt_at for e in self._events.values() if e.state is HandlerState.PENDING
            ]
        return min(times, default=None)

    def _change(self, event_id: str, change: Callable[[StoredEvent], StoredEvent]) -> None:
        with self._lock:
            self._check_open()
            current = self._events.get(event_id)
            if current is not None:
                self._events[event_id] = change(current)

    def mark_done(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            self._change(event_id, lambda e: replace(e, state=HandlerState.DONE))

    def retry_later(self, event_id: str, *, error: str, retry_at: float) -> None:
        self._change(
            event_id,
            lambda e: replace(
                e, attempts=e.attempts + 1, last_error=clip_error(error), next_attempt_at=retry_at
            ),
        )

    def park(self, event_id: str, *, error: str) -> None:
        self._change(
            event_id,
            lambda e: replace(
                e, state=HandlerState.PARKED, attempts=e.attempts + 1, last_error=clip_error(error)
            ),
        )

    def list_parked(self, *, limit: int = 100, offset: int = 0) -> list[StoredEvent]:
        with self._lock:
            parked = [e for e in self._events.values() if e.state is HandlerState.PARKED]
        return parked[offset : offset + limit]

    def retry_parked(self, event_ids: Sequence[str] = (), *, now: float | None = None) -> int:
        at = now_or(now)
        wanted = set(event_ids)
        with self._lock:
            self._check_open()
            chosen = [
                e
                for e in self._events.values()
                if e.state is HandlerState.PARKED and (not wanted or e.event_id in wanted)
            ]
            for e in chosen:
                self._events[e.event_id] = replace(
                    e, state=HandlerState.PENDING, attempts=0, next_attempt_at=at
                )
        return len(chosen)

    def list_quarantined(self, *, limit: int = 100, offset: int = 0) -> list[QuarantinedPayload]:
        with self._lock:
            return self._quarantine[offset : offset + limit]

    def read_after(self, seq: int, limit: int) -> list[StoredEvent]:
        with self._lock:
            found = [e for e in self._events.values() if e.seq > seq]
        return found[:limit]

    def cursor(self, name: str) -> int:
        with self._lock:
            return self._cursors.get(name, 0)

    def set_cursor(self, name: str, seq: int) -> None:
        with self._lock:
            self._check_open()
            self._cursors[name] = seq

    def prune(self, *, retention: float = DEFAULT_RETENTION, now: float | None = None) -> int:
        cutoff = now_or(now) - retention
        with self._lock:
            behind = min(self._cursors.values(), default=None)
            doomed = [
                e.event_id
                for e in self._events.values()
                if e.state is HandlerState.DONE
                and e.received_at < cutoff
                and (behind is None or e.seq <= behind)
                and e.seq < self._seq  # the newest event anchors the numbering
            ]
            for event_id in doomed:
                del self._events[event_id]
        return len(doomed)

    def counts(self) -> InboxCounts:
        with self._lock:
            states = [e.state for e in self._events.values()]
            return InboxCounts(
                pending=states.count(HandlerState.PENDING),
                done=states.count(HandlerState.DONE),
                parked=states.count(HandlerState.PARKED),
                quarantined=len(self._quarantine),
            )

    def close(self) -> None:
        self._closed = True
