"""The user store: what cio-relay last sent Customer.io about each person, beside the outbox.

A ``UserStore`` keeps one ``UserState`` per person and is bound to one outbox: ``apply`` reads
a person's state, asks a *plan* for the new state and the operations that bring Customer.io to
it, and stores both at once: the new state and the outbox rows commit together, or neither
does. A crash never records a sync that was not enqueued, nor enqueues one that was not
recorded. One store per outbox family:

- ``MemoryUserStore`` beside a ``MemoryOutbox`` (tests): one lock around the plan, the
  enqueue and the state change; the enqueue checks every operation before storing any, and
  the state is set only once it returned;
- ``SqliteUserStore`` (sqlite_store.py) in the SQLite outbox's own file: one transaction.

Other outboxes (Redis) have no store: a state kept elsewhere could not commit with their rows,
so ``user_store_for`` (factory.py) refuses them with a ``ConfigError`` naming
``CIO_RELAY_OUTBOX`` rather than risk a state that says "synced" for a change that never
reached the outbox.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox

__all__ = [
    "Change",
    "MemoryUserStore",
    "Plan",
    "PreferenceStamp",
    "UserState",
    "UserStore",
    "attributes_hash",
    "canonical_json",
]


def canonical_json(value: Any) -> bytes:
    """``value`` as JSON with sorted keys: equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def attributes_hash(attributes: Mapping[str, Any]) -> str:
    """A stable hash of a person's attributes (their canonical JSON), to tell "unchanged" from
    one comparison."""
    return hashlib.blake2b(canonical_json(dict(attributes)), digest_size=16).hexdigest()


#: Where a preference was last set from: the app (``update_preferences``) or a subscription
#: webhook from Customer.io.
PreferenceSource = Literal["app", "webhook"]


@dataclass(frozen=True, slots=True)
class PreferenceStamp:
    """When a preference field was last set (Unix seconds: the app's clock for an app change,
    the event's ``timestamp`` for a webhook) and from where."""

    at: float
    source: PreferenceSource


@dataclass(frozen=True, slots=True)
class UserState:
    """What cio-relay knows of a person: the attributes of the last ``sync_user`` (and their
    hash), the subscription topics and global ``unsubscribed`` (None: never set) as last set by
    the app or a subscription webhook, with a ``PreferenceStamp`` per field in
    ``preference_times`` (keys ``unsubscribed`` and ``topic_<id>``), and when the app last
    enqueued a change (``updated_at``, Unix seconds)."""

    person_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    attributes_hash: str = ""
    topics: Mapping[str, bool] = field(default_factory=dict)
    unsubscribed: bool | None = None
    updated_at: float = 0.0
    preference_times: Mapping[str, PreferenceStamp] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """A plan's answer: the person's new state (None: forget the person, as after an erasure)
    and the operations that bring Customer.io to it, enqueued in this order."""

    state: UserState | None
    operations: tuple[Operation, ...]


#: Given a person's current state (None: unknown), the change to make, or None for none.
Plan = Callable[[UserState | None], Change | None]


class UserStore(Protocol):
    """Per-person sync state bound to one outbox (see the module docstring)."""

    outbox: Outbox

    def get(self, person_id: str) -> UserState | None:
        """The person's state, or None when the store knows nothing of them."""
        ...

    def apply(self, person_id: str, plan: Plan) -> Change | None:
        """Run ``plan`` on the person's current state; store its state and enqueue its
        operations together (all or nothing). ``plan`` may run more than once (a shared
        transaction retried alone), so it must depend on its argument only."""
        ...

    def close(self) -> None: ...


class MemoryUserStore:
    """The ``UserStore`` in process memory, beside a ``MemoryOutbox``."""

    def __init__(self, outbox: MemoryOutbox) -> None:
        self.outbox: Outbox = outbox
        self._lock = threading.Lock()
        self._states: dict[str, UserState] = {}

    def get(self, person_id: str) -> UserState | None:
        with self._lock:
            return self._states.get(person_id)

    def apply(self, person_id: str, plan: Plan) -> Change | None:
        with self._lock:
            change = plan(self._states.get(person_id))
            if change is None:
                return None
            if change.operations:  # a webhook's change enqueues nothing
                self.outbox.enqueue(change.operations)  # raises before storing anything
            if change.state is None:
                self._states.pop(person_id, None)
            else:
                self._states[person_id] = change.state
            return change

    def close(self) -> None:
        """Nothing to release: the outbox is closed by its owner."""
