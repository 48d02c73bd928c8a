"""The library API refuses what the ingestion API refuses (issue 11): nothing is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cio_relay import AsyncRelay, Relay, Settings
from cio_relay.errors import ValidationError
from cio_relay.outbox.memory import MemoryOutbox

CALLS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "nan-in-event-data": (lambda r: r.track("u1", "paid", {"x": float("nan")}), "data.x"),
    "infinity-attribute": (lambda r: r.identify("u1", score=float("inf")), "attributes.score"),
    "unicode-broadcast-id": (lambda r: r.trigger_broadcast("²"), "broadcast_id"),
    "dot-dot-person": (lambda r: r.track("..", "paid"), "identifier.id"),
    "crlf-email-header": (
        lambda r: r.send_email(
            to="a@x.test", transactional_message_id=1, headers={"X-A": "1\r\nBcc: b@x.test"}
        ),
        "headers.X-A",
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_relay_raises_validation_error_naming_the_field_and_stores_nothing(call: str) -> None:
    outbox = MemoryOutbox()
    relay = Relay(Settings(), outbox=outbox)
    build, field = CALLS[call]
    with pytest.raises(ValidationError) as caught:
        build(relay)
    assert caught.value.field == field
    assert outbox.depth().pending == 0


async def test_async_relay_refuses_the_same() -> None:
    outbox = MemoryOutbox()
    relay = AsyncRelay(Settings(), outbox=outbox)
    try:
        with pytest.raises(ValidationError) as caught:
            await relay.track("u1", "paid", {"items": [{"price": float("-inf")}]})
    finally:
        await relay.aclose()
    assert caught.value.field == "data.items[0].price"
    assert outbox.depth().pending == 0
