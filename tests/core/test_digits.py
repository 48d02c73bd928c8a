"""``whole_number``: ASCII digits only, bounded length; everything else is None, never a raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cio_relay.digits import DEFAULT_MAX_DIGITS, whole_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("42", 42), ("007", 7), (b"12", 12), ("9" * 18, 10**18 - 1)],
)
def test_ascii_digits_are_read(text: str | bytes, expected: int) -> None:
    assert whole_number(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        b"",
        "²",  # str.isdigit() is true for it; int() refuses it
        "١٢",  # Arabic-Indic digits: int() would read 12
        "\uff11\uff12",  # full-width digits
        "-1",
        "+1",
        " 1",
        "1 ",
        "1_000",
        "1.0",
        "0x10",
        "5" * 5000,  # int() refuses past 4,300 digits
        "1" * (DEFAULT_MAX_DIGITS + 1),
        "١٢".encode(),
    ],
)
def test_anything_else_is_refused(text: str | bytes | None) -> None:
    assert whole_number(text) is None


def test_the_digit_bound_is_a_parameter() -> None:
    assert whole_number("12345", max_digits=5) == 12345
    assert whole_number("123456", max_digits=5) is None


@given(st.text(max_size=30))
def test_any_text_gives_an_int_or_none_and_never_raises(text: str) -> None:
    value = whole_number(text)
    if value is None:
        assert not (text.isascii() and text.isdigit() and 0 < len(text) <= DEFAULT_MAX_DIGITS)
    else:
        assert str(value) == text.lstrip("0") or (value == 0 and set(text) == {"0"})


@given(st.integers(min_value=0, max_value=10**DEFAULT_MAX_DIGITS - 1))
def test_every_number_in_range_round_trips(value: int) -> None:
    assert whole_number(str(value)) == value
