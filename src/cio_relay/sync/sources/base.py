"""The ``Source`` protocol: the rows of a bulk sync, in key order, a batch at a time.

A source yields ``SourceRow``s ordered by the identifier column (keyset pagination: a run
resumes from its checkpoint's last key with ``after=``), in lists of ``batch_size``. Values are
already converted to what JSON carries (``attribute_value``); a value that cannot be is kept as
an ``Unconvertible`` so the row is reported invalid (id, column, reason) instead of stopping
the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Source", "SourceRow", "Unconvertible"]


@dataclass(frozen=True, slots=True)
class Unconvertible:
    """A column value JSON cannot carry (bytes, say): the row is reported, not sent."""

    reason: str


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One person: ``key`` is the identifier column's value as the source orders it (int or
    str; its ``str`` is the identifier sent), ``attributes`` every other column (None for SQL
    NULL), ``updated_at`` the updated-at column in Unix seconds (None when not named)."""

    key: Any
    attributes: dict[str, Any]
    updated_at: float | None = None


class Source(Protocol):
    """Where a bulk sync's rows come from (module docstring)."""

    #: For reports and logs: the source without any password.
    description: str

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        """Rows with key > ``after`` (None: from the first) and, when ``since`` is given,
        updated-at > ``since``, ordered by key, in lists of at most ``batch_size``."""
        ...

    def close(self) -> None: ...
