"""Two-way preferences: subscription webhooks update the local preference state.

Customer.io reports a person's subscription changes (``{channel}_subscribed``,
``_unsubscribed``, ``_cio_subscription_preferences_changed``, from any channel) as reporting
webhooks. ``subscription_change`` reads what one carries: the global ``unsubscribed``
(``subscribed`` is False, ``unsubscribed`` True), or the topics of a preferences change
(``data.content``, the stringified ``{"topics": {"topic_1": true}}`` reporting-webhooks.json
documents). ``webhook_plan`` applies it to the person's state and enqueues nothing: the
change came from Customer.io, sending it back would be an echo.

The conflict rule, per field (``unsubscribed`` and each ``topic_<id>``): the latest timestamp
wins, the app's change stamped with its own clock, a webhook with its event ``timestamp``; a
tie goes to the webhook, as Customer.io is the system of record for the subscription center.
A webhook older than the field's last change leaves that field as it is.

Install on a webhook router with ``install_builtin_handlers(router, ...,
on_subscription_change=preference_handler(users))``, or by hand:
``for pattern in PREFERENCE_PATTERNS: router.on(pattern)(preference_handler(users))``.
``cio-relay run`` installs it on its webhook route over a SQLite or memory outbox
(server/users.py; a Redis outbox has no user store, which it logs once at start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from cio_relay.errors import ValidationError
from cio_relay.sync.plans import topic_name
from cio_relay.sync.store import Change, Plan, PreferenceStamp, UserState, attributes_hash
from cio_relay.webhooks.events import Event, SubscriptionEvent

__all__ = [
    "PREFERENCE_PATTERNS",
    "SubscriptionChange",
    "preference_handler",
    "subscription_change",
    "webhook_plan",
]

#: The router patterns of the subscription webhooks, from every channel.
PREFERENCE_PATTERNS = (
    "*.subscribed",
    "*.unsubscribed",
    "*.cio_subscription_preferences_changed",
)


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """What one subscription webhook says of a person, at its event ``timestamp``."""

    person_id: str
    at: float
    topics: Mapping[str, bool]
    unsubscribed: bool | None


def subscription_change(event: Event) -> SubscriptionChange | None:
    """The change ``event`` carries, or None: not a subscription event, no person ``id`` (the
    local state is keyed by the app's id), or nothing readable to apply."""
    if not isinstance(event, SubscriptionEvent):
        return None
    person_id = event.identifiers.get("id")
    topics = _topics(event.data.get("content"))
    if person_id is None or (event.unsubscribed is None and not topics):
        return None
    return SubscriptionChange(person_id, event.timestamp, topics, event.unsubscribed)


def _topics(content: Any) -> dict[str, bool]:
    """The topics of ``data.content`` (a JSON string, or already an object); entries that are
    not ``topic_<id>``: bool are left out rather than failing the whole event."""
    if isinstance(content, str | bytes):
        try:
            content = orjson.loads(content)
        except orjson.JSONDecodeError:
            return {}
    given = content.get("topics") if isinstance(content, Mapping) else None
    if not isinstance(given, Mapping):
        return {}
    topics: dict[str, bool] = {}
    for topic, value in given.items():
        try:
            name = topic_name(topic)
        except ValidationError:
            continue
        if isinstance(value, bool):
            topics[name] = value
    return topics


def _webhook_wins(stamp: PreferenceStamp | None, at: float) -> bool:
    return stamp is None or at >= stamp.at  # a tie goes to the webhook (module docstring)


def webhook_plan(change: SubscriptionChange) -> Plan:
    """The plan that applies ``change`` field by field under the rule of the module docstring;
    no change (None) when every field was set later; never any operation."""

    def plan(current: UserState | None) -> Change | None:
        base = current or UserState(change.person_id, attributes_hash=attributes_hash({}))
        times = dict(base.preference_times)
        stamp = PreferenceStamp(change.at, "webhook")
        topics = {
            name: value
            for name, value in change.topics.items()
            if _webhook_wins(times.get(name), change.at)
        }
        unsubscribed = base.unsubscribed
        applied = list(topics)
        if change.unsubscribed is not None and _webhook_wins(times.get("unsubscribed"), change.at):
            unsubscribed = change.unsubscribed
            applied.append("unsubscribed")
        if not applied:
            return None
        times.update(dict.fromkeys(applied, stamp))
        state = replace(
            base,
            topics={**base.topics, **topics},
            unsubscribed=unsubscribed,
            preference_times=times,
        )
        return Change(state, ())

    return plan


class _AppliesEvents(Protocol):
    def apply_subscription_event(self, event: Event) -> UserState | None: ...


def preference_handler(repository: _AppliesEvents) -> Callable[[Event], None]:
    """A webhook router handler applying each subscription event to ``repository`` (a
    ``UserRepository``); register it on ``PREFERENCE_PATTERNS``."""

    def handle(event: Event) -> None:
        repository.apply_subscription_event(event)

    return handle
