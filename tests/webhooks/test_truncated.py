"""Reading an event's fields from the beginning of a body cut at the storage cap."""

from __future__ import annotations

import orjson
import pytest

from cio_relay.webhooks.truncated import leading_fields

DOCUMENT = {
    "metric": "sent",
    "event_id": "01E4C4CT6YDC7Y5M7FE1GWWPQJ",
    "object_type": "email",
    "timestamp": 1613063089,
    "data": {
        "customer_id": "u1",
        "identifiers": {"id": "u1", "email": "ü@example.com"},
        "delivery_id": "d1",
        "action_id": 1234,
        "content": "<p>" + "é" * 500 + "</p>",
    },
}
BODY = orjson.dumps(DOCUMENT)


def test_a_whole_body_gives_every_field() -> None:
    assert leading_fields(BODY) == DOCUMENT


@pytest.mark.parametrize("cut", range(1, len(BODY), 7))
def test_every_cut_gives_only_whole_members_in_order(cut: int) -> None:
    found = leading_fields(BODY[:cut])
    assert found is not None
    for key, value in found.items():
        if key == "data":
            whole = DOCUMENT["data"]
            assert isinstance(whole, dict)
            assert all(whole[k] == v for k, v in value.items())
        else:
            assert DOCUMENT[key] == value  # never a number or string cut short


def test_a_cut_number_is_dropped_not_kept_wrong() -> None:
    body = b'{"event_id":"e1","timestamp":1613063089'
    assert leading_fields(body[:-3]) == {"event_id": "e1"}


def test_the_content_cut_keeps_the_identifiers_before_it() -> None:
    found = leading_fields(BODY[: BODY.index(b'"content"') + 30])
    assert found is not None
    assert found["data"] == {
        "customer_id": "u1",
        "identifiers": {"id": "u1", "email": "ü@example.com"},
        "delivery_id": "d1",
        "action_id": 1234,
    }


@pytest.mark.parametrize("prefix", [b"", b"   ", b"[1,2", b'"text', b"not json"])
def test_what_does_not_begin_an_object_gives_no_fields(prefix: bytes) -> None:
    assert leading_fields(prefix) in (None, {})
