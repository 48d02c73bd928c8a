"""``POST /api/v2/batch``: encode a batch under the documented limits, read its answer. Pure.

A 200 means every item was accepted. A 207 lists the refused items by ``batch_index``
(customerio-api.md §3): those are permanent validation failures; the others were accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from cio_relay import kept_json
from cio_relay.errors import LimitExceeded, RetryableError, ValidationError
from cio_relay.operations import LIMITS

from .core import parse_json, redact, request_id_of

__all__ = [
    "BATCH_ENDPOINT",
    "BATCH_PATH",
    "BatchResult",
    "ItemError",
    "encode_batch",
    "encode_batch_raw",
    "parse_batch_response",
]

BATCH_PATH = "/api/v2/batch"
BATCH_ENDPOINT = f"POST {BATCH_PATH}"
_HEAD, _TAIL = b'{"batch":[', b"]}"


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why Customer.io refused one batch item."""

    index: int
    reason: str = ""
    field: str = ""
    message: str = ""

    def __str__(self) -> str:
        parts = [part for part in (self.field, self.message, self.reason) if part]
        return f"batch item {self.index} refused: {': '.join(parts) or 'no reason given'}"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one batch request, per item: ``errors`` maps refused indices to why."""

    count: int
    status: int = 200
    errors: Mapping[int, ItemError] = field(default_factory=dict)
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        """Every item was accepted."""
        return not self.errors

    @property
    def accepted(self) -> list[int]:
        return [index for index in range(self.count) if index not in self.errors]

    def outcome(self, index: int) -> ItemError | None:
        """None when item ``index`` was accepted, else why it was refused."""
        if not 0 <= index < self.count:
            raise IndexError(f"batch item {index} out of range for a batch of {self.count}")
        return self.errors.get(index)


def encode_batch(items: Sequence[Mapping[str, Any] | bytes]) -> bytes:
    """``{"batch":[...]}`` for ``items`` (mappings, or JSON objects already serialised).

    Raises ``LimitExceeded`` before anything is sent when an item is over 32 KB or the whole
    body over 500 KB (customerio-api.md §3-4, read conservatively as 32,000 / 500,000 bytes).
    """
    if all(type(item) is dict for item in items):
        return _encode_dicts(items)  # type: ignore[arg-type]
    return encode_batch_raw([_item_bytes(index, item) for index, item in enumerate(items)])


def _encode_dicts(items: Sequence[dict[str, Any]]) -> bytes:
    """The common case, fast: one orjson call for the body (far cheaper than joining separately
    kept item encodings), and per-item sizes only when one could be too big."""
    try:
        body = orjson.dumps({"batch": items})
    except TypeError:
        return encode_batch_raw([_item_bytes(index, item) for index, item in enumerate(items)])
    if len(body) > len(_HEAD) + len(_TAIL) + LIMITS.v2_item_bytes:
        for index, item in enumerate(items):
            size = len(orjson.dumps(item))
            if size > LIMITS.v2_item_bytes:
                raise LimitExceeded(f"batch[{index}]", LIMITS.v2_item_bytes, size)
    if len(body) > LIMITS.v2_batch_bytes:
        raise LimitExceeded("batch", LIMITS.v2_batch_bytes, len(body))
    return body


def _item_bytes(index: int, item: Mapping[str, Any] | bytes) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if not isinstance(item, Mapping):
        raise ValidationError(f"batch[{index}]", f"must be an object, not {type(item).__name__}")
    try:
        return kept_json.dumps(item)  # collected for the body
    except TypeError as exc:
        raise ValidationError(f"batch[{index}]", f"is not JSON-serialisable: {exc}") from None


def encode_batch_raw(items: Sequence[bytes]) -> bytes:
    """Like ``encode_batch`` for items already serialised (each a JSON object): no re-encoding,
    only the limit checks and the join."""
    if not items:
        return _HEAD + _TAIL
    if max(map(len, items)) > LIMITS.v2_item_bytes:  # one C loop for the common case
        for index, item in enumerate(items):
            if len(item) > LIMITS.v2_item_bytes:
                raise LimitExceeded(f"batch[{index}]", LIMITS.v2_item_bytes, len(item))
    # One join makes the only large buffer: ``_HEAD + joined + _TAIL`` would copy the whole body
    # (up to the batch budget) twice more into fresh allocations.
    parts = list(items)
    parts[0] = _HEAD + parts[0]
    parts[-1] = parts[-1] + _TAIL
    body = b",".join(parts)
    if len(body) > LIMITS.v2_batch_bytes:
        raise LimitExceeded("batch", LIMITS.v2_batch_bytes, len(body))
    return body


def parse_batch_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    count: int,
    secrets: Iterable[str] = (),
) -> BatchResult:
    """The per-item result of a 2xx batch answer (non-2xx is ``classify_response``'s job).

    A 207 whose body we cannot attribute to items raises ``RetryableError``: some items may have
    been accepted, but every Track item is idempotent (identify is an upsert, events carry their
    op id as ``id``), so sending the whole batch again is safe, while guessing would either lose
    refused items or dead-letter good ones.
    """
    request_id = request_id_of(headers)
    errors = _item_errors(parse_json(body))
    if errors is None and status == 207:
        raise RetryableError(
            f"{BATCH_ENDPOINT} answered 207 without readable per-item errors; sending again",
            status=status,
            body=redact(body.decode("utf-8", "replace"), secrets),
            request_id=request_id,
            endpoint=BATCH_ENDPOINT,
        )
    # A 200 with non-empty "errors" is not documented (UNCONFIRMED); if one ever comes, we honour
    # the errors it lists rather than acknowledge refused items as delivered.
    return BatchResult(count, status, errors or {}, request_id)


def _item_errors(doc: Any) -> dict[int, ItemError] | None:
    """Refused items by index; None when ``doc`` is not an errors list we can attribute."""
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list) or not doc["errors"]:
        return None
    errors: dict[int, ItemError] = {}
    for entry in doc["errors"]:
        index = entry.get("batch_index") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool):
            return None
        error = ItemError(
            index,
            str(entry.get("reason") or ""),
            str(entry.get("field") or ""),
            str(entry.get("message") or ""),
        )
        if index in errors:  # several problems with one item: keep them all
            first = errors[index]
            error = ItemError(
                index,
                first.reason or error.reason,
                first.field or error.field,
                "; ".join(m for m in (first.message, error.message) if m),
            )
        errors[index] = error
    return errors
