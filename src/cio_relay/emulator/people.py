"""What Track operations do to people, shared by the v1 handlers and the v2 batch items.

Semantics follow customerio-api.md §2: identify creates or updates; an unknown ``cio_<id>`` is
dropped; a body ``id``/``email`` that conflicts with the path is not applied and counts as an
"Attribute Update Failure" (the request still answers 200); ``_update: true`` only updates
(its exact semantics are UNCONFIRMED; update-only is the conservative reading).
"""

from __future__ import annotations

import time
from typing import Any

from .limits import CheckedEvent, Invalid, check_attributes, check_identifier
from .state import EmulatorState, Person

__all__ = [
    "add_device",
    "apply_identify",
    "delete_device",
    "delete_person",
    "merge_people",
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
) -> None:
    check_attributes(attributes)
    for key in ("id", "email"):
        if key in attributes and attributes[key] is not None:
            check_identifier(attributes[key], key)
    person = state.find(id_type, value)
    if person is None and id_type == "email":
        person = state.find("id", value)
    if person is None:
        if id_type == "cio_id":
            state.stats.ignored_unknown_cio_ids += 1
            return
        if attributes.get("_update") is True:
            return  # update-only: never creates (UNCONFIRMED, conservative)
        person = state.create(id_type, value)
    _apply_attributes(state, person, id_type, value, attributes)


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


def merge_people(state: EmulatorState, primary: Any, secondary: Any) -> None:
    """``primary``/``secondary`` are ``{<id|email|cio_id>: value}``; a missing secondary is a
    no-op; a missing primary is created (it then inherits everything)."""
    first = _one_identifier(primary, "primary")
    second = _one_identifier(secondary, "secondary")
    other = state.find(*second)
    if other is None:
        return
    person = person_for_write(state, *first)
    if person is None or person is other:
        return
    state.merge(person, other)


def _one_identifier(value: Any, field: str) -> tuple[str, str]:
    if not isinstance(value, dict) or len(value) != 1:
        raise Invalid(f"{field} must name exactly one of id, email, cio_id", field, "required")
    ((id_type, identifier),) = value.items()
    if id_type not in ("id", "email", "cio_id"):
        raise Invalid(f"{field} must name exactly one of id, email, cio_id", field)
    return id_type, check_identifier(identifier, f"{field}.{id_type}")
