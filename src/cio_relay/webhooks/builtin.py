"""Built-in webhook handlers: a policy for bounces and spam complaints, record subscriptions.

Delivery health (``email_bounced``, ``email_spammed``) follows a policy per metric
(``CIO_RELAY_BOUNCE_POLICY``, ``CIO_RELAY_SPAM_POLICY``):

- ``record`` (the default): the event is in the lake and the metrics like every event; the
  handler logs a line and passes a ``DeliveryProblem`` to ``record_problem`` when one is given.
  Marking the person in a local user store belongs here too once there is one (the user-sync
  repository, issue 14); until then ``record`` changes nothing at Customer.io, which already
  keeps its own suppression list for addresses that bounced.
- ``unsubscribe``: ``unsubscribe(identifier)`` sets the person's documented global
  ``unsubscribed: true`` attribute (an identify through the relay's outbox in the service).
- ``suppress``: ``suppress(identifier)``, Track suppress. Customer.io documents it as deleting
  the person permanently (profile and history) and refusing the identifier from then on, "for
  GDPR/CCPA": the reference architecture's choice, never a default here.

Customer.io's ``bounced`` metric is taken to be a *hard* bounce (soft bounces are retried by the
sender and surface as ``dropped``/``failed``): UNCONFIRMED, one more reason ``record`` is the
default. The identifier passed on is the most stable one the event carries, as a one-key dict
(``{"id": ...}``), so ``relay.suppress`` works as is.

Subscription changes (``subscribed``, ``unsubscribed``, ``cio_subscription_preferences_changed``)
from every channel, ``customer`` included, call ``record_unsubscribe(record)`` with an
``UnsubscribeRecord`` for the user-sync repository (resubscribes too, so it never goes stale),
and ``on_subscription_change(event)`` when given (``cio_relay.sync.preference_handler``: the
webhooks package never imports ``sync``, the handler is passed in).

Identifiers come from ``data.identifiers``, else ``customer_id`` and ``email_address`` (see
``Event.identifiers``); an event without any is parked for an operator (retrying cannot help).
The callables must be idempotent: handlers run at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cio_relay.config import DELIVERY_HEALTH_POLICIES, DeliveryHealthPolicy, Settings
from cio_relay.errors import ConfigError
from cio_relay.webhooks.events import SUBSCRIPTION_METRICS, Event, EventName, SubscriptionEvent
from cio_relay.webhooks.router import ParkEvent, Router

__all__ = [
    "DeliveryProblem",
    "RecordDeliveryProblem",
    "RecordSubscriptionChange",
    "RecordUnsubscribe",
    "SuppressPerson",
    "UnsubscribePerson",
    "UnsubscribeRecord",
    "builtin_options",
    "install_builtin_handlers",
    "most_stable_identifier",
]

log = logging.getLogger("cio_relay.webhooks")

ActOnPerson = Callable[[dict[str, str]], object]


@dataclass(frozen=True, slots=True)
class UnsubscribeRecord:
    """A subscription change reported by Customer.io, for the user-sync repository."""

    event_id: str
    name: str  # the event name, e.g. customer_unsubscribed, email_unsubscribed
    identifiers: dict[str, str]
    #: True: unsubscribed; False: subscribed again; None: topic preferences changed (see data).
    unsubscribed: bool | None
    occurred_at: datetime
    delivery_id: str | None
    data: Mapping[str, Any]
    #: The channel whose message triggered the change (``customer``: none did).
    channel: str = "customer"


RecordUnsubscribe = Callable[[UnsubscribeRecord], object]


@dataclass(frozen=True, slots=True)
class DeliveryProblem:
    """A bounce or spam complaint under the ``record`` policy: what a local store would mark."""

    event_id: str
    name: str  # email_bounced or email_spammed
    identifiers: dict[str, str]
    occurred_at: datetime
    delivery_id: str | None


RecordProblem = Callable[[DeliveryProblem], object]

#: The delivery-health events and the setting that names each one's policy.
DELIVERY_HEALTH_SETTINGS: Mapping[str, str] = {
    EventName.EMAIL_BOUNCED: "CIO_RELAY_BOUNCE_POLICY",
    EventName.EMAIL_SPAMMED: "CIO_RELAY_SPAM_POLICY",
}


def _identifiers_or_park(event: Event, purpose: str) -> dict[str, str]:
    identifiers = event.identifiers
    if not identifiers:
        raise ParkEvent(f"{event.name} {event.event_id}: no person identifiers to {purpose}")
    return identifiers


#: Identifier kinds from the most to the least stable: an id never changes, an email may.
IDENTIFIER_PREFERENCE = ("id", "cio_id", "email")


def most_stable_identifier(identifiers: dict[str, str]) -> dict[str, str]:
    """A webhook may name a person by id, cio_id and email at once; an operation (and
    ``Relay.suppress``) takes exactly one: ``id``, else ``cio_id``, else ``email``."""
    for kind in IDENTIFIER_PREFERENCE:
        if identifiers.get(kind):
            return {kind: identifiers[kind]}
    return identifiers


class RecordDeliveryProblem:
    """Handler for the ``record`` policy: a log line, and ``record_problem`` when given."""

    def __init__(self, record_problem: RecordProblem | None = None) -> None:
        self._record = record_problem

    def __repr__(self) -> str:
        return "RecordDeliveryProblem"

    def __call__(self, event: Event) -> None:
        identifiers = event.identifiers
        # Identifiers stay out of the log line (they are personal data); the lake has them.
        log.info("webhook %s %s recorded (policy record)", event.name, event.event_id)
        if self._record is not None:
            self._record(
                DeliveryProblem(
                    event_id=event.event_id,
                    name=event.name,
                    identifiers=identifiers,
                    occurred_at=event.occurred_at,
                    delivery_id=event.delivery_id,
                )
            )


class UnsubscribePerson:
    """Handler for the ``unsubscribe`` policy: the person's global ``unsubscribed: true``."""

    def __init__(self, unsubscribe: ActOnPerson) -> None:
        self._unsubscribe = unsubscribe

    def __repr__(self) -> str:
        return "UnsubscribePerson"

    def __call__(self, event: Event) -> None:
        self._unsubscribe(most_stable_identifier(_identifiers_or_park(event, "unsubscribe")))


