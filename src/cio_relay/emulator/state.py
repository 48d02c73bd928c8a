"""The emulator's in-memory world: people, events, deliveries, broadcast triggers, objects and
relationships (``relations.py``), counters.

Every mutation happens on the server's event loop thread; ``EmulatorServer.state`` may be read
from a test thread for inspection (reads of finished work are safe under the GIL).

Events are stored compactly (a tuple each, properties kept as their JSON bytes) in a bounded
deque, because a benchmark may send millions of them; the counters stay exact past the bound.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import orjson

from .relations import PERSON, Relations

__all__ = ["EmulatorState", "EventRow", "Person", "Stats", "StoredEvent", "classify_identifier"]


def classify_identifier(identifier: str) -> tuple[str, str]:
    """How Customer.io reads a path identifier: ``cio_<cio_id>``, an email (has ``@``), or an id."""
    if identifier.startswith("cio_"):
        return "cio_id", identifier[4:]
    if "@" in identifier:
        return "email", identifier
    return "id", identifier


class StoredEvent(NamedTuple):
    seq: int
    cio_id: str | None
    anonymous_id: str | None
    name: str
    type: str
    event_id: str | None
    timestamp: int | float | None
    data: bytes
    received_at: float


# How an event is kept: the fields of a ``StoredEvent`` in a plain tuple. The collector stops
# tracking a plain tuple of strings, numbers and bytes at its first collection, but never a
# NamedTuple's (it only untracks exact tuples): a million stored events were otherwise
# re-scanned by every collection until the next freeze (docs/benchmarks.md, the emulator).
EventRow = tuple[
    int, str | None, str | None, str, str, str | None, int | float | None, bytes, float
]
_as_stored_event = partial(tuple.__new__, StoredEvent)


class Person:
    __slots__ = (
        "attributes",
        "cio_id",
        "created_at",
        "devices",
        "email",
        "id",
        "segments",
        "suppressed",
        "updated_at",
    )

    def __init__(self, cio_id: str, now: float) -> None:
        self.cio_id = cio_id
        self.id: str | None = None
        self.email: str | None = None
        self.attributes: dict[str, Any] = {}
        self.suppressed = False
        self.devices: dict[str, dict[str, Any]] = {}
        self.segments: set[str] = set()
        self.created_at = now
        self.updated_at = now

    def to_json(self) -> dict[str, Any]:
        return {
            "cio_id": self.cio_id,
            "id": self.id,
            "email": self.email,
            "attributes": self.attributes,
            "suppressed": self.suppressed,
            "devices": list(self.devices.values()),
            "segments": sorted(self.segments),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class Stats:
    """Counters behind ``GET /_emulator/stats``."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    events_accepted: int = 0
    duplicate_event_ids: int = 0
    rate_limited: int = 0
    injected_errors: int = 0
    dropped_connections: int = 0
    delayed_requests: int = 0
    batch_items_accepted: int = 0
    batch_items_refused: int = 0
    attribute_update_failures: int = 0
    ignored_unknown_cio_ids: int = 0

    def count_request(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def requests_json(self) -> dict[str, dict[str, int]]:
        by_endpoint: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.requests.items()):
            by_endpoint.setdefault(endpoint, {})[str(status)] = count
        return by_endpoint


#: How many answered requests ``GET /_emulator/requests`` remembers.
REQUEST_LOG_SIZE = 100_000


