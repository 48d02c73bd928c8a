"""Checks of what callers give the builders, beyond the size limits (``limits``).

Each refusal is a ``ValidationError`` naming the field, raised before anything is stored: a
person named exactly once and in a way a URL can carry, event names, timestamps, device tokens,
email headers, the person a send is about, broadcast ids.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cio_relay.digits import DEFAULT_MAX_DIGITS, whole_number
from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations.limits import LIMITS, check_bytes, utf8_size
from cio_relay.operations.model import IDENTIFIER_TYPES, Identifiers, PersonRef

__all__ = [
    "NOT_PHONE",
    "PLATFORMS",
    "Timestamp",
    "broadcast_number",
    "check_event_name",
    "check_platform",
    "check_relationship_list",
    "check_relationships",
    "check_sms_recipient",
    "check_token",
    "check_transactional",
    "checked_mapping",
    "person_identifiers",
    "recipients_text",
    "transactional_identifiers",
    "unix_seconds",
    "wire_headers",
]

#: A point in time as the builders take it: Unix seconds, or a datetime with a time zone.
Timestamp = int | float | datetime
PLATFORMS = ("ios", "android")

#: A v1 request names a person (and a device) by a path segment, and "." or ".." there would
#: name another resource: URL normalisation removes them, also when written as %2E (RFC 3986
#: sections 2.3 and 5.2.4), so no encoding carries them. The official SDKs encode segments
#: (``quote(id, safe="")``, ``encodeURIComponent``), which leaves dots as they are.
_DOT_SEGMENTS = frozenset({".", ".."})
_NOT_AN_ID = "must be a non-empty string other than '.' and '..' (which cannot travel in a URL)"


#: The identifiers a transactional send, a merge or a v1 path can name a person by: ``phone`` is
#: only documented for the person items of ``/api/v2`` (track-api.json ``person_common``).
NOT_PHONE = ("id", "email", "cio_id")
#: A phone number as the documents give it: E.164, a leading ``+`` and up to 15 digits.
_E164 = re.compile(r"\+[1-9][0-9]{0,14}")
_NOT_E164 = "must be an E.164 phone number: '+' and up to 15 digits, like +14155552671"


def person_identifiers(
    person: PersonRef,
    field_name: str = "identifier",
    allowed: tuple[str, ...] = IDENTIFIER_TYPES,
) -> Identifiers:
    """``person`` as ``{id_type: value}``: exactly one of ``allowed`` (id, email, phone, cio_id),
    that a URL path segment can carry. Only ``id`` has a documented size, 150 bytes; a ``phone``
    is E.164."""
    if isinstance(person, str):
        id_type, value = "id", person
    else:
        ids = {k: v for k, v in person.items() if v not in (None, "")}
        if len(ids) != 1 or next(iter(ids)) not in allowed:
            raise ValidationError(
                field_name, f"give exactly one of {', '.join(allowed)}; got {sorted(ids)}"
            )
        ((id_type, value),) = ids.items()
    if not isinstance(value, str) or not value.strip() or value in _DOT_SEGMENTS:
        raise ValidationError(f"{field_name}.{id_type}", _NOT_AN_ID)
    if id_type == "id":
        size = utf8_size(value)  # the field's name is only formatted for an error (hot path)
        if size > LIMITS.identifier_bytes:
            raise LimitExceeded(f"{field_name}.{id_type}", LIMITS.identifier_bytes, size)
    elif id_type == "phone" and _E164.fullmatch(value) is None:
        raise ValidationError(f"{field_name}.phone", _NOT_E164)
    return {id_type: value}


def check_sms_recipient(to: Any) -> None:
    """An SMS or WhatsApp ``to`` is required: an E.164 number, or Liquid that renders one
    (``{{customer.phone}}``), as track-api.json's ``sendsms`` documents it."""
    if not isinstance(to, str) or not to.strip():
        raise ValidationError("to", "the recipient's phone number is required")
    if "{{" not in to and _E164.fullmatch(to) is None:
        raise ValidationError("to", _NOT_E164 + " (or Liquid such as {{customer.phone}})")


def checked_mapping(values: Any, field_name: str) -> dict[str, Any]:
    """A copy of ``values`` (the caller's dict is never kept), which must be an object."""
    if type(values) is not dict and not isinstance(values, Mapping):
        raise ValidationError(field_name, f"must be an object, not {type(values).__name__}")
    return dict(values)


