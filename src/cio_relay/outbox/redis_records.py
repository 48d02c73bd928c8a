"""What the Redis outbox writes for each operation and reads back (see ``redis.py`` for the design).

- A *record* is the operation minus its op id (the hash field it is stored under): kind,
  ``created_at``, environment, identifiers and payload as one JSON array.
- A *bucket* is the second of an operation's ``created_at``: pending operations are counted per
  second (``T:age_count``/``T:age_min``), which is how ``depth`` finds the oldest age without a
  scan. Scripts that add operations take, per call, the number of buckets and each bucket with
  the oldest ``created_at`` in it (``oldest_by_bucket``).
- A *lease token* is ``"<consumer> <stream entry id>"``: who holds the lease, and which entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from cio_relay import kept_json
from cio_relay.operations import Kind, Operation, new_operation

__all__ = [
    "bucket",
    "chunks",
    "decode",
    "encode",
    "note_oldest",
    "oldest_args",
    "oldest_by_bucket",
    "split_token",
    "text",
]

_KINDS = {kind.value: kind for kind in Kind}
_KIND_VALUES = {kind: kind.value for kind in Kind}


def encode(op: Operation) -> bytes:
    record = [_KIND_VALUES[op.kind], op.created_at, op.env, op.identifiers, op.payload]
    return kept_json.dumps(record)  # a batch of records is kept until sent


def decode(op_id: bytes, record: bytes) -> Operation:
    # What was stored was validated when it was built: no builder runs again here.
    kind, created_at, env, identifiers, payload = orjson.loads(record)
    return new_operation(op_id.decode(), _KINDS[kind], identifiers, payload, created_at, env)


def bucket(created_at: float) -> str:
    """The second of ``created_at``: pending ops are counted per second for the oldest age."""
    return str(int(created_at))


def oldest_by_bucket(ops: Iterable[Operation]) -> list[Any]:
    """The buckets of ``ops`` for the scripts that add operations: their count, then each
    bucket with the oldest ``created_at`` in it."""
    oldest: dict[str, float] = {}
    for op in ops:
        note_oldest(oldest, bucket(op.created_at), op.created_at)
    return oldest_args(oldest)


def note_oldest(oldest: dict[str, float], bucket: str, created_at: float) -> None:
    seen = oldest.get(bucket)
    if seen is None or created_at < seen:
        oldest[bucket] = created_at


def oldest_args(oldest: dict[str, float]) -> list[Any]:
    return [len(oldest), *(v for item in oldest.items() for v in (item[0], repr(item[1])))]


def split_token(token: str) -> tuple[str, str] | None:
    """A lease token's (consumer, stream entry id), or None if it is not one of ours."""
    consumer, _, entry_id = token.rpartition(" ")
    ms, _, seq = entry_id.partition("-")
    if not consumer or not ms.isdigit() or not seq.isdigit():
        return None
    return consumer, entry_id


def text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
