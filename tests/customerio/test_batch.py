"""``/api/v2/batch`` encoding (limits before the wire) and per-item answers (200, 207)."""

from __future__ import annotations

import orjson
import pytest

from cio_relay.customerio import (
    BatchResult,
    ItemError,
    encode_batch,
    encode_batch_raw,
    parse_batch_response,
)
from cio_relay.errors import LimitExceeded, RetryableError, ValidationError

ITEM = {"type": "person", "action": "identify", "identifiers": {"id": "u1"}, "attributes": {}}


def _item_of_size(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    padding = size - len(b'{"p":""}')
    item = b'{"p":"' + b"x" * padding + b'"}'
    assert len(item) == size
    return item


def test_encode_wraps_items_in_a_batch_object() -> None:
    body = encode_batch([ITEM, {"type": "person", "action": "delete", "identifiers": {"id": "2"}}])
    assert orjson.loads(body)["batch"][0] == ITEM
    assert len(orjson.loads(body)["batch"]) == 2


def test_raw_items_encode_to_the_same_bytes_as_mappings() -> None:
    items = [ITEM, {"type": "person", "action": "event", "name": "é"}]
    assert encode_batch_raw([orjson.dumps(i) for i in items]) == encode_batch(items)
    assert encode_batch([orjson.dumps(ITEM), ITEM]) == encode_batch([ITEM, ITEM])


def test_a_batch_of_exactly_500000_bytes_is_allowed_and_one_more_byte_is_not() -> None:
    envelope = len(b'{"batch":[]}')
    items = [_item_of_size(30_000) for _ in range(16)]
    used = envelope + sum(map(len, items)) + 16  # 16 commas once the last item joins
    items.append(_item_of_size(500_000 - used))
    assert len(encode_batch_raw(items)) == 500_000
    items[-1] = _item_of_size(500_000 - used + 1)
    with pytest.raises(LimitExceeded) as caught:
        encode_batch_raw(items)
    assert caught.value.field == "batch"
    assert caught.value.limit == 500_000
    assert caught.value.size == 500_001
    assert "500001 bytes exceeds the limit of 500000" in str(caught.value)


def test_an_item_over_32kb_is_refused_by_index() -> None:
    with pytest.raises(LimitExceeded) as caught:
        encode_batch([ITEM, {"p": "x" * 32_000}])
    assert caught.value.field == "batch[1]"
    assert caught.value.limit == 32_000


def test_an_item_that_is_not_json_is_refused_by_index() -> None:
    with pytest.raises(ValidationError, match=r"batch\[0\]"):
        encode_batch([{"when": object()}])
    with pytest.raises(ValidationError, match="must be an object"):
        encode_batch(["not an object"])  # type: ignore[list-item]


def test_200_means_every_item_was_accepted() -> None:
    result = parse_batch_response(200, {"X-Request-Id": "r1"}, b"{}", count=3)
    assert result.ok
    assert result.accepted == [0, 1, 2]
    assert result.request_id == "r1"
    assert result.outcome(2) is None


def test_207_maps_refused_items_by_batch_index() -> None:
    body = orjson.dumps(
        {
            "errors": [
                {"batch_index": 1, "reason": "invalid", "field": "name", "message": "too long"},
                {"batch_index": 3, "reason": "required", "field": "identifiers", "message": "x"},
            ]
        }
    )
    result = parse_batch_response(207, {}, body, count=4)
    assert not result.ok
    assert result.status == 207
    assert result.accepted == [0, 2]
    assert result.errors[1] == ItemError(1, "invalid", "name", "too long")
    assert result.outcome(3) == ItemError(3, "required", "identifiers", "x")
    assert str(result.errors[1]) == "batch item 1 refused: name: too long: invalid"


def test_207_with_two_errors_for_one_item_keeps_both_messages() -> None:
    body = orjson.dumps(
        {"errors": [{"batch_index": 0, "message": "a"}, {"batch_index": 0, "message": "b"}]}
    )
    assert parse_batch_response(207, {}, body, count=1).errors[0].message == "a; b"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>oops</html>",
        b'{"errors":[]}',
        b'{"errors":[{"reason":"no index"}]}',
        b'{"errors":[{"batch_index":"1"}]}',
        b'{"errors":[{"batch_index":true}]}',
        b"[]",
    ],
)
def test_an_unattributable_207_is_retryable(body: bytes) -> None:
    # Items may have partly succeeded, but Track items are idempotent: sending again is safe.
    with pytest.raises(RetryableError) as caught:
        parse_batch_response(207, {"x-request-id": "r9"}, body, count=2)
    assert caught.value.status == 207
    assert caught.value.request_id == "r9"
    assert caught.value.endpoint == "POST /api/v2/batch"


def test_a_200_that_lists_errors_is_not_taken_as_all_accepted() -> None:
    body = b'{"errors":[{"batch_index":0,"reason":"invalid"}]}'
    assert parse_batch_response(200, {}, body, count=2).accepted == [1]


def test_outcome_outside_the_batch_is_an_index_error() -> None:
    with pytest.raises(IndexError):
        BatchResult(2).outcome(2)
