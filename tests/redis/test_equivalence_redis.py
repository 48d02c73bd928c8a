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

import pytest
from hypothesis import HealthCheck, settings

from cio_relay.outbox.base import Depth, Lease
from cio_relay.outbox.redis import RedisOutbox
from tests.fixtures.redis_server import RedisServer, delete_namespace
from tests.outbox.equivalence import SameAsMemory, lease_view

EVERYTHING = 1000  # a lease limit above anything that can be due


class RedisSameAsMemory(SameAsMemory):
    url = ""  # set by the fixture below: the session's redis-server

    def open_other(self) -> RedisOutbox:
        self.namespace = f"equivalence-{time.perf_counter_ns()}"
        self.redis = RedisOutbox(self.url, namespace=self.namespace)
        return self.redis

    def close_other(self) -> None:
        delete_namespace(self.redis.client, self.namespace)
        self.redis.close()

    def lease_limit(self, drawn: int) -> int:
        return EVERYTHING

    def compare_leases(self, memory: list[Lease], other: list[Lease]) -> list[Lease]:
        assert sorted(map(lease_view, memory)) == sorted(map(lease_view, other))
        by_id = {lease.op.op_id: lease for lease in other}
        return [by_id[lease.op.op_id] for lease in memory]

    def compare_depth(self, memory: Depth, other: Depth) -> None:
        assert (memory.ready, memory.scheduled, memory.leased, memory.dead) == (
            other.ready,
            other.scheduled,
            other.leased,
            other.dead,
        )
        if memory.oldest_waiting_age is None:
            assert other.oldest_waiting_age is None
        else:
            assert other.oldest_waiting_age is not None
            assert 0 <= other.oldest_waiting_age - memory.oldest_waiting_age < 1.0


RedisSameAsMemory.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def machine(redis_server: RedisServer) -> type[RedisSameAsMemory]:
    RedisSameAsMemory.url = redis_server.url
    return RedisSameAsMemory


def test_redis_outbox_matches_memory_outbox(machine: type[RedisSameAsMemory]) -> None:
    machine.TestCase().runTest()
