"""The record of a bulk sync run: its checkpoint, its counts and the rows it could not send.

A ``SyncRun`` is saved with every batch it commits (in the same transaction as the batch's
people and outbox rows), so after a crash the record says exactly how far the run got:
``last_key`` is the key of the last row whose change is safely in the outbox, and a run still
``running`` is resumed from there by the next ``run`` of the same sync.

Rows that break Customer.io's limits are kept as ``RowError`` (person, field, limit, size, the
message), the first ``ERRORS_KEPT`` of a run; ``invalid`` counts them all. Such a row's state is
not recorded, so the next run tries it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cio_relay.operations.ids import new_op_id

__all__ = ["ERRORS_KEPT", "RowError", "RunStatus", "SourceMark", "SyncRun", "next_run_id"]

#: Per run: enough to find the pattern; the count says how many there were.
ERRORS_KEPT = 1000

#: How far before an invalid row's updated-at the watermark is held.
_BEFORE = 0.001

RunStatus = Literal["running", "completed", "failed"]


@dataclass(frozen=True, slots=True)
class RowError:
    """One row the run could not send: who, which field, the limit and the size when a limit
    was crossed (None otherwise), and the message."""

    person: str
    field: str
    message: str
    limit: int | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class SourceMark:
    """The bulk sync that last read a person (``name``) and in which run: a snapshot run marks
    every person it reads, so those of ``name`` not marked with its run are the removed ones.
    Within a sync a mark only moves forward (run ids sort by their start): when two runs of one
    sync overlap, the later one's marks stand, and the earlier one never takes a person the
    later one read for removed. ``SourceMark(None, None)`` detaches a person from every sync."""

    name: str | None
    run_id: str | None


@dataclass(frozen=True, slots=True)
class SyncRun:
    """One run of a bulk sync (module docstring). Times are Unix seconds; ``since`` is the
    updated-at bound it read from (incremental), ``watermark`` the bound the next incremental
    run starts from (``watermark``)."""

    run_id: str
    name: str
    mode: str
    started_at: float
    status: RunStatus = "running"
    finished_at: float | None = None
    since: float | None = None
    last_key: Any = None
    newest_read: float | None = None
    oldest_invalid: float | None = None
    horizon: float | None = None
    rows_read: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    invalid: int = 0
    removed: int = 0
    operations: int = 0
    errors: tuple[RowError, ...] = field(default_factory=tuple)
    error: str | None = None

    @property
    def watermark(self) -> float | None:
        """Where the next incremental run reads from (before its overlap): the newest
        updated-at read (or carried from the last completed run), but never past

        - the ``horizon``, the source's newest updated-at when the run first started: a row
          behind the run's position that changed while it ran (or before it resumed) has a
          later updated-at, so the next run reads it;
        - just before the oldest invalid row's, so that row is read, and tried, again."""
        bounds = [t for t in (self.newest_read, self.horizon) if t is not None]
        if self.oldest_invalid is not None:
            bounds.append(self.oldest_invalid - _BEFORE)
        if self.newest_read is None:
            return None if self.oldest_invalid is None else min(bounds)
        return min(bounds)

    def with_errors(self, errors: list[RowError]) -> SyncRun:
        """This run with ``errors`` counted, the first ``ERRORS_KEPT`` kept."""
        room = max(0, ERRORS_KEPT - len(self.errors))
        return replace(
            self, invalid=self.invalid + len(errors), errors=(*self.errors, *errors[:room])
        )

    def to_json(self) -> dict[str, Any]:
        return {
            name: [vars_of(e) for e in self.errors] if name == "errors" else getattr(self, name)
            for name in self.__dataclass_fields__
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncRun:
        errors = tuple(RowError(**e) for e in data.get("errors", ()))
        return cls(**{**data, "errors": errors})


def vars_of(error: RowError) -> dict[str, Any]:
    return {name: getattr(error, name) for name in error.__dataclass_fields__}


#: Crockford's base32, in order: the digits of a ULID.
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def next_run_id(previous: str | None) -> str:
    """A new run id (a ULID) that sorts after ``previous``, the sync's last run: two runs
    started in one millisecond would otherwise sort by their random bits (SourceMark)."""
    candidate = new_op_id()
    if previous is None or candidate > previous:
        return candidate
    digits = list(previous)
    for index in range(len(digits) - 1, -1, -1):
        position = _DIGITS.index(digits[index])
        if position + 1 < len(_DIGITS):
            digits[index] = _DIGITS[position + 1]
            return "".join(digits)
        digits[index] = _DIGITS[0]
    raise ValueError(f"no run id sorts after {previous!r}")
