"""SqliteOutbox behaves exactly like MemoryOutbox (the reference) on random operation sequences.

Both outboxes get the same calls; every answer (leases in order, counts, dead letters, depth) must
match. Leases are kept after use, so stale tokens and expired leases get exercised too. The test
clock starts well after the wall clock, so what ``enqueue`` stamps is always in the past.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cio_relay import operations as ops
from cio_relay.outbox.base import DeadLetter, DeadLetterFilter, DeadReason, Lease
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox

REASONS = list(DeadReason)


def _lease_view(lease: Lease) -> tuple[Any, ...]:
    return (lease.op, lease.attempts, lease.lease_until, lease.last_error)


def _dead_view(dead: DeadLetter) -> tuple[Any, ...]:
    return (dead.op, dead.reason, dead.detail, dead.attempts, dead.dead_at)


filters = st.one_of(
    st.just(DeadLetterFilter()),
    st.builds(
        DeadLetterFilter,
        kind=st.sampled_from([None, "track", "identify"]),
        reason=st.sampled_from([None, *(reason.value for reason in REASONS[:3])]),
        older_than=st.sampled_from([None, 5.0, 50.0]),
    ),
)


class SameAsMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory(prefix="outbox-equivalence-")
        self.memory = MemoryOutbox()
        self.sqlite = SqliteOutbox(Path(self.tmp.name) / "outbox.db")
        self.now = time.time() + 1000.0
        self.made: list[ops.Operation] = []
        self.held: list[tuple[Lease, Lease]] = []

    def teardown(self) -> None:
        self.sqlite.close()
        self.tmp.cleanup()

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return (
            getattr(self.memory, method)(*args, **kwargs),
            getattr(self.sqlite, method)(*args, **kwargs),
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
        added_memory, added_sqlite = self.both("enqueue", batch)
        assert added_memory == added_sqlite

    @rule(limit=st.integers(1, 6), seconds=st.sampled_from([5.0, 30.0]))
    def lease(self, limit: int, seconds: float) -> None:
        memory, sqlite = self.both("lease", limit, seconds, now=self.now)
        assert [_lease_view(m) for m in memory] == [_lease_view(s) for s in sqlite]
        self.held += list(zip(memory, sqlite, strict=True))

    def pick(self, index: int) -> tuple[Lease, Lease]:
        return self.held[index % len(self.held)]

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50))
    def ack(self, index: int) -> None:
        memory, sqlite = self.pick(index)
        self.memory.ack([memory])
        self.sqlite.ack([sqlite])

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50))
    def release(self, index: int) -> None:
        memory, sqlite = self.pick(index)
        self.memory.release([memory])
        self.sqlite.release([sqlite])

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), wait=st.sampled_from([0.0, 5.0, 20.0]))
    def retry_later(self, index: int, wait: float) -> None:
        memory, sqlite = self.pick(index)
        retry_at = self.now + wait
        self.memory.retry_later(memory, retry_at=retry_at, error=f"e{wait}", now=self.now)
        self.sqlite.retry_later(sqlite, retry_at=retry_at, error=f"e{wait}", now=self.now)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), reason=st.sampled_from(REASONS))
    def dead_letter(self, index: int, reason: DeadReason) -> None:
        memory, sqlite = self.pick(index)
        self.memory.dead_letter(memory, reason, "why", now=self.now)
        self.sqlite.dead_letter(sqlite, reason, "why", now=self.now)

    @rule(seconds=st.sampled_from([1.0, 6.0, 31.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(where=filters)
    def replay(self, where: DeadLetterFilter) -> None:
        replayed_memory, replayed_sqlite = self.both("replay", where, now=self.now)
        assert replayed_memory == replayed_sqlite

    @rule(where=filters)
    def purge(self, where: DeadLetterFilter) -> None:
        purged_memory, purged_sqlite = self.both("purge", where, now=self.now)
        assert purged_memory == purged_sqlite

    @rule(where=filters, limit=st.integers(1, 5), offset=st.integers(0, 3))
    def list_dead(self, where: DeadLetterFilter, limit: int, offset: int) -> None:
        memory, sqlite = self.both("list_dead", where, limit=limit, offset=offset, now=self.now)
        assert [_dead_view(d) for d in memory] == [_dead_view(d) for d in sqlite]
        assert self.memory.count_dead(where, now=self.now) == self.sqlite.count_dead(
            where, now=self.now
        )

    @invariant()
    def same_depth_and_dead_letters(self) -> None:
        memory, sqlite = self.both("depth", now=self.now)
        assert memory == sqlite
        memory_dead, sqlite_dead = self.both("list_dead", limit=1000, now=self.now)
        assert [_dead_view(d) for d in memory_dead] == [_dead_view(d) for d in sqlite_dead]


SameAsMemory.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_sqlite_outbox_matches_memory_outbox = SameAsMemory.TestCase