def check_event_name(name: str) -> str:
    """An event's name as sent: stripped of surrounding white space, at most 100 bytes."""
    if not isinstance(name, str) or not (stripped := name.strip()):
        raise ValidationError("name", "an event name is required")
    check_bytes("name", stripped, LIMITS.event_name_bytes)
    return stripped


#: JSON integers past 2**53 lose precision in most readers; no Unix time needs them.
_MAX_UNIX_SECONDS = 2**53
_TIMESTAMP = "must be Unix seconds (a number from 0 to 2**53) or a datetime with a time zone"


def unix_seconds(value: Any, field_name: str) -> int:
    """A point in time in whole Unix seconds.

    Takes a number of seconds, or a ``datetime`` with a time zone. A naive datetime is refused
    rather than guessed at: whether it meant UTC or the server's local time cannot be told, and
    a wrong guess silently shifts the event by hours. Text is refused, not parsed.
    """
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValidationError(
                field_name,
                "a datetime without a time zone is ambiguous; give one with tzinfo "
                "(datetime.now(timezone.utc)) or Unix seconds",
            )
        value = value.timestamp()
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= _MAX_UNIX_SECONDS
    ):
        return int(value)
    raise ValidationError(field_name, f"{_TIMESTAMP}; got {_described_time(value)}")


def check_token(token: str) -> None:
    if not isinstance(token, str) or not token:
        raise ValidationError("token", "a device token is required")
    if token in _DOT_SEGMENTS:  # a path segment of DELETE .../devices/{token}
        raise ValidationError("token", _NOT_AN_ID)


def check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise ValidationError(
            "platform", f"must be one of {', '.join(PLATFORMS)}, not {platform!r}"
        )


#: An email header's name is an RFC 9110 token; a CR or LF in a name or value would start a
#: header of the caller's choosing in the message Customer.io sends (header injection). The
#: documents add: "names and values must be strings, with no non-ASCII characters or spaces".
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]*")
_HEADERS_SHAPE = "must be an object of name -> value, or a list of {'name': ..., 'value': ...}"


def _header_pairs(headers: Any) -> list[tuple[Any, Any]]:
    if isinstance(headers, str):  # already the JSON text the documents describe
        try:
            headers = json.loads(headers)
        except ValueError:
            raise ValidationError(
                "headers", f"{_HEADERS_SHAPE}; got text that is not JSON"
            ) from None
    if isinstance(headers, Mapping):
        return list(headers.items())
    if isinstance(headers, list) and all(
        isinstance(entry, Mapping) and set(entry) == {"name", "value"} for entry in headers
    ):
        return [(entry["name"], entry["value"]) for entry in headers]
    raise ValidationError("headers", _HEADERS_SHAPE)


def wire_headers(headers: Any) -> str:
    """Email headers as the documents send them (track-api.json ``headers``): a JSON string of a
    list of ``{"name", "value"}`` objects. Takes that, the list itself, or a dict of name ->
    value."""
    pairs = _header_pairs(headers)
    for name, value in pairs:
        if not isinstance(name, str) or _HEADER_NAME.fullmatch(name) is None:
            raise ValidationError(
                "headers", f"header name {name!r:.60} is not a token (RFC 9110 section 5.6.2)"
            )
        if not isinstance(value, str):
            raise ValidationError(f"headers.{name}", f"must be text, not {type(value).__name__}")
        if _HEADER_VALUE.fullmatch(value) is None:
            raise ValidationError(
                f"headers.{name}", "must be ASCII without spaces or control characters"
            )
    return json.dumps([{"name": name, "value": value} for name, value in pairs])


