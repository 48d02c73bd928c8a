"""The one ASGI body reader: whole bodies, the cap before and while reading, disconnects, and
the one 413 body."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from starlette.types import Message, Receive

from cio_relay.asgi_body import TooLarge, read_body


def _receiving(messages: Sequence[Message]) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)  # past the end: IndexError, so a test sees any read too many

    return receive


def _body(chunk: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": chunk, "more_body": more}


async def test_a_body_in_one_message_is_returned_as_is() -> None:
    chunk = b"abcd"
    assert await read_body(_receiving([_body(chunk)]), 100) is chunk


async def test_a_body_in_several_messages_is_joined_and_may_fill_the_cap() -> None:
    chunked = _receiving([_body(b"ab", more=True), _body(b"", more=True), _body(b"cd")])
    assert await read_body(chunked, 4) == b"abcd"


async def test_a_disconnect_before_the_end_is_none() -> None:
    gone = _receiving([_body(b"ab", more=True), {"type": "http.disconnect"}])
    assert await read_body(gone, 100) is None


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    assert await read_body(_receiving([]), 100, declared=101) == TooLarge(100, 101)


async def test_a_body_that_grows_past_the_cap_is_refused_without_reading_on() -> None:
    growing = _receiving([_body(b"x" * 60, more=True), _body(b"x" * 60, more=True)])
    assert await read_body(growing, 100, declared=None) == TooLarge(100, None)


async def test_a_declared_length_under_the_cap_does_not_lift_the_cap_while_reading() -> None:
    lying = _receiving([_body(b"x" * 60, more=True), _body(b"x" * 60)])
    assert await read_body(lying, 100, declared=10) == TooLarge(100, None)


@pytest.mark.parametrize(
    ("refusal", "message"),
    [
        (TooLarge(100, 2_000), "body: 2000 bytes exceeds the limit of 100 bytes"),
        (TooLarge(100), "body: larger than the limit of 100 bytes"),
    ],
)
def test_the_413_body_is_the_api_error_shape(refusal: TooLarge, message: str) -> None:
    answer = orjson.loads(refusal.json())
    assert answer.pop("size", None) == refusal.size
    assert answer == {
        "error": "too_large",
        "message": message,
        "field": "body",
        "limit": 100,
        "unit": "bytes",
    }
