"""``MemoryOutbox``: the reference semantics of the ``Outbox`` protocol, in process memory.

For tests and for reading: every backend must behave like this one (the contract suite and a
property test compare them). Nothing here is durable; ``enqueue`` returning means "in this dict".

Model, shared with the SQLite backend so that both agree on every answer:

- Each operation gets a sequence number at enqueue; each person has a FIFO queue of them.
- Only a person's head (oldest operation) can be leased. A head is *due* at ``due_at``: its
  ``available_at`` (enqueue time, or the ``retry_at`` of its last retry) when not leased, its
  ``lease_until`` when leased (an expired lease is due again). ``lease`` hands out due heads
  ordered by ``(due_at, seq)``: the work that has been due the longest goes first.
- ``attempts`` of a ``DeadLetter`` counts delivery attempts made, including the one that led to
  dead-lettering, except for ``max_age`` and ``invalid``, which are decided before sending.
- ``Depth``: ``leased`` and ``scheduled`` count heads (leased until / retrying after ``now``);
  ``ready`` is every other pending operation, including those queued behind a busy head.
- ``Depth.oldest_waiting_age`` is the age (since ``created_at``) of the pending operation that
  was enqueued first; a replayed dead letter counts as enqueued at its replay.
- An op id is remembered while the operation is pending or dead-lettered; once acked (delivered)
  and gone, the same id may be enqueued again (the outbox does not keep tombstones forever;
  Customer.io de-duplicates Track events by their id anyway).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cio_relay.clock import now_or
from cio_relay.operations import Operation
from cio_relay.outbox.base import (
    EVERY_DEAD_LETTER,
    SENDING_MARK,
    DeadLetter,
    DeadLetterFilter,
    DeadReason,
    Depth,
    Lease,
    dead_attempts,
    new_lease_token,
)

__all__ = ["MemoryOutbox"]


@dataclass(slots=True)
class _Entry:
    op: Operation
    seq: int
    available_at: float
    attempts: int = 0
    last_error: str | None = None
    token: str | None = None
    lease_until: float = 0.0

    @property
    def due_at(self) -> float:
        return self.lease_until if self.token is not None else self.available_at


@dataclass(slots=True)
class _Dead:
    letter: DeadLetter
    seq: int  # tie-breaker for "newest first" among equal dead_at


class MemoryOutbox:
    """The ``Outbox`` protocol in memory: one lock, per-person FIFO queues, a dead-letter dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}  # op_id -> pending entry
        self._queues: dict[str, deque[_Entry]] = {}  # person_key -> FIFO, head first
        self._dead: dict[str, _Dead] = {}
        self._seq = 0
        self._closed = False

    # --- writing ------------------------------------------------------------------------------

    def enqueue(self, ops: Sequence[Operation]) -> int:
        # Check every element before touching state: a bad element stores nothing.
        batch = list(ops)
        for op in batch:
            if not isinstance(op, Operation):
                raise TypeError(f"enqueue takes Operations, not {type(op).__name__}")
        with self._lock:
            now = now_or(None)
            added = 0
            for op in batch:
                if op.op_id in self._entries or op.op_id in self._dead:
                    continue
                self._append(op, now)
                added += 1
            return added

    def _append(self, op: Operation, available_at: float) -> None:
        self._seq += 1
        entry = _Entry(op, self._seq, available_at)
        self._entries[op.op_id] = entry
        self._queues.setdefault(op.person_key, deque()).append(entry)

    def _remove(self, entry: _Entry) -> None:
        del self._entries[entry.op.op_id]
        queue = self._queues[entry.op.person_key]
        queue.remove(entry)
        if not queue:
            del self._queues[entry.op.person_key]

    def _held(self, lease: Lease) -> _Entry | None:
        """The entry ``lease`` still holds, or None if its lease was taken over or it is gone."""
        entry = self._entries.get(lease.op.op_id)
        if entry is None or entry.token != lease.token:
            return None
        return entry

    # --- leasing ------------------------------------------------------------------------------

    def lease(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[Lease]:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        if limit <= 0:
            return []
        with self._lock:
            now = now_or(now)
            heads = [queue[0] for queue in self._queues.values() if queue[0].due_at <= now]
            heads.sort(key=lambda entry: (entry.due_at, entry.seq))
            token = new_lease_token()
            until = now + lease_seconds
            leases = []
            for entry in heads[:limit]:
                entry.token = token
                entry.lease_until = until
                leases.append(Lease(entry.op, token, entry.attempts, until, entry.last_error))
            return leases

    def ack(self, leases: Iterable[Lease]) -> None:
        with self._lock:
            for lease in leases:
                entry = self._entries.get(lease.op.op_id)
                if entry is not None:
                    self._remove(entry)

    def release(
        self, leases: Iterable[Lease], *, delay: float = 0.0, now: float | None = None
    ) -> None:
        not_before = now_or(now) + delay if delay > 0 else 0.0
        with self._lock:
            for lease in leases:
                entry = self._held(lease)
                if entry is not None:
                    entry.token = None
                    entry.available_at = max(entry.available_at, not_before)

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        until = now_or(now) + lease_seconds
        with self._lock:
            for lease in leases:
                entry = self._held(lease)
                if entry is not None:
                    entry.lease_until = max(entry.lease_until, until)

    def mark_sending(self, lease: Lease) -> None:
        with self._lock:
            entry = self._held(lease)
            if entry is not None:
                entry.last_error = SENDING_MARK

    def retry_later(
        self, lease: Lease, *, retry_at: float, error: str, now: float | None = None
    ) -> None:
        with self._lock:
            entry = self._held(lease)
            if entry is None:
                return
            entry.token = None
            entry.attempts += 1
            entry.last_error = error
            entry.available_at = retry_at

    def dead_letter(
        self, lease: Lease, reason: DeadReason, detail: str, *, now: float | None = None
    ) -> None:
        with self._lock:
            entry = self._held(lease)
            if entry is None:
                return
            self._remove(entry)
            self._seq += 1
            attempts = dead_attempts(entry.attempts, reason)
            letter = DeadLetter(entry.op, DeadReason(reason), detail, attempts, now_or(now))
            self._dead[entry.op.op_id] = _Dead(letter, self._seq)

    # --- dead letters -------------------------------------------------------------------------

    def _matching(self, where: DeadLetterFilter, now: float) -> list[_Dead]:
        found = [dead for dead in self._dead.values() if where.matches(dead.letter, now)]
        found.sort(key=lambda dead: (dead.letter.dead_at, dead.seq), reverse=True)
        return found

    def list_dead(
        self,
        where: DeadLetterFilter = EVERY_DEAD_LETTER,
        *,
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> list[DeadLetter]:
        with self._lock:
            found = self._matching(where, now_or(now))
            return [dead.letter for dead in found[max(offset, 0) : max(offset, 0) + limit]]

    def count_dead(
        self, where: DeadLetterFilter = EVERY_DEAD_LETTER, *, now: float | None = None
    ) -> int:
        with self._lock:
            return len(self._matching(where, now_or(now)))

    def replay(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        with self._lock:
            now = now_or(now)
            # Oldest dead letter first, so that one person's replayed operations keep their order.
            found = self._matching(where, now)[::-1]
            for dead in found:
                del self._dead[dead.letter.op.op_id]
                self._append(dead.letter.op, now)
            return len(found)

    def purge(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        with self._lock:
            found = self._matching(where, now_or(now))
            for dead in found:
                del self._dead[dead.letter.op.op_id]
            return len(found)

    # --- inspection ---------------------------------------------------------------------------

    def depth(self, *, now: float | None = None) -> Depth:
        with self._lock:
            now = now_or(now)
            leased = scheduled = 0
            for queue in self._queues.values():
                head = queue[0]
                if head.due_at > now:
                    if head.token is not None:
                        leased += 1
                    else:
                        scheduled += 1
            first = min(self._entries.values(), key=lambda entry: entry.seq, default=None)
            oldest = None if first is None else first.op.created_at
            return Depth(
                ready=len(self._entries) - leased - scheduled,
                scheduled=scheduled,
                leased=leased,
                dead=len(self._dead),
                oldest_waiting_age=None if oldest is None else max(0.0, now - oldest),
            )

    def close(self) -> None:
        self._closed = True
