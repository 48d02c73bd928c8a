"""``MemorySource``: rows held in a list (tests, and apps that already have their people in
memory): the ``Source`` protocol's in-memory version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cio_relay.sync.sources.base import SourceRow

__all__ = ["MemorySource"]


class MemorySource:
    """``rows`` in key order, filtered and batched as a database source does (base.py)."""

    description = "memory"

    def __init__(self, rows: Iterable[SourceRow]) -> None:
        self.rows = sorted(rows, key=lambda row: row.key)
        #: The ``after`` of each ``batches`` call: where each run started reading.
        self.started_after: list[Any] = []

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        self.started_after.append(after)
        chosen = [
            row
            for row in self.rows
            if (after is None or row.key > after)
            and (since is None or (row.updated_at is not None and row.updated_at > since))
        ]
        for start in range(0, len(chosen), batch_size):
            yield chosen[start : start + batch_size]

    def newest_updated_at(self) -> float | None:
        return max((r.updated_at for r in self.rows if r.updated_at is not None), default=None)

    def close(self) -> None:
        """Nothing to release."""
