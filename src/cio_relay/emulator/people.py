"""What Track operations do to people, shared by the v1 handlers and the v2 batch items.

Semantics follow customerio-api.md §2 and track-api.json: identify creates or updates; an
unknown ``cio_<id>`` is dropped; a merge into a primary that does not exist does nothing; a
body ``id``/``email`` that conflicts with the path is not applied and counts as an "Attribute
Update Failure" (the request still answers 200); ``_update: true`` only updates (its exact
semantics are UNCONFIRMED; update-only is the conservative reading).
"""

from __future__ import annotations

import time
from typing import Any

from .limits import CheckedEvent, Invalid, check_attributes, check_identifier
from .relations import ANONYMOUS, PERSON
from .state import EmulatorState, Person

__all__ = [
    "add_device",
    "apply_identify",
    "delete_device",
    "delete_person",
    "merge_people",
    "one_identifier",
    "person_for_write",
    "set_suppressed",
    "store_event",
]

_DEVICE_FIELDS = frozenset({"id", "token", "platform", "last_used", "attributes"})
PLATFORMS = ("ios", "android")  # a tuple: see limits.EVENT_TYPES


def person_for_write(state: EmulatorState, id_type: str, value: str) -> Person | None:
    """The person an operation is about, created when it does not exist yet; None when the
    identifier is an unknown ``cio_id`` (Customer.io drops those)."""
    person = state.find(id_type, value)
    if person is None and id_type == "email":
        person = state.find("id", value)
    if person is not None:
        return person
    if id_type == "cio_id":
        state.stats.ignored_unknown_cio_ids += 1
        return None
    return state.create(id_type, value)


def apply_identify(
    state: EmulatorState, id_type: str, value: str, attributes: dict[str, Any]
) -> Person | None:
    """Create or update a person; the person, or None when nothing was written (an unknown
    ``cio_id``, or ``_update`` for someone who does not exist)."""
    check_attributes(attributes)
    for key in ("id", "email"):
        if key in attributes and attributes[key] is not None:
            check_identifier(attributes[key], key, capped=key == "id")
    person = state.find(id_type, value)
    if person is None and id_type == "email":
        person = state.find("id", value)
    if person is None:
        if id_type == "cio_id":
            state.stats.ignored_unknown_cio_ids += 1
            return None
        if attributes.get("_update") is True:
            return None  # update-only: never creates (UNCONFIRMED, conservative)
        person = state.create(id_type, value)
    _apply_attributes(state, person, id_type, value, attributes)
    anonymous_id = attributes.get("anonymous_id")
    if type(anonymous_id) is str and anonymous_id:
        # An anonymous visitor's relationships carry over to the identified profile
        # (track-api.json, object_identify_anonymous).
        state.relations.move_member((ANONYMOUS, anonymous_id), (PERSON, person.cio_id))
    return person


def _apply_attributes(
    state: EmulatorState, person: Person, id_type: str, value: str, attributes: dict[str, Any]
) -> None:
    for name, attribute in attributes.items():
        if name == "_update":
            continue
        if name == "id" and attribute is not None:
            new_id = str(attribute)
            if new_id == person.id:
                continue
            # Changing an id needs the cio_ form of the path (customerio-api.md §2).
            if (id_type != "cio_id" and person.id is not None) or not state.set_id(person, new_id):
                state.record_update_failure(value, f"id {new_id!r} conflicts with {person.id!r}")
            continue
        if name == "email" and isinstance(attribute, str) and attribute:
            if person.email is not None and person.email.lower() == attribute.lower():
                person.attributes["email"] = attribute
                continue
            if not state.set_email(person, attribute):
                state.record_update_failure(value, f"email {attribute!r} belongs to another person")
            continue
        if attribute is None or attribute == "":  # track-api.json: null or "" removes it
            person.attributes.pop(name, None)
            continue
        person.attributes[name] = attribute
    person.updated_at = time.time()


def delete_person(state: EmulatorState, id_type: str, value: str) -> None:
    person = state.find(id_type, value)
    if person is not None:
        state.remove(person)


