"""``UserRepository`` and ``AsyncUserRepository``: keep people in step with Customer.io.

    relay = Relay()
    users = UserRepository(relay)                 # state beside the relay's outbox
    users.sync_user("user-1", {"email": "ada@example.com", "plan": "pro"})  # an op id
    users.sync_user("user-1", {"email": "ada@example.com", "plan": "pro"})  # None: unchanged
    users.sync_user("user-1", {"email": "ada@example.com"})   # clears "plan"
    users.update_preferences("user-1", topics={7: False}, unsubscribed=False)
    users.apply_subscription_event(event)         # a subscription webhook: nothing enqueued
    users.delete_user("user-1")                   # suppress, then delete; state forgotten
    users.sync_user({"email": "bob@example.com"}, {"plan": "free"})  # a person without an id
    relay.worker().drain()

Each call plans its change (plans.py) on the person's stored state and hands it to the
``UserStore`` (store.py), which records the new state and enqueues the operations together.
Operations are built with a factory of the relay's settings (its environment, its stamp), so
the worker delivers them like any of the relay's own. Like ``Relay``, a failing storage is
``StorageUnavailableError`` with nothing stored, and ``on_enqueued`` hooks hear each operation.

Backpressure: past the relay's ``outbox_max_depth`` undelivered operations, ``sync_user``,
``update_preferences`` and ``delete_user`` are refused with the relay's ``OutboxFullError``
(``GuardedOutbox.check_capacity``, asked before the store's transaction), nothing recorded;
an unchanged ``sync_user`` is refused too, as it cannot know it is unchanged before reading
the person's state inside that transaction. ``apply_subscription_event`` enqueues nothing and
is never refused. A repository over a bare ``Outbox`` (no relay, no settings) has no limit.

A person is named as ``Relay`` names one: an id (``"user-1"``, ``{"id": ...}``), or
``{"email": ...}`` / ``{"cio_id": ...}``; the state is kept under ``person_key`` (store.py:
the id itself, else ``email:<value>`` / ``cio_id:<value>``, which ``UserState.person_id``
holds), and the operations name the person by that same kind of identifier. A subscription
webhook applies to the person synced by its ``id`` (preferences.py).

The two shells have the same methods with the same signatures (a test compares them);
``AsyncUserRepository`` runs the store's short transaction on a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from cio_relay.clock import now_or
from cio_relay.delivery.hooks import Hooks
from cio_relay.errors import CioRelayError, ConfigError, StorageUnavailableError
from cio_relay.operations import OperationFactory, PersonRef
from cio_relay.outbox.base import Outbox
from cio_relay.relay import AsyncRelay, Relay
from cio_relay.sync.factory import user_store_for
from cio_relay.sync.plans import erase_plan, preferences_plan, present_attributes, sync_plan
from cio_relay.sync.preferences import subscription_change, webhook_plan
from cio_relay.sync.store import Change, Plan, UserState, UserStore, person_key
from cio_relay.webhooks.events import Event

__all__ = ["AsyncUserRepository", "UserRepository"]


class _RepositoryBase:
    """What both shells hold: the store, the factory, the hooks; and running a plan."""

    def __init__(
        self, relay_or_outbox: Relay | AsyncRelay | Outbox, store: UserStore | None = None
    ) -> None:
        if isinstance(relay_or_outbox, Relay | AsyncRelay):
            outbox = relay_or_outbox.outbox
            self._build = OperationFactory.from_settings(relay_or_outbox.settings)
            self._hooks = relay_or_outbox.hooks
            self._check_capacity: Callable[[], None] = relay_or_outbox.guarded_outbox.check_capacity
        else:
            outbox = relay_or_outbox
            self._build = OperationFactory()
            self._hooks = Hooks()
            self._check_capacity = _no_limit
        self.store = user_store_for(outbox) if store is None else store
        if self.store.outbox is not outbox:
            raise ConfigError(
                "the user store must be the one of the relay's outbox (user_store_for)"
            )

    @property
    def build(self) -> OperationFactory:
        """The factory the repository builds operations with (the relay's settings); a bulk
        sync (bulk.py) builds with it too."""
        return self._build

    @property
    def capacity_check(self) -> Callable[[], None]:
        """Raises ``OutboxFullError`` when the outbox is past its maximum depth
        (guarded_outbox.py); a bulk sync asks it before each batch."""
        return self._check_capacity

    def _run(self, person_id: str, plan: Plan, *, enqueues: bool = True) -> Change | None:
        if enqueues:
            self._check_capacity()  # OutboxFullError before anything is read or written
        try:
            change = self.store.apply(person_id, plan)
        except (CioRelayError, TypeError):
            raise  # a limit, a bad value: nothing to do with the storage
        except Exception as exc:
            raise StorageUnavailableError("outbox", exc) from exc
        if change is not None and self._hooks.enqueued:
            for op in change.operations:
                Hooks.fire(self._hooks.enqueued, op)
        return change

    def _sync(self, person: PersonRef, attributes: Mapping[str, Any]) -> list[str]:
        """The op ids enqueued (several past 300 keys), none when nothing changed."""
        person_id = person_key(person)
        plan = sync_plan(self._build, person_id, present_attributes(attributes), now_or(None))
        change = self._run(person_id, plan)
        return [] if change is None else [op.op_id for op in change.operations]

    def _preferences(
        self, person: PersonRef, topics: Mapping[str | int, bool], unsubscribed: bool | None
    ) -> str:
        person_id = person_key(person)
        plan = preferences_plan(self._build, person_id, topics, unsubscribed, now_or(None))
        change = self._run(person_id, plan)
        assert change is not None  # a preferences plan always changes
        return change.operations[-1].op_id

    def _get(self, person: PersonRef) -> UserState | None:
        return self.store.get(person_key(person))

    def _apply_event(self, event: Event) -> UserState | None:
        change = subscription_change(event)
        if change is None:
            return None
        applied = self._run(change.person_id, webhook_plan(change), enqueues=False)
        return None if applied is None else applied.state

    def _erase(self, person: PersonRef) -> list[str]:
        person_id = person_key(person)
        change = self._run(person_id, erase_plan(self._build, person_id))
        assert change is not None  # an erasure always goes out
        return [op.op_id for op in change.operations]


def _no_limit() -> None:
    """A bare outbox's capacity check: no settings, so no depth limit (module docstring)."""


def _last(op_ids: list[str]) -> str | None:
    return op_ids[-1] if op_ids else None


class UserRepository(_RepositoryBase):
    """People kept in step with Customer.io through the outbox (module docstring)."""

    def sync_user(self, person: PersonRef, attributes: Mapping[str, Any]) -> str | None:
        """Send what changed in ``attributes`` since the person's last sync: the op id of the
        identify (the last, when past 300 keys it is split), or None when nothing changed.
        Attributes synced before and absent now are cleared."""
        return _last(self._sync(person, attributes))

    def sync_user_op_ids(self, person: PersonRef, attributes: Mapping[str, Any]) -> list[str]:
        """``sync_user``, answering the op id of every identify it enqueued (several past 300
        changed keys), in order; empty when nothing changed."""
        return self._sync(person, attributes)

    def update_preferences(
        self,
        person: PersonRef,
        *,
        topics: Mapping[str | int, bool] | None = None,
        unsubscribed: bool | None = None,
    ) -> str:
        """Set subscription topics (``{7: False}`` or ``{"topic_7": False}``; others keep
        theirs) and/or the global ``unsubscribed``; the identify's op id."""
        return self._preferences(person, topics or {}, unsubscribed)

    def delete_user(self, person: PersonRef) -> list[str]:
        """Erase the person at Customer.io (suppress, then delete) and forget them here; the
        two op ids, in that order."""
        return self._erase(person)

    def apply_subscription_event(self, event: Event) -> UserState | None:
        """Apply a subscription webhook to the person's local preferences, enqueueing nothing
        (the change came from Customer.io); the new state, or None when nothing applied (not a
        subscription event, no person id, or every field set later: preferences.py)."""
        return self._apply_event(event)

    def get(self, person: PersonRef) -> UserState | None:
        """What is known of the person (attributes last enqueued, preferences with their
        ``preference_times``), or None when nothing is known."""
        return self._get(person)


class AsyncUserRepository(_RepositoryBase):
    """``UserRepository`` for coroutines: the same methods, awaited."""

    async def sync_user(self, person: PersonRef, attributes: Mapping[str, Any]) -> str | None:
        """See ``UserRepository.sync_user``."""
        return _last(await asyncio.to_thread(self._sync, person, attributes))

    async def sync_user_op_ids(self, person: PersonRef, attributes: Mapping[str, Any]) -> list[str]:
        """See ``UserRepository.sync_user_op_ids``."""
        return await asyncio.to_thread(self._sync, person, attributes)

    async def update_preferences(
        self,
        person: PersonRef,
        *,
        topics: Mapping[str | int, bool] | None = None,
        unsubscribed: bool | None = None,
    ) -> str:
        """See ``UserRepository.update_preferences``."""
        return await asyncio.to_thread(self._preferences, person, topics or {}, unsubscribed)

    async def delete_user(self, person: PersonRef) -> list[str]:
        """See ``UserRepository.delete_user``."""
        return await asyncio.to_thread(self._erase, person)

    async def apply_subscription_event(self, event: Event) -> UserState | None:
        """See ``UserRepository.apply_subscription_event``."""
        return await asyncio.to_thread(self._apply_event, event)

    async def get(self, person: PersonRef) -> UserState | None:
        """See ``UserRepository.get``."""
        return await asyncio.to_thread(self._get, person)
