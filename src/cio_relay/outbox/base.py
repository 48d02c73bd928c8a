"""The ``Outbox`` protocol: the durable, idempotent queue between callers and the dispatcher.

Contracts (design.md 1-3) every backend keeps, checked by one parametrized suite
(``tests/outbox/test_contract.py``):

- ``enqueue`` returns only once the operations are durable, and stores an ``op_id`` once however
  often it is enqueued (idempotent). Either all of a call's operations are stored or none.
- ``lease`` hands out, for each person, only the oldest operation that is neither delivered nor
  dead-lettered, and only when it is due (``available_at``) and not leased by someone else whose
  lease is still running. So operations for one person go out one at a time, in enqueue order,
  and a person whose head is waiting to retry holds up nobody else (no head-of-line blocking).
- A lease expires after ``lease_seconds``; the work is then leased again (a worker died). A
  worker that is still busy with its leases ``extend``s them (a heartbeat), so leases can be
  short and a dead worker's work is taken over within one lease time. The ``token`` of a lease
  makes a late worker's ``retry_later``/``dead_letter``/``extend`` harmless once its lease was
  taken over. ``ack`` always applies: a delivered operation is done.
- Operations leave only by ``ack`` (delivered) or ``dead_letter`` (with a reason); dead letters
  stay until purged, and ``replay`` puts them back with their op ids unchanged.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cio_relay.operations import Operation

__all__ = [
    "EVERY_DEAD_LETTER",
    "NO_ATTEMPT_REASONS",
    "SENDING_MARK",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadReason",
    "Depth",
    "Lease",
    "Outbox",
    "dead_attempts",
    "new_lease",
    "new_lease_token",
]


class DeadReason(StrEnum):
    """Why an operation was dead-lettered; the ``detail`` string says the rest in words."""

    PERMANENT = "permanent"  # a 4xx other than 408/429: the response body is the detail
    BATCH_ITEM = "batch_item"  # one item of a 207 batch answer was refused
    AMBIGUOUS = "ambiguous"  # a non-idempotent send may or may not have happened
    MAX_ATTEMPTS = "max_attempts"
    MAX_AGE = "max_age"
    INVALID = "invalid"  # could not be turned into a request (a bug or a schema change)


@dataclass(frozen=True, slots=True)
class Lease:
    """An operation handed to one worker until ``lease_until``."""

    op: Operation
    token: str
    attempts: int  # delivery attempts made before this lease
    lease_until: float
    last_error: str | None = None


_new_object = object.__new__
_set_op, _set_token, _set_attempts, _set_lease_until, _set_last_error = (
    vars(Lease)[name].__set__ for name in ("op", "token", "attempts", "lease_until", "last_error")
)


def new_lease(
    op: Operation, token: str, attempts: int, lease_until: float, last_error: str | None = None
) -> Lease:
    """``Lease(...)`` for the backends' ``lease``: setting the slots directly is about twice as
    fast as the frozen dataclass's ``__init__`` (see ``operations.new_operation``)."""
    lease: Lease = _new_object(Lease)
    _set_op(lease, op)
    _set_token(lease, token)
    _set_attempts(lease, attempts)
    _set_lease_until(lease, lease_until)
    _set_last_error(lease, last_error)
    return lease


