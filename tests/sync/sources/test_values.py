"""``attribute_value``, ``updated_at_seconds`` and ``without_password``: pure conversions."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from cio_relay.sync.sources import Unconvertible, attribute_value, without_password
from cio_relay.sync.sources.values import since_parameter, updated_at_seconds

PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (2**64 - 1, 2**64 - 1),
        (1.25, 1.25),
        ("text", "text"),
        (datetime(2026, 1, 1, 1, 0, 0, 900_000, tzinfo=PARIS_WINTER), 1767225600),
        (datetime(2026, 1, 1), 1767225600),  # naive is UTC
        (datetime(1969, 12, 31, 23, 59, 59, 500_000), -1),  # floor, not towards zero
        (date(2026, 2, 3), "2026-02-03"),
        (Decimal("42.000"), 42),
        (Decimal("-0.5"), -0.5),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"a": [1, Decimal("2"), {"b": date(2026, 1, 1)}]}, {"a": [1, 2, {"b": "2026-01-01"}]}),
    ],
)
def test_values_json_carries(value: Any, expected: Any) -> None:
    converted = attribute_value(value)

    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00", "bytes has no JSON form"),
        (memoryview(b"\x00"), "memoryview has no JSON form"),
        (float("nan"), "non-finite number nan"),
        (float("-inf"), "non-finite number -inf"),
        (Decimal("Infinity"), "non-finite number Infinity"),
        (Decimal("1e30"), "integer beyond 64 bits"),
        (2**64, "integer beyond 64 bits"),
        (timedelta(days=1), "timedelta has no JSON form"),
        (time(12, 0), "time has no JSON form"),
        ((1, 2), "tuple has no JSON form"),
        ({"a": {"b": [1, b"x"]}}, "a: b: [1]: bytes has no JSON form"),
        ({1: "x"}, "object key 1 is not a string"),
    ],
)
def test_values_json_cannot_carry_are_unconvertible(value: Any, reason: str) -> None:
    assert attribute_value(value) == Unconvertible(reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (100, 100.0),
        (Decimal("100.5"), 100.5),
        (datetime(1970, 1, 1, 0, 1, 40), 100.0),
        (datetime(1970, 1, 1, 1, 1, 40, tzinfo=PARIS_WINTER), 100.0),
        (date(1970, 1, 2), 86400.0),
        ("1970-01-01 00:01:40.25", 100.25),
        ("1970-01-01T00:01:40Z", 100.0),
        ("soon", Unconvertible("'soon' is not an ISO 8601 time")),
        (True, Unconvertible("a boolean is not a time")),
        (float("nan"), Unconvertible("non-finite time nan")),
        (b"1", Unconvertible("bytes is not a time")),
    ],
)
def test_updated_at_in_unix_seconds(value: Any, expected: Any) -> None:
    assert updated_at_seconds(value) == expected


def test_since_as_a_parameter_for_each_column_kind() -> None:
    assert since_parameter(100.5, "seconds") == 100.5
    assert since_parameter(100.5, "aware") == datetime(1970, 1, 1, 0, 1, 40, 500_000, tzinfo=UTC)
    assert since_parameter(100.5, "naive") == datetime(1970, 1, 1, 0, 1, 40, 500_000)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pw@db:5432/crm", "postgresql://app@db:5432/crm"),
        ("postgresql://:pw@db/crm", "postgresql://@db/crm"),
        ("postgresql://app:p%40w:d@db/crm", "postgresql://app@db/crm"),
        (
            "postgresql://db/crm?sslmode=require&password=pw&PASSWORD=pw",
            "postgresql://db/crm?sslmode=require",
        ),
        ("postgresql://app@db/crm", "postgresql://app@db/crm"),
        ("sqlite:///app.db", "sqlite:///app.db"),
        ("people.csv", "people.csv"),
        ("postgresql://app:pw@[::1/crm", "postgresql://..."),
    ],
)
def test_without_password(url: str, shown: str) -> None:
    assert without_password(url) == shown
