"""What the Redis outbox adds to the contract suite: shards, key layout, the lease ledger in the
consumer group, trimming, delivered-id memory, waiting for empty, and its safety checks.

Everything runs on a real ``redis-server`` (tests/fixtures/redis_server.py).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources

import pytest
import redis
from redis.crc import key_slot

from cio_relay import operations as ops
from cio_relay.errors import ConfigError, ReplicationError
from cio_relay.operations import Operation
from cio_relay.outbox.base import DeadLetterFilter, DeadReason, Lease
from cio_relay.outbox.factory import open_outbox
from cio_relay.outbox.redis import SCRIPTS, RedisOutbox
from cio_relay.outbox.redis_keys import GROUP, shard_keys, shard_of
from tests.fixtures.redis_server import RedisServer


def event(person: str, i: int = 0) -> Operation:
    return ops.track(person, "order_completed", {"i": i})


@pytest.fixture
def sharded(redis_server: RedisServer, redis_namespace: str) -> Iterator[RedisOutbox]:
    outbox = RedisOutbox(redis_server.url, namespace=redis_namespace, shards=4)
    yield outbox
    outbox.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


# --- packaging and keys -------------------------------------------------------------------------


def test_lua_scripts_ship_as_package_data() -> None:
    lua = resources.files("cio_relay.outbox").joinpath("lua")
    for name in (*SCRIPTS, "common", "gcra"):
        assert lua.joinpath(f"{name}.lua").read_text().strip(), name


@pytest.mark.parametrize("person", ["id:user-1", "email:a{b}c@example.com", "id:}{"])
def test_every_key_a_script_touches_shares_one_cluster_slot(person: str) -> None:
    for shard in range(4):
        keys = shard_keys("cio-relay", shard)
        slots = {key_slot(key.encode()) for key in [*keys.script_keys, keys.waiting(person)]}
        assert len(slots) == 1, (shard, slots)
    assert len({key_slot(shard_keys("cio-relay", s).ops.encode()) for s in range(4)}) > 1


def test_the_outbox_client_packs_commands_as_redis_py_does(redis_server: RedisServer) -> None:
    outbox = RedisOutbox(redis_server.url, namespace="packer")
    client = outbox.client
    try:
        client.set("packer:k", "é")
        client.hset("packer:h", mapping={b"b": bytearray(b"x"), "f": 0.1 + 0.2, "i": 7})
        assert client.get("packer:k") == "é".encode()
        assert client.hgetall("packer:h") == {b"b": b"x", b"f": b"0.30000000000000004", b"i": b"7"}
        assert client.config_get("appendonly")  # a two-word command name
        with pytest.raises(redis.DataError):
            client.set("packer:k", True)  # type: ignore[arg-type]
    finally:
        client.delete("packer:k", "packer:h")
        outbox.close()


def test_namespaces_cannot_break_hash_tags(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="without"):
        RedisOutbox(redis_server.url, namespace="a{b}")


def test_open_outbox_takes_redis_urls_with_options(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    url = f"{redis_server.url}?shards=3&namespace={redis_namespace}&remember_delivered=5"
    outbox = open_outbox(url)
    try:
        assert isinstance(outbox, RedisOutbox)
        assert (outbox.shards, outbox.namespace, outbox.remember_delivered) == (
            3,
            redis_namespace,
            5.0,
        )
        assert "127.0.0.1" not in repr(outbox)  # no URL (it may carry a password) in reprs
    finally:
        outbox.close()
    with pytest.raises(ConfigError, match="shards must be a number, got 'many'"):
        open_outbox(f"{redis_server.url}?shards=many")


def test_a_namespace_keeps_the_shard_count_it_was_created_with(
    sharded: RedisOutbox, redis_server: RedisServer, redis_namespace: str
) -> None:
    with pytest.raises(ConfigError, match="created with 4 shards"):
        RedisOutbox(redis_server.url, namespace=redis_namespace, shards=2)


# --- shards -------------------------------------------------------------------------------------


def test_shards_keep_each_persons_order_and_hold_up_nobody(sharded: RedisOutbox) -> None:
    people = [f"p{i}" for i in range(12)]
    made = {person: [event(person, i) for i in range(5)] for person in people}
    assert {shard_of(f"id:{person}", 4) for person in people} == {0, 1, 2, 3}
    sharded.enqueue([op for i in range(5) for op in (made[p][i] for p in people)])
    rng = random.Random(7)
    delivered: dict[str, list[str]] = {person: [] for person in people}
    now = time.time()
    while sharded.depth(now=now).pending:
        leases = sharded.lease(rng.randint(1, 8), 30, now=now)
        persons = [lease.op.person_key for lease in leases]
        assert len(persons) == len(set(persons)), "two leases for one person"
        for lease in leases:
            if lease.op.person_key == "id:p3" and lease.attempts < 2:
                # p3 keeps failing for a while; everyone else goes on
                sharded.retry_later(lease, retry_at=now + 1, error="503", now=now)
            else:
                sharded.ack([lease])
                delivered[lease.op.identifiers["id"]].append(lease.op.op_id)
        now += 0.5
    assert delivered == {p: [op.op_id for op in made[p]] for p in people}


def test_lease_across_shards_honours_the_limit(sharded: RedisOutbox) -> None:
    sharded.enqueue([event(f"p{i}") for i in range(20)])
    t = time.time()
    assert len(sharded.lease(7, 30, now=t)) == 7
    assert len(sharded.lease(100, 30, now=t)) == 13
    assert sharded.lease(100, 30, now=t) == []


def test_dead_letters_are_listed_newest_first_across_shards(sharded: RedisOutbox) -> None:
    made = [event(f"p{i}") for i in range(10)]
    sharded.enqueue(made)
    t = time.time()
    leases = {lease.op.op_id: lease for lease in sharded.lease(100, 30, now=t)}
    for age, op in enumerate(made):
        reason = DeadReason.PERMANENT if age % 2 else DeadReason.AMBIGUOUS
        sharded.dead_letter(leases[op.op_id], reason, f"d{age}", now=t + age)
    newest_first = [op.op_id for op in reversed(made)]
    now = t + 20
    assert [d.op.op_id for d in sharded.list_dead(now=now)] == newest_first
    assert [d.op.op_id for d in sharded.list_dead(limit=3, offset=4, now=now)] == newest_first[4:7]
    odd = DeadLetterFilter(reason="permanent")
    assert [d.op.op_id for d in sharded.list_dead(odd, now=now)] == newest_first[::2]
    assert sharded.count_dead(odd, now=now) == 5
    assert sharded.replay(odd, now=now) == 5
    assert sharded.count_dead(now=now) == 5
    assert sharded.purge(DeadLetterFilter(older_than=15), now=now) == 3  # dead at t, t+2, t+4
    assert sharded.count_dead(now=now) == 2


# --- the lease ledger ---------------------------------------------------------------------------


def _group(client: redis.Redis, namespace: str) -> dict[str, object]:
    info = client.xinfo_groups(shard_keys(namespace, 0).stream)
    return {str(k): v for k, v in info[0].items()}


def test_each_lease_call_is_a_consumer_deleted_once_it_holds_nothing(
    redis_outbox: RedisOutbox, client: redis.Redis, redis_namespace: str
) -> None:
    redis_outbox.enqueue([event(f"p{i}") for i in range(6)])
    first = redis_outbox.lease(3, 30)
    second = redis_outbox.lease(3, 30)
    assert {lease.token.split()[0] for lease in first} != {
        lease.token.split()[0] for lease in second
    }
    assert _group(client, redis_namespace)["consumers"] == 2
    assert _group(client, redis_namespace)["pending"] == 6
    redis_outbox.ack(first)
    assert _group(client, redis_namespace)["consumers"] == 1
    redis_outbox.ack(second)
    assert _group(client, redis_namespace)["consumers"] == 0
    assert redis_outbox.lease(10, 30) == []  # an empty lease leaves no consumer behind
    assert _group(client, redis_namespace)["consumers"] == 0


def test_acknowledged_entries_are_trimmed_and_never_unacknowledged_ones(
    redis_outbox: RedisOutbox, client: redis.Redis, redis_namespace: str
) -> None:
    stream = shard_keys(redis_namespace, 0).stream
    redis_outbox.enqueue([event(f"p{i}") for i in range(3000)])
    held = redis_outbox.lease(1, 300)  # the oldest entry stays leased throughout
    while leases := redis_outbox.lease(500, 30):
        redis_outbox.ack(leases)
    assert client.xlen(stream) == 3000  # nothing below the oldest pending entry is trimmed
    redis_outbox.ack(held)
    redis_outbox.enqueue([event("late")])
    redis_outbox.ack(redis_outbox.lease(10, 30))
    assert client.xlen(stream) <= 100  # whole stream nodes freed; at most one node remains
    assert redis_outbox.depth().pending == 0


def test_a_worker_that_died_has_its_leases_taken_over_in_order(
    redis_outbox: RedisOutbox, client: redis.Redis, redis_namespace: str
) -> None:
    made = [event(f"p{i}") for i in range(5)]
    redis_outbox.enqueue(made)
    t = time.time()
    dead_worker = redis_outbox.lease(10, 30, now=t)
    taken = redis_outbox.lease(10, 30, now=t + 30)
    assert [lease.op.op_id for lease in taken] == [op.op_id for op in made]
    pending = client.xpending_range(shard_keys(redis_namespace, 0).stream, GROUP, "-", "+", 10)
    assert {entry["consumer"].decode() for entry in pending} == {taken[0].token.split()[0]}
    assert {entry["times_delivered"] for entry in pending} == {2}
    redis_outbox.retry_later(dead_worker[0], retry_at=t, error="late", now=t + 31)
    redis_outbox.ack(taken)
    assert redis_outbox.depth().pending == 0
    assert _group(client, redis_namespace)["consumers"] == 0


def test_a_stale_ack_after_a_retry_drops_the_ops_new_entry(
    redis_outbox: RedisOutbox, client: redis.Redis, redis_namespace: str
) -> None:
    op, follower = event("u", 1), event("u", 2)
    redis_outbox.enqueue([op, follower])
    t = time.time()
    [stale] = redis_outbox.lease(10, 30, now=t)
    [fresh] = redis_outbox.lease(10, 30, now=t + 31)
    redis_outbox.retry_later(fresh, retry_at=t + 32, error="503", now=t + 31)
    assert redis_outbox.lease(10, 30, now=t + 31) == []
    redis_outbox.ack([stale])  # the first worker's send got through after all
    [lease] = redis_outbox.lease(10, 30, now=t + 40)
    assert lease.op.op_id == follower.op_id
    redis_outbox.ack([lease])
    redis_outbox.enqueue([op])  # delivered ids are not remembered by default
    [again] = redis_outbox.lease(10, 30, now=t + 41)
    assert (again.op.op_id, again.attempts) == (op.op_id, 0)
    redis_outbox.ack([again])
    assert redis_outbox.lease(10, 30, now=t + 41) == []


def test_a_stale_ack_of_a_replayed_op_takes_it_out_of_the_queue(
    redis_outbox: RedisOutbox,
) -> None:
    a1, a2 = event("a", 1), event("a", 2)
    redis_outbox.enqueue([a1])
    t = time.time()
    [stale] = redis_outbox.lease(10, 30, now=t)
    [fresh] = redis_outbox.lease(10, 30, now=t + 31)
    redis_outbox.dead_letter(fresh, DeadReason.PERMANENT, "400", now=t + 31)
    redis_outbox.enqueue([a2])
    redis_outbox.replay(DeadLetterFilter(op_ids=(a1.op_id,)), now=t + 32)
    redis_outbox.ack([stale])  # a1 waits behind a2 now; the stale ack still removes it
    leased: list[Lease] = []
    while leases := redis_outbox.lease(10, 30, now=t + 33):
        leased += leases
        redis_outbox.ack(leases)
    assert [lease.op.op_id for lease in leased] == [a2.op_id]


def test_the_same_lease_acked_twice_in_one_call_counts_once(redis_outbox: RedisOutbox) -> None:
    t = time.time()
    a1, a2 = (ops.track("a", "e", created_at=t) for _ in range(2))
    redis_outbox.enqueue([a1, a2])
    [lease] = redis_outbox.lease(10, 30, now=t)
    redis_outbox.ack([lease, lease])
    depth = redis_outbox.depth(now=t + 1)
    assert depth.pending == 1
    assert depth.oldest_waiting_age is not None  # a2, created in the same second, still waits


# --- delivered ids, waiting, safety checks ------------------------------------------------------


def test_delivered_ids_are_remembered_when_asked(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    outbox = RedisOutbox(redis_server.url, namespace=redis_namespace, remember_delivered=60)
    try:
        op = event("u")
        outbox.enqueue([op])
        outbox.ack(outbox.lease(10, 30))
        assert outbox.enqueue([op]) == 0
        assert outbox.depth().pending == 0
    finally:
        outbox.close()


def test_wait_until_empty_wakes_when_the_last_op_leaves(redis_outbox: RedisOutbox) -> None:
    redis_outbox.enqueue([event(f"p{i % 3}", i) for i in range(30)])
    assert redis_outbox.wait_until_empty(timeout=0.05) is False
    started = threading.Event()

    def deliver() -> None:
        started.set()
        while leases := redis_outbox.lease(10, 30):
            redis_outbox.ack(leases)

    worker = threading.Thread(target=deliver)
    worker.start()
    started.wait()
    try:
        assert redis_outbox.wait_until_empty(timeout=30) is True
    finally:
        worker.join()
    assert redis_outbox.depth().pending == 0


def test_an_evicting_redis_is_refused(
    redis_server_factory: Callable[..., RedisServer], redis_namespace: str
) -> None:
    server = redis_server_factory("--save", "", "--maxmemory-policy", "allkeys-lru")
    with pytest.raises(ConfigError, match="maxmemory-policy noeviction"):
        RedisOutbox(server.url, namespace=redis_namespace)


def test_a_redis_without_append_only_file_is_warned_about(
    redis_server: RedisServer, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cio_relay.outbox.redis"):
        RedisOutbox(redis_server.url, namespace=redis_namespace).close()
    assert "appendonly=no" in caplog.text


def test_waiting_for_replicas_that_are_not_there_fails_loudly(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    outbox = RedisOutbox(
        redis_server.url, namespace=redis_namespace, wait_replicas=1, wait_timeout=0.05
    )
    try:
        op = event("u")
        with pytest.raises(ReplicationError, match="only 0 of 1 Redis replicas"):
            outbox.enqueue([op])
        with pytest.raises(ReplicationError):
            outbox.enqueue([op])  # the caller retries: safe, the op id is stored once
        assert outbox.depth().pending == 1
    finally:
        outbox.close()
