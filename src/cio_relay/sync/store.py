"""The user store: what cio-relay last sent Customer.io about each person, beside the outbox.

A ``UserStore`` keeps one ``UserState`` per person and is bound to one outbox: ``apply`` reads
a person's state, asks a *plan* for the new state and the operations that bring Customer.io to
it, and stores both at once: the new state and the outbox rows commit together, or neither
does. A crash never records a sync that was not enqueued, nor enqueues one that was not
recorded. One store per outbox family:

- ``MemoryUserStore`` (memory_store.py) beside a ``MemoryOutbox`` (tests): one lock around
  the plan, the enqueue and the state change; the enqueue checks every operation before
  storing any, and the state is set only once it returned;
- ``SqliteUserStore`` (sqlite_store.py) in the SQLite outbox's own file: one transaction.

Other outboxes (Redis) have no store: a state kept elsewhere could not commit with their rows,
so ``user_store_for`` (factory.py) refuses them with a ``ConfigError`` naming
``CIO_RELAY_OUTBOX`` rather than risk a state that says "synced" for a change that never
reached the outbox.

A bulk sync (bulk.py) adds ``apply_batch`` (many people, their operations and the run's
checkpoint in one commit), ``states`` (many people at once), ``unseen`` (the removed people of a
snapshot) and the run records (runs.py).

People are keyed by ``person_key``: an ``id`` is its own key, an email or a cio_id is
``email:<value>`` / ``cio_id:<value>`` (so an id that starts with one of those prefixes is
refused: it would read back as the other kind). An email is keyed, and so sent, in lower case:
Customer.io compares emails without case, so ``Ada@Example.com`` and ``ada@example.com`` are
one person there, and must be one here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from cio_relay.errors import ValidationError
from cio_relay.operations import Operation, PersonRef
from cio_relay.outbox.base import Outbox
from cio_relay.sync.runs import RunStatus, SourceMark, SyncRun

__all__ = [
    "Change",
    "Plan",
    "PreferenceStamp",
    "UserState",
    "UserStore",
    "attributes_hash",
    "canonical_json",
    "hash_of",
    "person_key",
    "person_ref",
]

#: The kinds of identifier a person is synced by, and their key prefixes.
_KEYED_TYPES = ("email", "cio_id")
_KEYED_PREFIXES = tuple(f"{kind}:" for kind in _KEYED_TYPES)


def person_key(person: PersonRef) -> str:
    """The store's key of a person (module docstring); ``ValidationError`` for an id that
    would read back as an email or a cio_id, or a reference of another kind."""
    if isinstance(person, str):
        if person.startswith(_KEYED_PREFIXES):
            raise ValidationError(
                "identifier.id", f"an id cannot start with 'email:' or 'cio_id:' ({person!r})"
            )
        return person
    kinds = list(person.items())
    if len(kinds) != 1 or kinds[0][0] not in ("id", *_KEYED_TYPES):
        raise ValidationError("identifier", f"sync people by id, email or cio_id, not {person!r}")
    ((id_type, value),) = kinds
    if id_type == "email":  # Customer.io compares emails without case
        return f"email:{value.lower()}"
    return person_key(value) if id_type == "id" else f"{id_type}:{value}"


def person_ref(key: str) -> PersonRef:
    """The person a store key names: ``person_key``'s inverse."""
    kind, _, value = key.partition(":")
    return {kind: value} if value and kind in _KEYED_TYPES else key


def canonical_json(value: Any) -> bytes:
    """``value`` as JSON with sorted keys: equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def attributes_hash(attributes: Mapping[str, Any]) -> str:
    """A stable hash of a person's attributes (their canonical JSON), to tell "unchanged" from
    one comparison."""
    return hash_of(canonical_json(dict(attributes)))


def hash_of(canonical: bytes) -> str:
    """``attributes_hash`` of attributes whose canonical JSON is ``canonical``."""
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


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

    # --- bulk sync (bulk.py) -------------------------------------------------------------

    def states(self, keys: Sequence[str]) -> dict[str, UserState]:
        """The known states of ``keys`` (the unknown ones are absent)."""
        ...

    def apply_batch(
        self,
        plans: Sequence[tuple[str, Plan]],
        mark: SourceMark | None,
        checkpoint: Callable[[], SyncRun] | None,
    ) -> list[Change | None]:
        """``apply`` for many people at once, in one commit with the run record
        ``checkpoint()`` returns once every plan ran (None: no record); with a ``mark``, every
        person of ``plans`` whose state exists afterwards is marked with it. Each plan's
        change, in order."""
        ...

    def unseen(self, mark: SourceMark, after: str | None, limit: int) -> list[UserState]:
        """Up to ``limit`` people of ``mark.name`` last marked by a run that started before
        ``mark.run_id``, keyed after ``after``, in key order: the people a snapshot run did not
        read (and no run that started after it did)."""
        ...

    def save_run(self, run: SyncRun) -> None: ...

    def runs(
        self, name: str | None = None, limit: int = 20, status: RunStatus | None = None
    ) -> list[SyncRun]:
        """The newest runs first (of ``name``, or of every sync; with ``status`` only)."""
        ...

    def forget_runs(self, name: str) -> int:
        """Drop the runs of ``name`` (its checkpoint and watermark): the next run starts over."""
        ...
