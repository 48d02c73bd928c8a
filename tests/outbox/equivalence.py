"""A backend behaves like ``MemoryOutbox`` (the reference) on random operation sequences.

One hypothesis state machine for every backend: both outboxes get the same calls, with stale
tokens, expired leases, retries, deferred releases, dead letters, replays and purges mixed in,
and every answer must match. A backend's test subclasses ``SameAsMemory`` with ``open_other`` /
``close_other`` and, where the backend may legitimately differ, ``compare_leases`` and
``compare_depth`` (see tests/redis/test_equivalence_redis.py). The test clock starts well after
the wall clock, so what ``enqueue`` stamps is always in the past.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cio_relay import operations as ops
from cio_relay.outbox.base import DeadLetter, DeadLetterFilter, DeadReason, Depth, Lease, Outbox
from cio_relay.outbox.memory import MemoryOutbox

REASONS = list(DeadReason)

filters = st.one_of(
    st.just(DeadLetterFilter()),
    st.builds(
        DeadLetterFilter,
        kind=st.sampled_from([None, "track", "identify"]),
        reason=st.sampled_from([None, *(reason.value for reason in REASONS[:3])]),
        older_than=st.sampled_from([None, 5.0, 50.0]),
    ),
)


def lease_view(lease: Lease) -> tuple[Any, ...]:
    return (lease.op.op_id, lease.op, lease.attempts, lease.lease_until, lease.last_error)


def dead_view(dead: DeadLetter) -> tuple[Any, ...]:
    return (dead.op, dead.reason, dead.detail, dead.attempts, dead.dead_at)


class SameAsMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryOutbox()
        self.other = self.open_other()
        self.now = time.time() + 1000.0
        self.made: list[ops.Operation] = []
        self.held: list[tuple[Lease, Lease]] = []

    # --- what a backend's test provides -------------------------------------------------------

    def open_other(self) -> Outbox:
        raise NotImplementedError

    def close_other(self) -> None:
        raise NotImplementedError

    def lease_limit(self, drawn: int) -> int:
        """How many to ask for: ``drawn``, unless the backend may pick other heads at a binding
        limit (then ask for more than can be due)."""
        return drawn

    def compare_leases(self, memory: list[Lease], other: list[Lease]) -> list[Lease]:
        """Assert both leased the same; return ``other``'s leases in ``memory``'s order."""
        assert [lease_view(m) for m in memory] == [lease_view(o) for o in other]
        return other

    def compare_depth(self, memory: Depth, other: Depth) -> None:
        assert memory == other

    # --- the rules ----------------------------------------------------------------------------

    def teardown(self) -> None:
        self.close_other()

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return (
            getattr(self.memory, method)(*args, **kwargs),
            getattr(self.other, method)(*args, **kwargs),
        )

    @initialize(people=st.lists(st.integers(0, 4), min_size=3, max_size=8))
    def start_with_work(self, people: list[int]) -> None:
        self.enqueue(people, "track", 0)

    @rule(
        people=st.lists(st.integers(0, 4), min_size=1, max_size=4),
        kind=st.sampled_from(["track", "identify"]),
        again=st.integers(0, 3),
    )
    def enqueue(self, people: list[int], kind: str, again: int) -> None:
        batch = [
            ops.track(f"p{p}", "e", {"n": len(self.made)})
            if kind == "track"
            else ops.identify(f"p{p}", {"n": len(self.made)})
            for p in people
        ]
        if self.made and again:  # re-send some old op ids alongside the new ones
            batch += self.made[-again:]
        self.made += batch
        added_memory, added_other = self.both("enqueue", batch)
        assert added_memory == added_other

    @rule(limit=st.integers(1, 6), seconds=st.sampled_from([5.0, 30.0]))
    def lease(self, limit: int, seconds: float) -> None:
        memory, other = self.both("lease", self.lease_limit(limit), seconds, now=self.now)
        self.held += list(zip(memory, self.compare_leases(memory, other), strict=True))

    def pick(self, index: int) -> tuple[Lease, Lease]:
        return self.held[index % len(self.held)]

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50))
    def ack(self, index: int) -> None:
        memory, other = self.pick(index)
        self.memory.ack([memory])
        self.other.ack([other])

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), delay=st.sampled_from([0.0, 0.0, 5.0, 20.0]))
    def release(self, index: int, delay: float) -> None:
        memory, other = self.pick(index)
        self.memory.release([memory], delay=delay, now=self.now)
        self.other.release([other], delay=delay, now=self.now)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), seconds=st.sampled_from([5.0, 30.0]))
    def extend(self, index: int, seconds: float) -> None:
        # As the dispatcher does: every lease of the chosen lease call (backends may keep one
        # deadline per call), settled ones included (an extend leaves those alone).
        token = self.pick(index)[0].token
        pairs = [pair for pair in self.held if pair[0].token == token]
        self.memory.extend([memory for memory, _ in pairs], seconds, now=self.now)
        self.other.extend([other for _, other in pairs], seconds, now=self.now)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), wait=st.sampled_from([0.0, 5.0, 20.0]))
    def retry_later(self, index: int, wait: float) -> None:
        memory, other = self.pick(index)
        retry_at = self.now + wait
        self.memory.retry_later(memory, retry_at=retry_at, error=f"e{wait}", now=self.now)
        self.other.retry_later(other, retry_at=retry_at, error=f"e{wait}", now=self.now)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), reason=st.sampled_from(REASONS))
    def dead_letter(self, index: int, reason: DeadReason) -> None:
        memory, other = self.pick(index)
        self.memory.dead_letter(memory, reason, "why", now=self.now)
        self.other.dead_letter(other, reason, "why", now=self.now)

    @rule(seconds=st.sampled_from([1.0, 6.0, 31.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(where=filters)
    def replay(self, where: DeadLetterFilter) -> None:
        replayed_memory, replayed_other = self.both("replay", where, now=self.now)
        assert replayed_memory == replayed_other

    @rule(where=filters)
    def purge(self, where: DeadLetterFilter) -> None:
        purged_memory, purged_other = self.both("purge", where, now=self.now)
        assert purged_memory == purged_other

    @rule(where=filters, limit=st.integers(1, 5), offset=st.integers(0, 3))
    def list_dead(self, where: DeadLetterFilter, limit: int, offset: int) -> None:
        memory, other = self.both("list_dead", where, limit=limit, offset=offset, now=self.now)
        assert [dead_view(d) for d in memory] == [dead_view(d) for d in other]
        assert self.memory.count_dead(where, now=self.now) == self.other.count_dead(
            where, now=self.now
        )

    @invariant()
    def same_depth_and_dead_letters(self) -> None:
        self.compare_depth(*self.both("depth", now=self.now))
        memory_dead, other_dead = self.both("list_dead", limit=1000, now=self.now)
        assert [dead_view(d) for d in memory_dead] == [dead_view(d) for d in other_dead]
