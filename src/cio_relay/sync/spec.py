"""``SyncSpec``: one bulk sync, declared: where its people come from and how they are diffed.

A source is a query or table whose rows are people and whose columns are attributes:

- ``source``: ``postgresql://user@host:port/db`` (psycopg 3, a server-side cursor),
  ``sqlite:///path/to/app.db``, or a file read by DuckDB, ``path.csv`` / ``path.parquet``
  (``csv:`` or ``parquet:`` before a path whose suffix says neither);
- ``query`` or ``table`` (exactly one for a database; neither for a file, which is the table);
- ``id_column`` holds the person's identifier, of type ``id_type`` (``id``, ``email`` or
  ``cio_id``); every other column is an attribute, except ``updated_at_column``.

Modes: ``snapshot`` reads every row and diffs it against the stored hashes (added, changed,
and, at the end, removed: people synced from this source before and absent now, handled by
``removed``: ``ignore``, ``clear`` their attributes, or ``delete`` them as the repository's
``delete_user`` does); ``incremental`` reads rows with ``updated_at_column > watermark -
overlap`` (the watermark is the newest ``updated_at`` of the last completed run), the hash
still deciding what changed; it cannot see removals, so ``removed`` must stay ``ignore``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["IdType", "RemovedPolicy", "SyncMode", "SyncSpec"]

IdType = Literal["id", "email", "cio_id"]
SyncMode = Literal["snapshot", "incremental"]
RemovedPolicy = Literal["ignore", "clear", "delete"]

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class SyncSpec(BaseModel):
    """One bulk sync (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    source: str
    query: str | None = None
    table: str | None = None
    id_column: str = "id"
    id_type: IdType = "id"
    updated_at_column: str | None = None
    mode: SyncMode = "snapshot"
    #: Seconds subtracted from the watermark: rows that committed late with an older
    #: ``updated_at`` than the newest one read are still caught.
    overlap: float = Field(300.0, ge=0)
    removed: RemovedPolicy = "ignore"
    #: Rows read, planned and committed (with their checkpoint) together.
    batch_size: int = Field(1000, ge=1, le=50_000)
    #: Inside ``cio-relay run``: seconds between runs (None: only on demand).
    every: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> SyncSpec:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name: letters, digits, '_', '.', '-' (1-64), not {self.name!r}")
        if self.query is not None and self.table is not None:
            raise ValueError("give query or table, not both")
        if self.mode == "incremental" and self.updated_at_column is None:
            raise ValueError("mode incremental needs updated_at_column")
        if self.mode == "incremental" and self.removed != "ignore":
            raise ValueError(
                f"removed={self.removed!r} needs mode snapshot: an incremental run never sees"
                " which rows are gone"
            )
        return self