def set_suppressed(state: EmulatorState, id_type: str, value: str, suppressed: bool) -> None:
    person = person_for_write(state, id_type, value) if suppressed else state.find(id_type, value)
    if person is not None:
        person.suppressed = suppressed
        person.updated_at = time.time()


def store_event(
    state: EmulatorState,
    person: Person | None,
    anonymous_id: str | None,
    event: CheckedEvent,
) -> bool:
    """Store one validated event; False when its ``id`` was seen before (not stored again)."""
    cio_id = None if person is None else person.cio_id
    return state.add_event(cio_id, anonymous_id, *event)


def add_device(state: EmulatorState, id_type: str, value: str, device: Any) -> None:
    """Add or update a device. Extras may come flat in ``device`` (the Python and Ruby SDKs) or
    nested in ``device.attributes`` (Node); both end up in the stored ``attributes``."""
    if not isinstance(device, dict):
        raise Invalid("device must be an object", "device", "invalid_type")
    token = device.get("id", device.get("token"))
    if not isinstance(token, str) or not token:
        raise Invalid("device id must be present", "device.id", "required")
    platform = device.get("platform")
    if platform not in PLATFORMS:
        raise Invalid("device platform must be ios or android", "device.platform")
    nested = device.get("attributes") or {}
    if not isinstance(nested, dict):
        raise Invalid("device attributes must be an object", "device.attributes", "invalid_type")
    extras = {k: v for k, v in device.items() if k not in _DEVICE_FIELDS}
    attributes = check_attributes({**extras, **nested}, "device.attributes")
    person = person_for_write(state, id_type, value)
    if person is None:
        return
    stored: dict[str, Any] = {"id": token, "platform": platform, "attributes": attributes}
    if device.get("last_used") is not None:
        stored["last_used"] = device["last_used"]
    person.devices[token] = stored
    person.updated_at = time.time()


def delete_device(state: EmulatorState, id_type: str, value: str, token: str) -> None:
    person = state.find(id_type, value)
    if person is not None:
        person.devices.pop(token, None)


def merge_people(state: EmulatorState, primary: Any, secondary: Any, *, strict: bool) -> None:
    """``primary``/``secondary`` are ``{<id|email|cio_id>: value}``; ``strict``: nothing else
    beside it (v1's ``maxProperties: 1``; v2's ``person_merge`` has no such bound). The primary
    must already exist: otherwise the merge "won't do anything" (track-api.json, merge), and
    neither does a missing secondary."""
    first = one_identifier(primary, "primary", MERGE_IDENTIFIERS, strict=strict)
    second = one_identifier(secondary, "secondary", MERGE_IDENTIFIERS, strict=strict)
    person = state.find(*first)
    other = state.find(*second)
    if person is None or other is None or person is other:
        return
    state.merge(person, other)


PERSON_IDENTIFIERS = ("id", "email", "phone", "cio_id")
MERGE_IDENTIFIERS = ("id", "email", "cio_id")


def one_identifier(
    value: Any, field: str, allowed: tuple[str, ...] = PERSON_IDENTIFIERS, *, strict: bool = False
) -> tuple[str, str]:
    """(type, value) of the one identifier in ``value``. Keys other than ``allowed`` are
    ignored unless ``strict`` (the documents allow other properties beside the identifier,
    except merge's ``maxProperties: 1``); only an ``id`` is held to the 150-byte limit."""
    if type(value) is dict and len(value) == 1:  # the hot path
        ((id_type, identifier),) = value.items()
        if id_type in allowed:
            return id_type, check_identifier(
                identifier, f"{field}.{id_type}", capped=id_type == "id"
            )
    message = f"{field} must contain exactly one of {', '.join(allowed)}"
    if not isinstance(value, dict):
        raise Invalid(message, field, "required")
    found = [(k, v) for k, v in value.items() if k in allowed]
    if len(found) != 1 or (strict and len(value) != 1):
        raise Invalid(message, field, "required" if not found else "invalid")
    ((id_type, identifier),) = found
    return id_type, check_identifier(identifier, f"{field}.{id_type}", capped=id_type == "id")
