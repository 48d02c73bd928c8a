"""The plans of the user repository: pure functions from a person's state to a ``Change``.

- ``sync_plan``: the attributes wanted now against those last synced. Unchanged (same hash)
  is no change at all; otherwise one identify carries the new and changed keys, and every key
  synced before but absent now set to ``""``, which removes it. track-api.json states the rule
  for object and relationship attributes ("pass ``null`` or an empty string to remove an
  attribute") and no other for a person's; the empty string is chosen over ``null`` because
  the limit checks and both wire forms (v1, v2) carry it as it is. A value of None or ``""``
  given to ``sync_user`` means "no such attribute" for the same reason. Past 300 keys (the
  documented attributes per call, one kept for the environment stamp) the identify is split,
  in order.
- ``preferences_plan``: Customer.io's subscription attributes, always sent (the person may have
  changed them in the subscription center since, which the local state cannot know yet): each
  topic as ``cio_subscription_preferences.topics.topic_<id>`` (the JSON dot notation
  track-api.json documents "to update one topic without replacing others"), the global
  ``unsubscribed`` as a boolean. Each field set is stamped with the app's time and source
  (``PreferenceStamp``), which a later subscription webhook is compared with (preferences.py).
- ``erase_plan``: suppress, then delete, as the reference architecture's ``deleteUser``. Suppress
  first: track-api.json says it deletes the profile *and* keeps the identifier from being added
  again, so nothing (a page still open, a snippet) can re-create the person between the two; the
  delete then covers a workspace where the suppress could not delete (an identifier Customer.io
  ignores after suppression is a no-op). The local state is forgotten (erasure keeps no copy).

``person_id`` is the store's key (``person_key``): an email or a cio_id is sent as that kind of
identifier. Operations are built with the relay's ``OperationFactory`` inside the plan, so the
documented limits are checked before anything is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import orjson

from cio_relay.errors import ValidationError
from cio_relay.json_values import dumps as checked_dumps
from cio_relay.operations import LIMITS, Operation, OperationFactory, PersonRef
from cio_relay.sync.store import (
    Change,
    Plan,
    PreferenceStamp,
    UserState,
    attributes_hash,
    canonical_json,
    hash_of,
    person_ref,
)

__all__ = [
    "CLEARED",
    "PREFERENCES_PREFIX",
    "Wanted",
    "erase_plan",
    "preferences_plan",
    "present_attributes",
    "sync_plan",
    "topic_name",
]

#: The value that removes an attribute (module docstring).
CLEARED = ""
#: One topic's attribute is this prefix and ``topic_<id>``.
PREFERENCES_PREFIX = "cio_subscription_preferences.topics."
#: Keys per identify: the documented limit, less one for the ``_env`` stamp.
_KEYS_PER_IDENTIFY = LIMITS.attributes_per_call - 1
_TOPIC = re.compile(r"topic_[0-9]+")


class Wanted(NamedTuple):
    """The attributes a person should have (none None or ``""``) and their hash."""

    attributes: dict[str, Any]
    hash: str


def present_attributes(attributes: Mapping[str, Any]) -> Wanted:
    """The attributes that exist (None and ``""`` mean absent) and their hash. Refuses what
    JSON cannot carry (``ValidationError`` naming the attribute); the one serialisation that
    checks it is the one hashed."""
    present = {k: v for k, v in attributes.items() if v is not None and v != CLEARED}
    canonical = checked_dumps(present, "attributes", option=orjson.OPT_SORT_KEYS)
    return Wanted(present, hash_of(canonical))


def sync_plan(build: OperationFactory, person_id: str, wanted: Wanted, now: float) -> Plan:
    """The plan of ``sync_user`` (module docstring); ``wanted`` from ``present_attributes``."""
    wanted_attributes, hashed = wanted

    def plan(current: UserState | None) -> Change | None:
        if current is not None and current.attributes_hash == hashed:
            return None
        if current is None:  # a new person: everything is sent
            state = UserState(person_id, wanted_attributes, hashed, updated_at=now)
            return Change(state, _identifies(build, person_ref(person_id), wanted_attributes))
        before = current.attributes
        sent = {
            k: v
            for k, v in wanted_attributes.items()
            if k not in before or canonical_json(before[k]) != canonical_json(v)
        }
        sent.update((k, CLEARED) for k in before if k not in wanted_attributes)
        state = replace(
            current, attributes=wanted_attributes, attributes_hash=hashed, updated_at=now
        )
        return Change(state, _identifies(build, person_ref(person_id), sent))

    return plan


def _identifies(
    build: OperationFactory, person: PersonRef, attributes: dict[str, Any]
) -> tuple[Operation, ...]:
    if len(attributes) <= _KEYS_PER_IDENTIFY:
        return (build.identify(person, attributes),)
    items = list(attributes.items())
    return tuple(
        build.identify(person, dict(items[start : start + _KEYS_PER_IDENTIFY]))
        for start in range(0, len(items), _KEYS_PER_IDENTIFY)
    )


def topic_name(topic: str | int) -> str:
    """``topic_<id>`` for a topic id (7, "7" or "topic_7"); ``ValidationError`` otherwise."""
    name = f"topic_{topic}" if isinstance(topic, int) or str(topic).isdigit() else str(topic)
    if isinstance(topic, bool) or not _TOPIC.fullmatch(name):
        raise ValidationError("topics", f"a topic is topic_<id> or its id, not {topic!r}")
    return name


def preferences_plan(
    build: OperationFactory,
    person_id: str,
    topics: Mapping[str | int, bool],
    unsubscribed: bool | None,
    now: float,
) -> Plan:
    """The plan of ``update_preferences`` (module docstring)."""
    chosen = {topic_name(topic): _boolean(value, "topics") for topic, value in topics.items()}
    if unsubscribed is not None:
        _boolean(unsubscribed, "unsubscribed")
    if not chosen and unsubscribed is None:
        raise ValidationError("topics", "nothing to update: pass topics or unsubscribed")
    attributes: dict[str, Any] = {PREFERENCES_PREFIX + name: v for name, v in chosen.items()}
    if unsubscribed is not None:
        attributes["unsubscribed"] = unsubscribed

    def plan(current: UserState | None) -> Change:
        base = current or UserState(person_id, attributes_hash=attributes_hash({}))
        stamped = [*chosen, *(["unsubscribed"] if unsubscribed is not None else [])]
        state = replace(
            base,
            topics={**base.topics, **chosen},
            unsubscribed=base.unsubscribed if unsubscribed is None else unsubscribed,
            updated_at=now,
            preference_times={
                **base.preference_times,
                **dict.fromkeys(stamped, PreferenceStamp(now, "app")),
            },
        )
        return Change(state, (build.identify(person_ref(person_id), attributes),))

    return plan


def erase_plan(build: OperationFactory, person_id: str) -> Plan:
    """The plan of ``delete_user`` (module docstring)."""

    def plan(current: UserState | None) -> Change:
        person = person_ref(person_id)
        return Change(None, (build.suppress(person), build.delete(person)))

    return plan


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be true or false, not {value!r}")
    return value
