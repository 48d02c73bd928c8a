"""The documented Track limits as the server enforces them, with Customer.io's error strings.

Messages quoted from D-INV (customerio-api.md §4) are kept word for word so that clients
matching on them see what production sends; the others follow the same style and add the size
that was given. Every check raises ``Invalid`` naming the field.

Sizes: a string is measured as its UTF-8 bytes, anything else as its JSON encoding.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from cio_relay.kept_json import right_sized

__all__ = [
    "ATTRIBUTES_PER_CALL",
    "ATTRIBUTE_NAME_BYTES",
    "ATTRIBUTE_VALUE_BYTES",
    "BATCH_BYTES",
    "EVENT_DATA_BYTES",
    "EVENT_NAME_BYTES",
    "IDENTIFIER_BYTES",
    "NESTED_TOO_DEEPLY",
    "RELATIONSHIPS_BYTES",
    "UPPER_ULID",
    "V2_ITEM_BYTES",
    "CheckedEvent",
    "Invalid",
    "check_attributes",
    "check_event",
    "check_identifier",
    "json_size",
    "utf8_size",
]

IDENTIFIER_BYTES = 150
ATTRIBUTE_NAME_BYTES = 150
ATTRIBUTE_VALUE_BYTES = 1000
RELATIONSHIPS_BYTES = 100_000
ATTRIBUTES_PER_CALL = 300
EVENT_NAME_BYTES = 100
EVENT_DATA_BYTES = 100_000
# "< 32 KB" and "< 500 KB" (customerio-api.md §3), read as the stricter decimal figures.
V2_ITEM_BYTES = 32_000
BATCH_BYTES = 500_000
# Choices a JSON value is checked against are tuples: membership compares and never hashes, so
# a list or an object where a name belongs is refused like any wrong name, not a TypeError.
EVENT_TYPES = ("event", "page", "screen")

# An event id as the relay sends it: a ULID in upper case (Crockford base32: no I, L, O, U;
# the first character at most 7, 128 bits). One C-level match is the cheapest full check.
UPPER_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")

# JSON scalars whose encoding is at most 24 bytes (orjson keeps integers within 64 bits).
_SCALARS = frozenset({int, float, bool, type(None)})


#: A body parses (JSON allows any depth) but a value in it cannot be stored or measured.
NESTED_TOO_DEEPLY = "a value is nested too deeply"


class Invalid(Exception):
    """A request Customer.io refuses: ``message`` is what the client is told."""

    def __init__(self, message: str, field: str = "", reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason


def utf8_size(value: str) -> int:
    # A UTF-8 character is at most 4 bytes: short strings need no encoding to be judged.
    return len(value) if value.isascii() else len(value.encode())


def json_size(value: Any) -> int:
    if type(value) is str:
        return utf8_size(value)
    return len(orjson.dumps(value))


def check_identifier(value: Any, field: str = "id", *, capped: bool = True) -> str:
    """An identifier value: a non-empty string (or number). ``capped``: at most 150 bytes, the
    documented limit of a person's ``id`` and an object's id; an email, ``cio_id``, phone or
    ``anonymous_id`` has no documented length limit, so callers pass ``capped=False``."""
    if type(value) is str:  # the hot path
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise Invalid(f"{field} must be a string", field, "invalid_type")
    if not text:
        raise Invalid("id attribute must be present", field, "required")
    if capped and len(text) > IDENTIFIER_BYTES // 4 and utf8_size(text) > IDENTIFIER_BYTES:
        raise Invalid(
            f"{field} cannot be longer than {IDENTIFIER_BYTES} bytes (was {utf8_size(text)})",
            field,
            "too_long",
        )
    return text


def check_attributes(attributes: Any, field: str = "attributes") -> dict[str, Any]:
    if not isinstance(attributes, dict):
        raise Invalid(f"{field} must be an object", field, "invalid_type")
    if len(attributes) > ATTRIBUTES_PER_CALL:
        raise Invalid(
            f"cannot identify more than {ATTRIBUTES_PER_CALL} attributes in one request",
            field,
            "too_many",
        )
    for name, value in attributes.items():
        if len(name) > ATTRIBUTE_NAME_BYTES // 4 and utf8_size(name) > ATTRIBUTE_NAME_BYTES:
            raise Invalid(
                f"attribute name cannot be longer than {ATTRIBUTE_NAME_BYTES} bytes",
                f"{field}.{name[:40]}",
                "too_long",
            )
        kind = type(value)
        if kind in _SCALARS or (kind is str and len(value) <= ATTRIBUTE_VALUE_BYTES // 4):
            continue  # the hot path: numbers, booleans, null, short strings cannot be too long
        limit = RELATIONSHIPS_BYTES if name == "cio_relationships" else ATTRIBUTE_VALUE_BYTES
        if json_size(value) > limit:
            raise Invalid(
                f"value for attribute '{name}' cannot be longer than {limit} bytes",
                f"{field}.{name}",
                "too_long",
            )
    return attributes


def check_event_id(value: Any) -> str | None:
    """Event ``id``: a ULID when given. Customer.io rejects other ids (customerio-ruby PR #136)
    but its error text is UNCONFIRMED; this one says what is wrong and what is expected."""
    if value is None:
        return None
    if type(value) is str:
        if UPPER_ULID.fullmatch(value):
            return value  # the hot path: already in upper case, as the relay sends them
        # Any case, stored in upper case. ASCII only: str.upper maps a few other letters onto
        # Crockford ones (the long s onto S).
        if value.isascii() and UPPER_ULID.fullmatch(upper := value.upper()):
            return upper
    raise Invalid("event id must be a valid ULID (26 characters, Crockford base32)", "id")


CheckedEvent = tuple[str, str, str | None, int | float | None, bytes]
_NUMBERS = (int, float)


def check_event(
    body: dict[str, Any], data_keys: tuple[str, ...] = ("data",), event_type: str | None = None
) -> CheckedEvent:
    """(name, type, id, timestamp, properties as JSON) of an event, or ``Invalid``.

    ``data_keys`` are where the properties may be: v1 uses ``data``; v2 accepts ``attributes``
    and ``data`` because which one is canonical is UNCONFIRMED (customerio-api.md §3).
    ``event_type`` is given by v2 (its action); v1 reads the body's ``type``.
    """
    name = body.get("name")
    if type(name) is not str or not (name := name.strip()):  # Customer.io trims names (§2)
        raise Invalid("event name must be present", "name", "required")
    if len(name) > EVENT_NAME_BYTES // 4 and utf8_size(name) > EVENT_NAME_BYTES:
        raise Invalid(
            f"event name cannot be longer than {EVENT_NAME_BYTES} bytes", "name", "too_long"
        )
    event_type = event_type or body.get("type") or "event"
    if event_type not in EVENT_TYPES:
        raise Invalid("event type must be one of event, page, screen", "type")
    encoded = orjson.dumps(_event_properties(body, data_keys))
    if len(encoded) > EVENT_DATA_BYTES:
        raise Invalid(
            f"event data cannot be longer than {EVENT_DATA_BYTES} bytes",
            data_keys[0],
            "too_long",
        )
    timestamp = body.get("timestamp")
    if timestamp is not None and type(timestamp) not in _NUMBERS:
        raise Invalid("event timestamp must be a unix timestamp in seconds", "timestamp")
    return name, event_type, check_event_id(body.get("id")), timestamp, right_sized(encoded)


def _event_properties(body: dict[str, Any], data_keys: tuple[str, ...]) -> dict[str, Any]:
    merged: dict[str, Any] | None = None
    for key in data_keys:
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not dict:
            raise Invalid("event data must be an object", key, "invalid_type")
        merged = value if merged is None else {**value, **merged}
    return {} if merged is None else merged
