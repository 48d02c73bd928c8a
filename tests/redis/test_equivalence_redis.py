"""RedisOutbox behaves like MemoryOutbox (the reference) on random operation sequences.

Both outboxes get the same calls, with stale tokens, expired leases, retries, dead letters,
replays and purges mixed in. Leases ask for more than can be due, so both must hand out exactly
the same operations. Within one lease call the order is compared as a set: a stream serves
expired leases first and retries behind what was ready, where MemoryOutbox sorts everything by
due time. With a binding limit the two may therefore pick different heads (and the test could
not go on comparing their states); ``tests/outbox/test_contract.py`` pins the order where it
matters and test_redis_outbox.py checks binding limits. Depth,
dead letters (order included) and counts must match; the oldest waiting age is exact to the
second in Redis (it counts pending operations per second of ``created_at``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cio_relay import operations as ops
from cio_relay.outbox.base import DeadLetter, DeadLetterFilter, DeadReason, Lease
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.redis import RedisOutbox
from tests.fixtures.redis_server import RedisServer, delete_namespace

REASONS = list(DeadReason)
EVERYTHING = 1000  # a lease limit above anything that can be due

filters = st.one_of(
    st.just(DeadLetterFilter()),
    st.builds(
        DeadLetterFilter,
        kind=st.sampled_from([None, "track", "identify"]),
        reason=st.sampled_from([None, *(reason.value for reason in REASONS[:3])]),
        older_than=st.sampled_from([None, 5.0, 50.0]),
    ),
)


def _lease_view(lease: Lease) -> tuple[Any, ...]:
    return (lease.op.op_id, lease.op, lease.attempts, lease.lease_until, lease.last_error)


def _dead_view(dead: DeadLetter) -> tuple[Any, ...]:
    return (dead.op, dead.reason, dead.detail, dead.attempts, dead.dead_at)


class SameAsMemory(RuleBasedStateMachine):
    url = ""  # set by the test below: the session's redis-server

    def __init__(self) -> None:
        super().__init__()
        self.namespace = f"equivalence-{time.perf_counter_ns()}"
        self.memory = MemoryOutbox()
        self.redis = RedisOutbox(self.url, namespace=self.namespace)
        self.now = time.time() + 1000.0
        self.made: list[ops.Operation] = []
        self.held: list[tuple[Lease, Lease]] = []

    def teardown(self) -> None:
        delete_namespace(self.redis.client, self.namespace)
        self.redis.close()

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return (
            getattr(self.memory, method)(*args, **kwargs),
            getattr(self.redis, method)(*args, **kwargs),
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
        added_memory, added_redis = self.both("enqueue", batch)
        assert added_memory == added_redis

    @rule(seconds=st.sampled_from([5.0, 30.0]))
    def lease(self, seconds: float) -> None:
        memory, redis = self.both("lease", EVERYTHING, seconds, now=self.now)
        by_id = {lease.op.op_id: lease for lease in redis}
        assert sorted(map(_lease_view, memory)) == sorted(map(_lease_view, redis))
        self.held += [(lease, by_id[lease.op.op_id]) for lease in memory]

    def pick(self, index: int) -> tuple[Lease, Lease]:
        return self.held[index % len(self.held)]

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50))
    def ack(self, index: int) -> None:
        memory, redis = self.pick(index)
        self.memory.ack([memory])
        self.redis.ack([redis])

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50))
    def release(self, index: int) -> None:
        memory, redis = self.pick(index)
        self.memory.release([memory])
        self.redis.release([redis])

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), wait=st.sampled_from([0.0, 5.0, 20.0]))
    def retry_later(self, index: int, wait: float) -> None:
        memory, redis = self.pick(index)
        retry_at = self.now + wait
        self.memory.retry_later(memory, retry_at=retry_at, error=f"e{wait}", now=self.now)
        self.redis.retry_later(redis, retry_at=retry_at, error=f"e{wait}", now=self.now)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 50), reason=st.sampled_from(REASONS))
    def dead_letter(self, index: int, reason: DeadReason) -> None:
        memory, redis = self.pick(index)
        self.memory.dead_letter(memory, reason, "why", now=self.now)
        self.redis.dead_letter(redis, reason, "why", now=self.now)

    @rule(seconds=st.sampled_from([1.0, 6.0, 31.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(where=filters)
    def replay(self, where: DeadLetterFilter) -> None:
        replayed_memory, replayed_redis = self.both("replay", where, now=self.now)
        assert replayed_memory == replayed_redis

    @rule(where=filters)
    def purge(self, where: DeadLetterFilter) -> None:
        purged_memory, purged_redis = self.both("purge", where, now=self.now)
        assert purged_memory == purged_redis

    @rule(where=filters, limit=st.integers(1, 5), offset=st.integers(0, 3))
    def list_dead(self, where: DeadLetterFilter, limit: int, offset: int) -> None:
        memory, redis = self.both("list_dead", where, limit=limit, offset=offset, now=self.now)
        assert [_dead_view(d) for d in memory] == [_dead_view(d) for d in redis]
        assert self.memory.count_dead(where, now=self.now) == self.redis.count_dead(
            where, now=self.now
        )

    @invariant()
    def same_depth_and_dead_letters(self) -> None:
        memory, redis = self.both("depth", now=self.now)
        assert (memory.ready, memory.scheduled, memory.leased, memory.dead) == (
            redis.ready,
            redis.scheduled,
            redis.leased,
            redis.dead,
        )
        if memory.oldest_waiting_age is None:
            assert redis.oldest_waiting_age is None
        else:
            assert redis.oldest_waiting_age is not None
            assert 0 <= redis.oldest_waiting_age - memory.oldest_waiting_age < 1.0
        memory_dead, redis_dead = self.both("list_dead", limit=1000, now=self.now)
        assert [_dead_view(d) for d in memory_dead] == [_dead_view(d) for d in redis_dead]


SameAsMemory.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def machine(redis_server: RedisServer) -> type[SameAsMemory]:
    SameAsMemory.url = redis_server.url
    return SameAsMemory


def test_redis_outbox_matches_memory_outbox(machine: type[SameAsMemory]) -> None:
    machine.TestCase().runTest()
