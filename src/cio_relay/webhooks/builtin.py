"""Built-in webhook handlers: suppress on hard bounce or spam complaint, record unsubscribes.

Each is a setting (on by default) and acts through an injected callable, so this module does
not know the outbox or the user store:

- ``email_bounced`` and ``email_spammed`` call ``suppress(identifier)`` with the person's most
  stable identifier as a one-key dict (so ``suppress=relay.suppress`` works as is: the Relay
  suppresses the person at Customer.io through the outbox). Customer.io's
  ``bounced`` metric is taken to be a *hard* bounce (soft bounces are retried by the sender
  and surface as ``dropped``/``failed``): UNCONFIRMED, hence the setting to turn it off.
- ``customer_unsubscribed``, ``email_unsubscribed``, ``customer_subscribed`` and
  ``customer_cio_subscription_preferences_changed`` call ``record_unsubscribe(record)`` with an
  ``UnsubscribeRecord`` for the user-sync repository (resubscribes too, so it never goes stale).

Identifiers come from ``data.identifiers``, else ``customer_id`` and ``email_address`` (see
``Event.identifiers``); an event without any is parked for an operator (retrying cannot help).
Both callables must be idempotent: handlers run at least once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cio_relay.config import Settings
from cio_relay.errors import ConfigError
from cio_relay.webhooks.events import Event, EventName
from cio_relay.webhooks.router import ParkEvent, Router

__all__ = [
    "RecordSubscriptionChange",
    "RecordUnsubscribe",
    "SuppressPerson",
    "UnsubscribeRecord",
    "builtin_flags",
    "install_builtin_handlers",
    "most_stable_identifier",
]

Suppress = Callable[[dict[str, str]], object]


@dataclass(frozen=True, slots=True)
class UnsubscribeRecord:
    """A subscription change reported by Customer.io, for the user-sync repository."""

    event_id: str
    name: str  # the event name, e.g. customer_unsubscribed
    identifiers: dict[str, str]
    #: True: unsubscribed; False: subscribed again; None: topic preferences changed (see data).
    unsubscribed: bool | None
    occurred_at: datetime
    delivery_id: str | None
    data: Mapping[str, Any]


RecordUnsubscribe = Callable[[UnsubscribeRecord], object]

SUPPRESSING = (EventName.EMAIL_BOUNCED, EventName.EMAIL_SPAMMED)
_SUBSCRIPTION_CHANGES: Mapping[str, bool | None] = {
    EventName.CUSTOMER_UNSUBSCRIBED: True,
    EventName.EMAIL_UNSUBSCRIBED: True,
    EventName.CUSTOMER_SUBSCRIBED: False,
    EventName.CUSTOMER_SUBSCRIPTION_PREFERENCES_CHANGED: None,
}


def _identifiers_or_park(event: Event, purpose: str) -> dict[str, str]:
    identifiers = event.identifiers
    if not identifiers:
        raise ParkEvent(f"{event.name} {event.event_id}: no person identifiers to {purpose}")
    return identifiers


class SuppressPerson:
    """Handler: suppress the event's person through the injected ``suppress`` callable."""

    def __init__(self, suppress: Suppress) -> None:
        self._suppress = suppress

    def __repr__(self) -> str:
        return "SuppressPerson"

    def __call__(self, event: Event) -> None:
        self._suppress(most_stable_identifier(_identifiers_or_park(event, "suppress")))


#: Identifier kinds from the most to the least stable: an id never changes, an email may.
IDENTIFIER_PREFERENCE = ("id", "cio_id", "email")


def most_stable_identifier(identifiers: dict[str, str]) -> dict[str, str]:
    """A webhook may name a person by id, cio_id and email at once; an operation (and
    ``Relay.suppress``) takes exactly one: ``id``, else ``cio_id``, else ``email``."""
    for kind in IDENTIFIER_PREFERENCE:
        if identifiers.get(kind):
            return {kind: identifiers[kind]}
    return identifiers


class RecordSubscriptionChange:
    """Handler: pass an ``UnsubscribeRecord`` to the injected ``record_unsubscribe``."""

    def __init__(self, record_unsubscribe: RecordUnsubscribe) -> None:
        self._record = record_unsubscribe

    def __repr__(self) -> str:
        return "RecordSubscriptionChange"

    def __call__(self, event: Event) -> None:
        self._record(
            UnsubscribeRecord(
                event_id=event.event_id,
                name=event.name,
                identifiers=_identifiers_or_park(event, "record"),
                unsubscribed=_SUBSCRIPTION_CHANGES.get(event.name),
                occurred_at=event.occurred_at,
                delivery_id=event.delivery_id,
                data=event.data,
            )
        )


def builtin_flags(settings: Settings) -> dict[str, bool]:
    """The three on/off settings as ``install_builtin_handlers`` keyword arguments."""
    return {
        "suppress_on_bounce": settings.webhook_suppress_on_bounce,
        "suppress_on_spam": settings.webhook_suppress_on_spam,
        "record_unsubscribes": settings.webhook_record_unsubscribes,
    }


def install_builtin_handlers(
    router: Router,
    *,
    suppress: Suppress | None = None,
    record_unsubscribe: RecordUnsubscribe | None = None,
    suppress_on_bounce: bool = True,
    suppress_on_spam: bool = True,
    record_unsubscribes: bool = True,
) -> list[str]:
    """Register the enabled built-ins on ``router``; return the event names now handled.

    From settings: ``install_builtin_handlers(router, suppress=..., record_unsubscribe=...,
    **builtin_flags(settings))``.

    An enabled built-in without its callable is a configuration error (turn it off instead),
    so a missing wire-up cannot silently leave bounced people unsuppressed.
    """
    installed: list[str] = []
    wanted = [
        (EventName.EMAIL_BOUNCED, suppress_on_bounce),
        (EventName.EMAIL_SPAMMED, suppress_on_spam),
    ]
    if any(enabled for _, enabled in wanted):
        if suppress is None:
            raise ConfigError(
                "suppress: suppressing on bounce/spam is enabled but no suppress callable "
                "was given (pass suppress=..., or suppress_on_bounce/suppress_on_spam=False)"
            )
        handler = SuppressPerson(suppress)
        for name, enabled in wanted:
            if enabled:
                router.add(name, handler)
                installed.append(name)
    if record_unsubscribes:
        if record_unsubscribe is None:
            raise ConfigError(
                "record_unsubscribe: recording unsubscribes is enabled but no callable was "
                "given (pass record_unsubscribe=..., or record_unsubscribes=False)"
            )
        recorder = RecordSubscriptionChange(record_unsubscribe)
        for change in _SUBSCRIPTION_CHANGES:
            router.add(change, recorder)
            installed.append(change)
    return installed
