"""Customer.io's documented limits, and the checks that measure a value against them.

A violation is a ``LimitExceeded`` naming the field, the limit and the size (design.md contract
5), raised while the operation is built, so that nothing over a limit is ever stored. Sizes are
UTF-8 bytes; a value that is not text is measured as the JSON it will travel as
(``json_values.dumps``, which also refuses what JSON cannot carry, naming where it is).

The v2 limit of 32 KB per item is not checked here: an operation whose v2 item is larger travels
alone on the v1 API, whose per-attribute and per-event limits it has already met.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cio_relay import json_values
from cio_relay.errors import LimitExceeded, ValidationError

__all__ = [
    "LIMITS",
    "Limits",
    "check_attachments",
    "check_attributes",
    "check_bytes",
    "check_event_data",
    "check_recipients",
    "json_size",
    "utf8_size",
]


class Limits:
    """Documented Customer.io limits (customerio-api.md §4, §5). "< 32 KB" is taken as 32,000 bytes
    and "< 500 KB" as 500,000: the conservative reading of the docs."""

    identifier_bytes = 150
    attribute_name_bytes = 150
    attribute_value_bytes = 1000
    attributes_per_call = 300
    relationships_bytes = 100_000
    event_name_bytes = 100
    event_data_bytes = 100_000
    v2_item_bytes = 32_000
    v2_batch_bytes = 500_000
    recipients = 15
    attachments_bytes = 2_000_000
    segment_ids_per_call = 1000  # add_customers / remove_customers: "1000 customer IDs"


LIMITS = Limits()
#: A name of at most this many characters is within the name limit whatever they are (a
#: character is at most 4 UTF-8 bytes).
_NAME_CHARS_ALWAYS_WITHIN = LIMITS.attribute_name_bytes // 4

_dumps = json_values.dumps


def utf8_size(value: str) -> int:
    # A str of n code points is at most 4n UTF-8 bytes: skip the encode when it cannot matter.
    return len(value) if value.isascii() else len(value.encode())


def json_size(value: Any, field_name: str, key: str | None = None) -> int:
    """The size of ``value`` as JSON; ``ValidationError`` for what JSON cannot carry as given
    (``json_values.dumps``), under ``field_name`` (and ``key``)."""
    if isinstance(value, str):
        return utf8_size(value)
    return len(_dumps(value, field_name, key))


def check_bytes(field_name: str, value: str, limit: int) -> None:
    size = utf8_size(value)
    if size > limit:
        raise LimitExceeded(field_name, limit, size)


def check_attributes(attributes: Mapping[str, Any], field_name: str = "attributes") -> None:
    """At most 300 attributes, names of at most 150 bytes, values of at most 1000 bytes
    (``cio_relationships``: 100,000)."""
    if len(attributes) > LIMITS.attributes_per_call:
        raise LimitExceeded(field_name, LIMITS.attributes_per_call, len(attributes), "attributes")
    for name in attributes:
        if not isinstance(name, str) or not name:
            raise ValidationError(
                field_name, f"attribute names must be non-empty strings: {name!r}"
            )
        if len(name) > _NAME_CHARS_ALWAYS_WITHIN:  # a short name cannot be past the limit
            check_bytes(f"{field_name} name {name[:40]!r}", name, LIMITS.attribute_name_bytes)
    # One serialisation refuses what JSON cannot carry (naming the attribute); when the whole
    # is within a value's limit, no value can be past it, and measuring each is skipped.
    if len(_dumps(dict(attributes), field_name)) <= LIMITS.attribute_value_bytes:
        return
    for name, value in attributes.items():
        limit = (
            LIMITS.relationships_bytes
            if name == "cio_relationships"
            else LIMITS.attribute_value_bytes
        )
        size = json_size(value, field_name, name)
        if size > limit:
            raise LimitExceeded(f"{field_name}.{name}", limit, size)


def check_event_data(data: dict[str, Any]) -> None:
    """An event's data, as JSON, is at most 100,000 bytes."""
    size = len(_dumps(data, "data"))  # data is a dict: no json_size step (hot path)
    if size > LIMITS.event_data_bytes:
        raise LimitExceeded("data", LIMITS.event_data_bytes, size)


def _recipient_count(value: Any) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, str):
        return len([part for part in value.split(",") if part.strip()])
    if isinstance(value, list):
        return len(value)
    raise ValidationError("to", "must be a string or a list of strings")


def check_recipients(to: Any, cc: Any, bcc: Any) -> None:
    """At most 15 recipients across ``to``, ``cc`` and ``bcc`` (given as lists or as
    comma-separated text)."""
    total = sum(_recipient_count(value) for value in (to, cc, bcc))
    if total > LIMITS.recipients:
        raise LimitExceeded("to", LIMITS.recipients, total, "recipients")


def check_attachments(attachments: Any) -> None:
    """An object of filename -> base64 content; each filename has an extension, and the
    contents add up to less than 2 MB."""
    if not isinstance(attachments, Mapping):
        raise ValidationError("attachments", "must be an object of filename -> base64 content")
    for filename in attachments:
        if "." not in str(filename):
            raise ValidationError("attachments", f"filename {filename!r} needs an extension")
    attached = sum(utf8_size(str(content)) for content in attachments.values())
    if attached > LIMITS.attachments_bytes:
        raise LimitExceeded("attachments", LIMITS.attachments_bytes, attached)