def recipients_text(value: Any, field_name: str) -> str:
    """``to``, ``cc`` or ``bcc`` as the documents send them: one string of addresses separated
    by commas. A list of addresses is joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(part, str) for part in value):
        return ",".join(part.strip() for part in value)
    raise ValidationError(field_name, "must be a string or a list of strings")


_RELATIONSHIP_ACTIONS = ("add_relationships", "delete_relationships")


def check_relationships(value: Any, field_name: str = "attributes.cio_relationships") -> None:
    """v1's ``cio_relationships``: ``{"action": add_relationships | delete_relationships,
    "relationships": [{"identifiers": {object_type_id, object_id} | {cio_object_id},
    "relationship_attributes": {...}}]}`` (track-api.json ``v1_cio_relationships``)."""
    if not isinstance(value, Mapping):
        raise ValidationError(field_name, "must be an object with action and relationships")
    action = value.get("action", "add_relationships")
    if action not in _RELATIONSHIP_ACTIONS:
        raise ValidationError(
            f"{field_name}.action", f"must be one of {', '.join(_RELATIONSHIP_ACTIONS)}"
        )
    check_relationship_list(value.get("relationships"), f"{field_name}.relationships")


def check_relationship_list(value: Any, field_name: str) -> None:
    """A list of relationships to objects (track-api.json ``object_relationships``)."""
    if not isinstance(value, list) or not value:
        raise ValidationError(field_name, "must be a non-empty list of relationships")
    for index, relationship in enumerate(value):
        where = f"{field_name}[{index}]"
        ids = relationship.get("identifiers") if isinstance(relationship, Mapping) else None
        if not isinstance(ids, Mapping) or not _names_an_object(ids):
            raise ValidationError(
                f"{where}.identifiers", "give object_type_id and object_id, or cio_object_id"
            )
        extra = relationship.get("relationship_attributes")
        if extra is not None and not isinstance(extra, Mapping):
            raise ValidationError(f"{where}.relationship_attributes", "must be an object")


def _names_an_object(ids: Mapping[str, Any]) -> bool:
    if set(ids) == {"cio_object_id"}:
        return isinstance(ids["cio_object_id"], str) and bool(ids["cio_object_id"])
    return set(ids) == {"object_type_id", "object_id"} and all(
        isinstance(ids[key], str) and ids[key] for key in ids
    )


def transactional_identifiers(given: Mapping[str, str] | None, to: Any) -> Identifiers:
    """The person a send is about: ``given``, or for one plain recipient address that address
    as ``{"email": ...}``. Customer.io refuses a send without one (customerio-api.md §5), so it
    is refused here, before anything is stored. Sends name a person by id, email or cio_id
    (track-api.json ``transactionalSharedObject``)."""
    if given:
        return person_identifiers(given, "identifiers", NOT_PHONE)
    if isinstance(to, str) and "," not in to:
        _name, address = email.utils.parseaddr(to)
        if "@" in address:
            return {"email": address}
    raise ValidationError(
        "identifiers",
        "required: give {'id': ...}, {'email': ...} or {'cio_id': ...} for the person this "
        "message is about (it may be left out only when 'to' is one email address)",
    )


def check_transactional(fields: dict[str, Any], *, template_required: bool = False) -> None:
    """A send names a template, or (an email only) carries its own body, subject and sender."""
    if fields.get("transactional_message_id") in (None, "") and (
        template_required or not all(fields.get(name) for name in ("body", "subject", "from"))
    ):
        raise ValidationError(
            "transactional_message_id",
            "give a transactional_message_id"
            + ("" if template_required else ", or body, subject and from for an email without one"),
        )
    data = fields.get("message_data")
    if data is not None and not isinstance(data, Mapping):
        raise ValidationError("message_data", f"must be an object, not {type(data).__name__}")


_MAX_BROADCAST_ID = 10**DEFAULT_MAX_DIGITS


def broadcast_number(broadcast_id: int | str) -> int:
    """A broadcast id as Customer.io's path takes it: a whole number, given as an int or as
    ASCII digits (``digits.whole_number``: "²" and "١٢" are not numbers here)."""
    number: int | None = None
    if isinstance(broadcast_id, str):
        number = whole_number(broadcast_id)
    elif isinstance(broadcast_id, int) and not isinstance(broadcast_id, bool):
        # Checked by value: str() of an int past 4,300 digits raises.
        number = broadcast_id if 0 <= broadcast_id < _MAX_BROADCAST_ID else None
    if number is None:
        raise ValidationError(
            "broadcast_id",
            f"must be a whole number of 1 to {DEFAULT_MAX_DIGITS} ASCII digits; "
            f"got {_described(broadcast_id)}",
        )
    return number


def _described(value: Any) -> str:
    """A refused value in an error: text cut short, with its length; an int by its sign (str()
    of an int past 4,300 digits raises); anything else by its type."""
    if isinstance(value, str):
        return f"{value!r:.40} ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        return "a negative number" if value < 0 else "a number of more digits"
    return type(value).__name__


def _described_time(value: Any) -> str:
    """A refused timestamp in an error: a number as written, unless too long to write."""
    if isinstance(value, float | bool) or (isinstance(value, int) and value.bit_length() < 64):
        return repr(value)
    return _described(value)