@dataclass(frozen=True, slots=True)
class DeadLetter:
    op: Operation
    reason: DeadReason
    detail: str
    attempts: int
    dead_at: float


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters ``list_dead``/``replay``/``purge`` act on; empty means all.

    ``op_ids`` picks exact operations; ``older_than`` is an age in seconds at ``now``.
    """

    op_ids: tuple[str, ...] = ()
    kind: str | None = None
    reason: str | None = None
    older_than: float | None = None

    def matches(self, dead: DeadLetter, now: float) -> bool:
        return (
            (not self.op_ids or dead.op.op_id in self.op_ids)
            and (self.kind is None or dead.op.kind.value == self.kind)
            and (self.reason is None or dead.reason.value == self.reason)
            and (self.older_than is None or now - dead.dead_at >= self.older_than)
        )


@dataclass(frozen=True, slots=True)
class Depth:
    """How much is in the outbox, by state."""

    ready: int  # waiting and due now (includes leases that have expired)
    scheduled: int  # waiting for a retry time in the future
    leased: int
    dead: int
    oldest_waiting_age: float | None  # seconds since the oldest not-yet-delivered op was created

    @property
    def pending(self) -> int:
        """Everything not yet delivered nor dead: what backpressure counts."""
        return self.ready + self.scheduled + self.leased


#: ``last_error`` of an operation whose send was started by a worker that never reported back.
#: Dead-letter reasons decided before anything was sent: the final lease made no attempt.
NO_ATTEMPT_REASONS = frozenset({DeadReason.MAX_AGE, DeadReason.INVALID})


#: The empty filter: every dead letter (a module constant so defaults are not rebuilt per call).
EVERY_DEAD_LETTER = DeadLetterFilter()


def dead_attempts(attempts_before: int, reason: DeadReason) -> int:
    """Attempts recorded on a dead letter: those counted so far, plus the final lease's own."""
    return attempts_before if reason in NO_ATTEMPT_REASONS else attempts_before + 1


def new_lease_token() -> str:
    return secrets.token_hex(8)


SENDING_MARK = "sending: a worker started writing this request and never reported the outcome"


@runtime_checkable
class Outbox(Protocol):
    """Durable queue of Operations. All methods are thread-safe; ``now`` is for tests."""

    def enqueue(self, ops: Sequence[Operation]) -> int:
        """Store ``ops`` durably; return how many were new (duplicates by op_id are skipped)."""

    def lease(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[Lease]:
        """Up to ``limit`` due operations, at most one per person, oldest first."""

    def ack(self, leases: Iterable[Lease]) -> None:
        """Delivered: remove them for good."""

    def release(
        self, leases: Iterable[Lease], *, delay: float = 0.0, now: float | None = None
    ) -> None:
        """Give leases back untouched: due again after ``delay`` seconds, no attempt counted.

        ``delay=0`` is shutdown (due at once); a positive ``delay`` is the dispatcher deferring
        work whose API family is saturated by its rate limit, so it is not leased again at once.
        """

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        """Keep ``leases`` until ``now + lease_seconds`` (never shorten one): the heartbeat of a
        worker still busy with them. A lease taken over by another worker, released or
        settled is left alone.

        Pass every unsettled lease of the ``lease`` calls concerned, as the dispatcher does:
        a backend may keep leases per ``lease`` call (Redis keeps one deadline per call), and
        then extending one lease extends the others of its call that are still held.
        """

    def mark_sending(self, lease: Lease) -> None:
        """Record durably, while ``lease`` is held, that its (non-idempotent) operation is about
        to be written to the network: ``last_error`` becomes ``SENDING_MARK``.

        Nothing else changes. If the worker then dies, whoever leases the operation after the
        lease runs out sees the mark and knows it may have been sent (the dispatcher
        dead-letters it as ``ambiguous`` rather than sending a transactional email twice).
        ``retry_later`` and ``dead_letter`` overwrite the mark with what really happened.
        """

    def retry_later(
        self, lease: Lease, *, retry_at: float, error: str, now: float | None = None
    ) -> None:
        """Count an attempt, remember ``error``, and make the op due again at ``retry_at``."""

    def dead_letter(
        self, lease: Lease, reason: DeadReason, detail: str, *, now: float | None = None
    ) -> None:
        """Move the op to the dead-letter queue; the person's next operation becomes due."""

    def list_dead(
        self,
        where: DeadLetterFilter = DeadLetterFilter(),
        *,
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, newest first."""

    def count_dead(
        self, where: DeadLetterFilter = DeadLetterFilter(), *, now: float | None = None
    ) -> int:
        """How many dead letters match."""

    def replay(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        """Put matching dead letters back, due now, attempts reset, op ids kept."""

    def purge(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        """Delete matching dead letters for good."""

    def depth(self, *, now: float | None = None) -> Depth:
        """Counts by state and the age of the oldest pending operation."""

    def close(self) -> None:
        """Release connections and files. Idempotent."""