class SuppressPerson:
    """Handler for the ``suppress`` policy: delete the person and block the identifier."""

    def __init__(self, suppress: ActOnPerson) -> None:
        self._suppress = suppress

    def __repr__(self) -> str:
        return "SuppressPerson"

    def __call__(self, event: Event) -> None:
        self._suppress(most_stable_identifier(_identifiers_or_park(event, "suppress")))


class RecordSubscriptionChange:
    """Handler: pass an ``UnsubscribeRecord`` to the injected ``record_unsubscribe``."""

    def __init__(self, record_unsubscribe: RecordUnsubscribe) -> None:
        self._record = record_unsubscribe

    def __repr__(self) -> str:
        return "RecordSubscriptionChange"

    def __call__(self, event: Event) -> None:
        if not isinstance(event, SubscriptionEvent):
            return  # a metric wildcard also matches an UnknownEvent of an undocumented channel
        self._record(
            UnsubscribeRecord(
                event_id=event.event_id,
                name=event.name,
                identifiers=_identifiers_or_park(event, "record"),
                unsubscribed=event.unsubscribed,
                occurred_at=event.occurred_at,
                delivery_id=event.delivery_id,
                data=event.data,
                channel=event.channel,
            )
        )


def builtin_options(settings: Settings) -> dict[str, Any]:
    """The settings as ``install_builtin_handlers`` keyword arguments."""
    return {
        "bounce_policy": settings.bounce_policy,
        "spam_policy": settings.spam_policy,
        "record_unsubscribes": settings.webhook_record_unsubscribes,
    }


def _policy_handler(
    name: str,
    policy: str,
    *,
    suppress: ActOnPerson | None,
    unsubscribe: ActOnPerson | None,
    record_problem: RecordProblem | None,
) -> RecordDeliveryProblem | UnsubscribePerson | SuppressPerson:
    setting = DELIVERY_HEALTH_SETTINGS[name]
    if policy not in DELIVERY_HEALTH_POLICIES:
        raise ConfigError(
            f"{setting}: {policy!r} is not a policy; "
            f"use one of {', '.join(DELIVERY_HEALTH_POLICIES)}"
        )
    if policy == "record":
        return RecordDeliveryProblem(record_problem)
    act = suppress if policy == "suppress" else unsubscribe
    if act is None:
        # A missing wire-up must not silently leave the chosen policy undone.
        raise ConfigError(f"{setting}={policy} needs the {policy} callable (pass {policy}=...)")
    return SuppressPerson(act) if policy == "suppress" else UnsubscribePerson(act)


def install_builtin_handlers(
    router: Router,
    *,
    bounce_policy: DeliveryHealthPolicy = "record",
    spam_policy: DeliveryHealthPolicy = "record",
    suppress: ActOnPerson | None = None,
    unsubscribe: ActOnPerson | None = None,
    record_problem: RecordProblem | None = None,
    record_unsubscribe: RecordUnsubscribe | None = None,
    record_unsubscribes: bool = True,
    on_subscription_change: Callable[[Event], None] | None = None,
) -> list[str]:
    """Register the built-ins on ``router``; return the patterns now handled.

    From settings: ``install_builtin_handlers(router, suppress=..., unsubscribe=...,
    record_unsubscribe=..., **builtin_options(settings))``. ``suppress`` is called only under
    the ``suppress`` policy, ``unsubscribe`` only under ``unsubscribe``; a chosen policy without
    its callable, or recording subscriptions without ``record_unsubscribe``, is a
    ``ConfigError``, so a missing wire-up cannot silently do nothing.
    ``on_subscription_change`` (e.g. ``cio_relay.sync.preference_handler(users)``, two-way
    preferences) also runs for every subscription event, recorded or not.
    """
    installed: list[str] = []
    for name, policy in (
        (EventName.EMAIL_BOUNCED, bounce_policy),
        (EventName.EMAIL_SPAMMED, spam_policy),
    ):
        handler = _policy_handler(
            name,
            policy,
            suppress=suppress,
            unsubscribe=unsubscribe,
            record_problem=record_problem,
        )
        router.add(name, handler)
        installed.append(str(name))
    if record_unsubscribes:
        if record_unsubscribe is None:
            raise ConfigError(
                "record_unsubscribe: recording subscription changes is enabled but no callable "
                "was given (pass record_unsubscribe=..., or record_unsubscribes=False)"
            )
        recorder = RecordSubscriptionChange(record_unsubscribe)
        for metric in sorted(SUBSCRIPTION_METRICS):
            pattern = f"*.{metric}"
            router.add(pattern, recorder)
            installed.append(pattern)
    if on_subscription_change is not None:
        for metric in sorted(SUBSCRIPTION_METRICS):
            pattern = f"*.{metric}"
            router.add(pattern, on_subscription_change)
            if pattern not in installed:
                installed.append(pattern)
    return installed
