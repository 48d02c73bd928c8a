"""Column values as JSON carries them, for every source alike.

``attribute_value`` turns what a database driver returns into a Customer.io attribute value;
``updated_at_seconds`` reads the updated-at column; ``since_parameter`` is ``since`` as a
source compares it with that column. A value JSON cannot carry becomes an ``Unconvertible``
(the row is reported, not sent), never an exception: one bad cell must not stop a long run.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from cio_relay.sync.sources.base import Unconvertible

__all__ = ["AS_IS", "SinceAs", "attribute_value", "since_parameter", "updated_at_seconds"]

#: How ``since`` is compared with an updated-at column: as an aware datetime (a column with a
#: time zone), a naive UTC one (timestamp without zone, date), or a number of seconds.
SinceAs = Literal["aware", "naive", "seconds"]

#: The integers orjson writes; past them it refuses, so they are reported here instead.
_JSON_INTS = range(-(2**63), 2**64)
#: Types whose every value JSON carries as it is: most cells, answered by one set lookup.
AS_IS = frozenset({str, bool, type(None)})


def attribute_value(value: Any) -> Any:
    """``value`` as JSON carries it, or ``Unconvertible(reason)``.

    None, bool, int, finite float and str as they are; a datetime in Unix seconds (int, a naive
    one read as UTC); a date as ``YYYY-MM-DD``; a Decimal as int when integral, else float; a
    UUID as its str; a dict (str keys) or list with each value converted. Anything else (bytes,
    intervals, NaN, infinity, integers past 64 bits ...) is ``Unconvertible``.
    """
    if type(value) in AS_IS or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if value in _JSON_INTS else Unconvertible("integer beyond 64 bits")
    if isinstance(value, float):
        return value if math.isfinite(value) else Unconvertible(f"non-finite number {value}")
    if isinstance(value, datetime):
        return math.floor(_as_utc(value).timestamp())
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _decimal_value(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return _mapping_value(value)
    if isinstance(value, list):
        return _list_value(value)
    if isinstance(value, Unconvertible):  # a driver's loader already said why
        return value
    return Unconvertible(f"{type(value).__name__} has no JSON form")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _decimal_value(number: Decimal) -> Any:
    if not number.is_finite():
        return Unconvertible(f"non-finite number {number}")
    if number == number.to_integral_value():
        return attribute_value(int(number))
    return float(number)


def _mapping_value(mapping: dict[Any, Any]) -> Any:
    converted: dict[str, Any] = {}
    for key, item in mapping.items():
        if not isinstance(key, str):
            return Unconvertible(f"object key {key!r} is not a string")
        value = attribute_value(item)
        if isinstance(value, Unconvertible):
            return Unconvertible(f"{key}: {value.reason}")
        converted[key] = value
    return converted


def _list_value(items: list[Any]) -> Any:
    converted: list[Any] = []
    for index, item in enumerate(items):
        value = attribute_value(item)
        if isinstance(value, Unconvertible):
            return Unconvertible(f"[{index}]: {value.reason}")
        converted.append(value)
    return converted


def updated_at_seconds(value: Any) -> float | Unconvertible | None:
    """The updated-at column in Unix seconds: a datetime (naive is UTC), a date (its midnight
    UTC), a number of seconds, or an ISO 8601 text (SQLite keeps timestamps as text)."""
    if isinstance(value, datetime):  # the common case first: it runs for every row
        return _as_utc(value).timestamp()
    if value is None:
        return None
    if isinstance(value, bool):
        return Unconvertible("a boolean is not a time")
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else Unconvertible(f"non-finite time {value}")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return Unconvertible(f"{value[:40]!r} is not an ISO 8601 time")
    if isinstance(value, datetime):
        return _as_utc(value).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, Unconvertible):
        return value
    return Unconvertible(f"{type(value).__name__} is not a time")


def since_parameter(since: float, since_as: SinceAs) -> Any:
    """``since`` (Unix seconds) as a query parameter for an updated-at column ``since_as``."""
    if since_as == "seconds":
        return since
    moment = datetime.fromtimestamp(since, UTC)
    # A time without zone holds UTC (updated_at_seconds reads it so): compare it as UTC, not
    # through the session's time zone.
    return moment if since_as == "aware" else moment.replace(tzinfo=None)
