"""``RowShape``: which column of a source's result is the key, which the updated-at, which are
attributes, checked once when the source opens and then applied to every row.

Every source reads its result's column names first (a query that returns no row) and builds a
``RowShape``; an id or updated-at column the result does not have, or two columns with one
name, is a ``ConfigError`` then, before any row is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cio_relay.errors import ConfigError
from cio_relay.sync.sources.base import SourceRow, Unconvertible
from cio_relay.sync.sources.values import AS_IS, attribute_value, updated_at_seconds
from cio_relay.sync.spec import SyncSpec

__all__ = ["RowShape", "quoted", "since_column", "statement_text"]

#: Column names shown in an error, at most.
_SHOWN_COLUMNS = 20


@dataclass(frozen=True, slots=True)
class RowShape:
    """The positions of a result's key, updated-at and attribute columns."""

    columns: tuple[str, ...]
    key_index: int
    updated_at_index: int | None
    attributes: tuple[tuple[int, str], ...]
    #: What a key may be (a source with column types checks them at open instead).
    key_types: tuple[type, ...] = (int, str)

    @classmethod
    def of(
        cls, columns: Sequence[str], spec: SyncSpec, *, key_types: tuple[type, ...] = (int, str)
    ) -> RowShape:
        """The shape of a result with ``columns``; ``ConfigError`` naming the field and value
        for an id or updated-at column it lacks, or for a name used twice."""
        columns = tuple(columns)
        twice = sorted(name for name, count in Counter(columns).items() if count > 1)
        if twice:
            raise ConfigError(
                f"source: the result has more than one column named {', '.join(twice)};"
                " give each column its own name (AS ...)"
            )
        key_index = _position(columns, "id_column", spec.id_column)
        updated_at_index = (
            None
            if spec.updated_at_column is None
            else _position(columns, "updated_at_column", spec.updated_at_column)
        )
        attributes = tuple(
            (index, name)
            for index, name in enumerate(columns)
            if index != key_index and index != updated_at_index
        )
        return cls(columns, key_index, updated_at_index, attributes, key_types)

    def row(self, values: Sequence[Any]) -> SourceRow:
        """One result row as a ``SourceRow`` (see ``SourceRow`` for a key of the wrong type)."""
        # AS_IS first: most cells are text or NULL, and this runs for every cell of a run.
        attributes = {
            name: value if type(value := values[index]) in AS_IS else attribute_value(value)
            for index, name in self.attributes
        }
        key = values[self.key_index]
        if not isinstance(key, self.key_types) or isinstance(key, bool):
            reason = f"an identifier is an integer or text, not {type(key).__name__} {key!r:.40}"
            attributes[self.columns[self.key_index]] = Unconvertible(reason)
        if self.updated_at_index is None:
            return SourceRow(key=key, attributes=attributes)
        seconds = updated_at_seconds(values[self.updated_at_index])
        if isinstance(seconds, Unconvertible):
            attributes[self.columns[self.updated_at_index]] = seconds
            seconds = None
        return SourceRow(key=key, attributes=attributes, updated_at=seconds)


def _position(columns: tuple[str, ...], field: str, name: str) -> int:
    try:
        return columns.index(name)
    except ValueError:
        shown = ", ".join(columns[:_SHOWN_COLUMNS]) + (
            " ..." if len(columns) > _SHOWN_COLUMNS else ""
        )
        raise ConfigError(
            f"{field}: {name!r} is not a column of the source; its columns are: {shown}"
        ) from None


def statement_text(text: str) -> str:
    """A user's query as the inside of a subquery: without the trailing semicolons."""
    return text.strip().rstrip(";").rstrip()


def quoted(name: str) -> str:
    """``name`` as an SQL identifier (SQLite, DuckDB): in double quotes, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def since_column(spec: SyncSpec) -> str:
    """The updated-at column ``since=`` filters on; ``ConfigError`` when the spec names none."""
    if spec.updated_at_column is None:
        raise ConfigError("updated_at_column: since= filters on it, and the spec names none")
    return spec.updated_at_column
