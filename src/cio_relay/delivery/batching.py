"""Pack Track operations into ``/api/v2/batch`` requests by a byte budget (contract 7).

Pure: takes items already serialised (so each is measured once) and returns groups whose
``{"batch":[...]}`` envelope stays under the budget. The budget sits below Customer.io's 500 KB
so headers and rounding never push a request over.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["ENVELOPE_BYTES", "pack"]

T = TypeVar("T")
ENVELOPE_BYTES = len(b'{"batch":[]}')


def pack(items: Iterable[tuple[T, bytes]], budget: int) -> Iterator[list[tuple[T, bytes]]]:
    """Group ``(tag, item_bytes)`` pairs, in order, into batches of at most ``budget`` bytes."""
    batch: list[tuple[T, bytes]] = []
    size = ENVELOPE_BYTES
    for tag, item in items:
        cost = len(item) + (1 if batch else 0)  # the comma
        if batch and size + cost > budget:
            yield batch
            batch, size, cost = [], ENVELOPE_BYTES, len(item)
        batch.append((tag, item))
        size += cost
    if batch:
        yield batch
