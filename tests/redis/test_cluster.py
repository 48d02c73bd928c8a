"""The Redis outbox on a real three-node Redis Cluster: shards spread over the nodes, every
script runs on one node, and the outbox keeps its promises (per-person order, no head-of-line
blocking, dead letters, replay, depth) with people on every shard."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from cio_relay import operations as ops
from cio_relay.outbox.base import DeadLetterFilter, DeadReason
from cio_relay.outbox.factory import open_outbox
from cio_relay.outbox.redis import RedisOutbox
from cio_relay.outbox.redis_keys import shard_keys

SHARDS = 6


@pytest.fixture
def cluster_outbox(redis_cluster: str) -> Iterator[RedisOutbox]:
    outbox = open_outbox(f"{redis_cluster}&shards={SHARDS}&namespace=c{time.time_ns()}")
    assert isinstance(outbox, RedisOutbox)
    yield outbox
    outbox.close()


def test_shards_spread_over_the_cluster_nodes(cluster_outbox: RedisOutbox) -> None:
    client = cluster_outbox.client
    assert isinstance(client, redis.cluster.RedisCluster)
    nodes = {
        client.get_node_from_key(shard_keys(cluster_outbox.namespace, shard).ops).name
        for shard in range(SHARDS)
    }
    assert len(nodes) >= 2
    for shard in range(SHARDS):
        keys = shard_keys(cluster_outbox.namespace, shard)
        assert len({key_slot(key.encode()) for key in keys.script_keys}) == 1


def test_the_outbox_keeps_its_promises_on_a_cluster(cluster_outbox: RedisOutbox) -> None:
    people = [f"p{i}" for i in range(30)]
    made = {person: [ops.track(person, "e", {"n": n}) for n in range(4)] for person in people}
    assert cluster_outbox.enqueue([op for n in range(4) for op in (made[p][n] for p in people)])
    now = time.time()
    delivered: dict[str, list[int]] = {person: [] for person in people}
    while cluster_outbox.depth(now=now).pending:
        leases = cluster_outbox.lease(50, 30, now=now)
        assert len({lease.op.person_key for lease in leases}) == len(leases)
        for lease in leases:
            person, n = lease.op.identifiers["id"], lease.op.payload["data"]["n"]
            if person == "p7" and lease.attempts == 0:
                cluster_outbox.retry_later(lease, retry_at=now + 5, error="503", now=now)
            elif person == "p9" and n == 1:
                cluster_outbox.dead_letter(lease, DeadReason.PERMANENT, "400", now=now)
            else:
                cluster_outbox.ack([lease])
                delivered[person].append(n)
        now += 1
    assert delivered["p9"] == [0, 2, 3]
    assert all(delivered[p] == [0, 1, 2, 3] for p in people if p != "p9")
    assert [d.op.identifiers["id"] for d in cluster_outbox.list_dead(now=now)] == ["p9"]
    assert cluster_outbox.replay(DeadLetterFilter(), now=now) == 1
    [again] = cluster_outbox.lease(10, 30, now=now)
    cluster_outbox.ack([again])
    assert cluster_outbox.wait_until_empty(timeout=5)
