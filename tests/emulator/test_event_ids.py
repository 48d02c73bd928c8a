"""Event ids: a ULID (Crockford base32, 26 characters, the first at most 7), any case."""

from __future__ import annotations

from typing import Any

import pytest

from cio_relay.emulator.limits import Invalid, check_event_id


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("01JD0000000000000000000123", "01JD0000000000000000000123"),
        ("01jd0000000000000000000abc", "01JD0000000000000000000ABC"),
        ("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"),
        ("00000000000000000000000000", "00000000000000000000000000"),
        (None, None),
    ],
)
def test_ulids_are_accepted_in_upper_case(value: str | None, stored: str | None) -> None:
    assert check_event_id(value) == stored


@pytest.mark.parametrize(
    "value",
    [
        "81JD0000000000000000000123",  # over 128 bits
        "01JD000000000000000000012I",  # I, L, O and U are not Crockford base32
        "01JD000000000000000000012l",
        "01JD000000000000000000012o",
        "01JD000000000000000000012u",
        "01JD00000000000000000001-3",
        "01JD000000000000000000012ß",  # upper-cases to two letters
        "01JD000000000000000000012\u017f",  # the long s upper-cases to S
        "01JD00000000000000000000A\n",  # 26 characters with a line end
        "01JD00000000000000000000\uff11\uff12",  # full-width digits
        "01JD00000000000000000001",
        "",
        5,
    ],
)
def test_anything_else_is_refused(value: Any) -> None:
    with pytest.raises(Invalid, match="valid ULID"):
        check_event_id(value)