class EmulatorState:
    """People by ``cio_id`` with id/email indexes, and everything the account has received."""

    def __init__(self, max_stored_events: int = 1_000_000, dedupe_window: int = 2_000_000) -> None:
        self.max_stored_events = max_stored_events
        self.dedupe_window = dedupe_window
        self.reset()

    def reset(self) -> None:
        self.people: dict[str, Person] = {}
        self.by_id: dict[str, Person] = {}
        self.by_email: dict[str, Person] = {}  # lower-cased: emails are case-insensitive
        self.merged_into: dict[str, str] = {}  # a merged-away cio_id -> the primary's
        # Oldest first; ``stored_events()`` reads them as ``StoredEvent``.
        self.events: deque[EventRow] = deque(maxlen=self.max_stored_events)
        # The last ``dedupe_window`` event ids: a set to ask, a queue to evict the oldest. (An
        # insertion-ordered dict evicting ``next(iter(...))`` scans the deleted slots at its
        # front, so each eviction was slower than the last once the window was full.)
        self.seen_event_ids: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.deliveries: list[dict[str, Any]] = []
        self.triggers: dict[int, dict[str, Any]] = {}
        self.segments: dict[str, set[str]] = {}
        self.relations = Relations()  # custom objects and their relationships
        self.metrics: list[dict[str, Any]] = []
        self.forms: list[dict[str, Any]] = []  # form submissions, as received
        self.attribute_update_failures: deque[dict[str, Any]] = deque(maxlen=1000)
        self.stats = Stats()
        # GET /_emulator/requests: (arrival on the monotonic clock, method, path, status) of the
        # latest answered API requests, so tests can check request rates across processes.
        self.request_log: deque[tuple[float, str, str, int]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._seq = itertools.count(1)
        self._trigger_ids = itertools.count(1)
        self._cio_ids = itertools.count(0xE000000001)

    # --- people ---------------------------------------------------------------------------

    def find(self, id_type: str, value: str) -> Person | None:
        if id_type == "id":
            return self.by_id.get(value)
        if id_type == "email":
            return self.by_email.get(value.lower())
        if id_type == "cio_id":
            return self.people.get(self.merged_into.get(value, value))
        # phone: not an index of ours; look through attributes
        return next((p for p in self.people.values() if p.attributes.get("phone") == value), None)

    def find_by_path(self, identifier: str) -> Person | None:
        """A person by path identifier; an ``@`` value is tried as an email, then as an id."""
        id_type, value = classify_identifier(identifier)
        person = self.find(id_type, value)
        if person is None and id_type == "email":
            person = self.find("id", value)
        return person

    def create(self, id_type: str, value: str) -> Person:
        now = time.time()
        # Customer.io's cio_ids are short hex strings; a counter is unique and cheap.
        person = Person(format(next(self._cio_ids), "010x"), now)
        self.people[person.cio_id] = person
        if id_type == "id":
            self.set_id(person, value)
        elif id_type == "email":
            self.set_email(person, value)
        elif id_type == "phone":
            person.attributes["phone"] = value
        return person

    def set_id(self, person: Person, value: str) -> bool:
        """Give ``person`` the id ``value``; False when another person holds it."""
        holder = self.by_id.get(value)
        if holder is not None and holder is not person:
            return False
        if person.id is not None:
            self.by_id.pop(person.id, None)
        person.id = value
        self.by_id[value] = person
        return True

    def set_email(self, person: Person, value: str) -> bool:
        key = value.lower()
        holder = self.by_email.get(key)
        if holder is not None and holder is not person:
            return False
        if person.email is not None:
            self.by_email.pop(person.email.lower(), None)
        person.email = value
        person.attributes["email"] = value
        self.by_email[key] = person
        return True

    def remove(self, person: Person) -> None:
        self.people.pop(person.cio_id, None)
        if person.id is not None and self.by_id.get(person.id) is person:
            del self.by_id[person.id]
        if person.email is not None and self.by_email.get(person.email.lower()) is person:
            del self.by_email[person.email.lower()]
        for members in self.segments.values():
            members.discard(person.cio_id)
        self.relations.forget_member((PERSON, person.cio_id))

    def merge(self, primary: Person, secondary: Person) -> None:
        """Fold ``secondary`` into ``primary`` (whose values win); ``secondary`` is deleted."""
        for name, value in secondary.attributes.items():
            primary.attributes.setdefault(name, value)
        for token, device in secondary.devices.items():
            primary.devices.setdefault(token, device)
        self.relations.move_member((PERSON, secondary.cio_id), (PERSON, primary.cio_id))
        for segment_id in secondary.segments:  # manual segments carry over (track-api.json)
            primary.segments.add(segment_id)
            self.segments.setdefault(segment_id, set()).add(primary.cio_id)
        self.remove(secondary)
        self.merged_into[secondary.cio_id] = primary.cio_id
        for old, new in self.merged_into.items():
            if new == secondary.cio_id:
                self.merged_into[old] = primary.cio_id
        if primary.email is None and "email" in primary.attributes:
            self.set_email(primary, str(primary.attributes["email"]))
        primary.updated_at = time.time()

    def record_update_failure(self, identifier: str, reason: str) -> None:
        """Customer.io answers 200 and logs an "Attribute Update Failure" (customerio-api.md §2)."""
        self.stats.attribute_update_failures += 1
        self.attribute_update_failures.append(
            {"identifier": identifier, "reason": reason, "at": time.time()}
        )

    # --- events ---------------------------------------------------------------------------

    def add_event(
        self,
        cio_id: str | None,
        anonymous_id: str | None,
        name: str,
        event_type: str,
        event_id: str | None,
        timestamp: int | float | None,
        data: bytes,
        received_at: float | None = None,
    ) -> bool:
        """Store one event; False (and counted) when its ``id`` was seen before.
        ``received_at`` is the request's arrival (now when not given): a batch reads the clock
        once for all its events."""
        if event_id is not None:
            seen = self.seen_event_ids
            if event_id in seen:
                self.stats.duplicate_event_ids += 1
                return False
            seen.add(event_id)
            order = self._seen_order
            order.append(event_id)
            if len(order) > self.dedupe_window:
                seen.discard(order.popleft())
        self.events.append(
            (
                next(self._seq),
                cio_id,
                anonymous_id,
                name,
                event_type,
                event_id,
                timestamp,
                data,
                time.time() if received_at is None else received_at,
            )
        )
        self.stats.events_accepted += 1
        return True

    def stored_events(self) -> Iterator[StoredEvent]:
        """Every stored event, oldest first."""
        return map(_as_stored_event, self.events)

    def events_of(self, person: Person) -> Iterator[StoredEvent]:
        """The person's events, including those of people merged into it and anonymous events
        whose ``anonymous_id`` the person now carries."""
        cio_ids = {person.cio_id} | {
            old for old, new in self.merged_into.items() if new == person.cio_id
        }
        anonymous_id = person.attributes.get("anonymous_id")
        for event in self.stored_events():
            if event.cio_id in cio_ids or (
                anonymous_id is not None
                and event.cio_id is None
                and event.anonymous_id == anonymous_id
            ):
                yield event

    def event_json(self, event: StoredEvent) -> dict[str, Any]:
        cio_id = None if event.cio_id is None else self.merged_into.get(event.cio_id, event.cio_id)
        person = None if cio_id is None else self.people.get(cio_id)
        return {
            "seq": event.seq,
            "cio_id": cio_id,
            "customer_id": None if person is None else person.id,
            "anonymous_id": event.anonymous_id,
            "name": event.name,
            "type": event.type,
            "id": event.event_id,
            "timestamp": event.timestamp,
            "data": orjson.loads(event.data),
            "received_at": event.received_at,
        }

    # --- App API --------------------------------------------------------------------------

    def next_trigger_id(self) -> int:
        return next(self._trigger_ids)
