"""``RedisOutbox``: the outbox on Redis Streams, for many workers on many machines.

Per-person ordering: a per-person queue, with only each person's head in the stream. Every
person with pending work has a head (``T:heads``: their oldest pending operation) and a list of
the operations waiting behind it. Only a head is ever *active*: an entry in the shard's stream
(unread, or leased = in the consumer group's pending list) or a member of the retry sorted set.
Leasing is a plain XREADGROUP from the stream, so it can only ever hand out heads: one
operation per person at a time, in enqueue order, across every worker and machine. Settling a
head for good (ack, dead letter) XACKs its entry and XADDs the person's next operation. A head
waiting to retry leaves the stream for the retry set, so nobody waits behind it but its own
person (no head-of-line blocking).

Why not shards owned by one worker each (the Kafka partition model): a retrying person would
block its whole shard unless parked aside; a slow or dead worker stalls its shards until a
rebalance; and parallelism is capped by the shard count. Per-person queues cost one hash field
per person with pending work (and a list only for those with more than one) and none of that.
Shards (``shards=``) exist for Redis Cluster: a person hashes (CRC-32) onto one shard, and every
key one script touches shares the shard's hash tag (``redis_keys``), so each script runs on one
node. Within a shard, ``lease`` hands out the work due longest first; across shards it visits
them round-robin, so with ``shards > 1`` the order *between* people is fair rather than exact
(order *within* a person is always exact). The shard count is fixed when a namespace is created.

Leases. Each lease script call (up to ``SETTLE_CHUNK`` operations; a ``lease`` of more makes
several) reads as a consumer of its own (``host:pid:random:n``); the group's
pending list is the ledger of who holds which entry, and ``T:leases`` holds each consumer's
``lease_until``. A lease token is ``"<consumer> <entry id>"``: a late worker's
``retry_later``/``dead_letter``/``release`` apply only while its consumer still owns the entry.
A lease expires at its own ``lease_until`` on the caller's clock (the protocol's ``now``): the
next ``lease`` takes the expired consumer's very entries over with XCLAIM (which counts a
delivery) and deletes the consumer once empty. XAUTOCLAIM's single idle threshold, measured on
the server's clock, cannot express per-lease deadlines nor the injectable clock the contract is
tested with, so the script claims exactly the expired consumers' entries instead. ``release``
moves entries to the consumer ``~released`` (deadline 0). ``retry_later`` XACKs the entry and
puts the person in ``T:retry`` (scored by ``retry_at``); ``lease`` XADDs due heads back. Workers'
clocks must agree within a small fraction of the lease time (NTP does this). Consumers are
deleted as soon as they hold nothing, so the group never accumulates them.

Dead letters: a hash (op id -> record and info) and a sorted set by ``dead_at``, not a stream
(``redis_dead.py`` lists, counts, replays and purges them).

Idempotent enqueue: ``enqueue.lua`` stores an op id once while it is pending or dead-lettered
(``T:ops``/``T:dead``), and for ``remember_delivered`` seconds after delivery (default 0, as in
the SQLite outbox: ``redis_keys.DELIVERED_TTL_SECONDS`` says why and what it costs).

Durability: ``enqueue`` returns once Redis has executed the script (one call per shard and
chunk inside MULTI/EXEC, so a call is all-or-nothing on one Redis). What survives a crash is
Redis's persistence: with ``appendonly yes`` and ``appendfsync always`` an acknowledged enqueue
survives power loss; with ``everysec`` it survives a Redis crash but up to a second may be lost
to a power cut; with replication, ``wait_replicas=N`` also waits for N replicas (WAIT). Opening
warns when ``appendonly`` is off and refuses an ``allkeys-*`` eviction policy, which would
silently drop operations under memory pressure. Acknowledged stream entries are removed by XTRIM
MINID below the oldest entry still pending or unread, never by MAXLEN. See docs/scaling.md.

Cost: Redis's CPU per operation from enqueue to ack is what bounds a deployment (its figure, and
the append-only file's share of it, are in docs/benchmarks.md); per-operation work in the
scripts is kept to what needs an answer one by one. Leases and acks run as scripts of at most
``SETTLE_CHUNK`` operations, each its own round trip, so that no worker holds Redis (and every
producer's enqueue) for long: Redis runs one script at a time.

Beside this module: ``redis_keys.py`` (every key name), ``redis_records.py`` (what is stored
per operation), ``redis_connection.py`` (the client, the URL, the scripts, the checks at
opening), ``redis_dead.py`` (dead letters) and the scripts in ``lua/``.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis
from redis.commands.core import Script

from cio_relay.clock import now_or
from cio_relay.errors import ConfigError, ReplicationError
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
    new_lease,
)
from cio_relay.outbox.redis_connection import (
    SCRIPTS,
    RedisClient,
    check_persistence,
    check_shard_count,
    connect,
    connect_cluster,
    load_script_source,
    load_scripts,
    outbox_options,
)
from cio_relay.outbox.redis_dead import RedisDeadLetters
from cio_relay.outbox.redis_keys import (
    DELIVERED_TTL_SECONDS,
    ShardKeys,
    check_namespace,
    shard_keys,
    shard_of,
)
from cio_relay.outbox.redis_records import (
    bucket,
    chunks,
    decode,
    encode,
    note_oldest,
    oldest_args,
    split_token,
)

__all__ = ["SCRIPTS", "RedisClient", "RedisOutbox", "load_script_source"]

#: Operations per script call: bounds how long one call holds Redis (docs/benchmarks.md).
CHUNK = 1000
#: Operations per ``lease`` and ``ack`` script call, each its own round trip: Redis runs one
#: script at a time, so a worker's 5,000-operation lease or 3,000-operation ack in one call would
#: hold every producer's enqueue up for as long as it runs; a round trip per chunk costs less.
SETTLE_CHUNK = 500
#: Longest single BLPOP in ``wait_until_empty``: stays below the client's socket timeout.
WAIT_SLICE_SECONDS = 2.0


class RedisOutbox:
    """The ``Outbox`` protocol on Redis Streams (see the module docstring for the design).

    ``url_or_client`` is a ``redis://``/``rediss://`` URL (the outbox owns and closes the client)
    or a ``redis.Redis`` or ``redis.cluster.RedisCluster`` made with ``decode_responses=False``
    (the caller owns it). Instances are thread-safe. Each lease script call reads as consumer
    ``<consumer>:<n>`` (``consumer`` defaults to ``host:pid:random``), so ``XINFO CONSUMERS``
    shows which process holds what.

    >>> outbox = RedisOutbox("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """

    def __init__(
        self,
        url_or_client: str | RedisClient,
        *,
        shards: int = 1,
        namespace: str = "cio-relay",
        remember_delivered: float = DELIVERED_TTL_SECONDS,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        consumer: str | None = None,
    ) -> None:
        if not 1 <= shards <= 16384:
            raise ValueError(f"shards must be between 1 and 16384, got {shards}")
        self.namespace = check_namespace(namespace)
        self.shards = shards
        self.remember_delivered = remember_delivered
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        if isinstance(url_or_client, str):
            self.client: RedisClient = connect(url_or_client)
            self._owns_client = True
        else:
            if url_or_client.get_encoder().decode_responses:
                raise ConfigError("RedisOutbox needs a client made with decode_responses=False")
            self.client = url_or_client
            self._owns_client = False
        self._cluster = isinstance(self.client, redis.cluster.RedisCluster)
        self._keys = [shard_keys(namespace, shard) for shard in range(shards)]
        self._scripts: dict[str, Script] = load_scripts(self.client)
        self._dead = RedisDeadLetters(self.client, self._keys, self._run, CHUNK)
        self._rotation = itertools.count()
        self._leases_made = itertools.count()
        self._closed = False
        try:
            check_shard_count(self.client, self.namespace, shards)
            check_persistence(self.client)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisOutbox:
        """``redis://[:password@]host:port/db[?shards=N&namespace=name&remember_delivered=S]``
        (``CIO_RELAY_OUTBOX``); ``cluster=1`` connects to a Redis Cluster through the given
        node; other query parameters are redis-py's connection options."""
        rest, cluster = outbox_options(url, options)
        if not cluster:
            return cls(rest, **options)
        client = connect_cluster(rest)
        try:
            outbox = cls(client, **options)
        except BaseException:
            client.close()
            raise
        outbox._owns_client = True
        return outbox

    def __repr__(self) -> str:
        # No URL: it may carry a password.
        return f"RedisOutbox(namespace={self.namespace!r}, shards={self.shards})"

    # --- scripts ------------------------------------------------------------------------------

    def _run(self, name: str, keys: ShardKeys, args: list[Any], client: Any = None) -> Any:
        return self._scripts[name](keys=keys.script_keys, args=args, client=client)

    def _run_many(self, name: str, calls: list[tuple[ShardKeys, list[Any]]]) -> list[Any]:
        """Several script calls: on one Redis in one MULTI/EXEC (one round trip, all or
        nothing); on a Redis Cluster one by one, each atomic on its shard's node (redis-py runs
        no scripts in cluster pipelines, and a transaction cannot span nodes anyway)."""
        if len(calls) == 1 or self._cluster:
            return [self._run(name, keys, args) for keys, args in calls]
        with self.client.pipeline(transaction=True) as pipe:
            for keys, args in calls:
                self._run(name, keys, args, client=pipe)
            return list(pipe.execute())

    # --- writing ------------------------------------------------------------------------------

    def enqueue(self, ops: Sequence[Operation]) -> int:
        batch = list(ops)
        for op in batch:
            if not isinstance(op, Operation):
                raise TypeError(f"enqueue takes Operations, not {type(op).__name__}")
        if not batch:
            return 0
        by_shard: dict[int, list[Operation]]
        if self.shards == 1:
            by_shard = {0: batch}
        else:
            by_shard = defaultdict(list)
            for op in batch:
                by_shard[shard_of(op.person_key, self.shards)].append(op)
        remember = "1" if self.remember_delivered > 0 else "0"
        calls = []
        for shard, shard_ops in by_shard.items():
            for chunk in chunks(shard_ops, CHUNK):
                oldest: dict[str, float] = {}
                quads: list[Any] = []
                for op in chunk:
                    created_at = op.created_at
                    second = bucket(created_at)
                    note_oldest(oldest, second, created_at)
                    quads += (op.op_id, op.person_key, encode(op), second)
                calls.append((self._keys[shard], [remember, *oldest_args(oldest), *quads]))
        added = sum(self._run_many("enqueue", calls))
        if self.wait_replicas:
            self._wait_for_replicas()
        return int(added)

    def _wait_for_replicas(self) -> None:
        confirmed = int(self.client.wait(self.wait_replicas, int(self.wait_timeout * 1000)))
        if confirmed < self.wait_replicas:
            raise ReplicationError(
                f"only {confirmed} of {self.wait_replicas} Redis replicas confirmed the enqueue "
                f"within {self.wait_timeout} s"
            )

    # --- leasing ------------------------------------------------------------------------------

    def lease(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[Lease]:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        if limit <= 0:
            return []
        now = now_or(now)
        until = now + lease_seconds
        leases: list[Lease] = []
        first = next(self._rotation) % self.shards  # round-robin: no shard starves the others
        for step in range(self.shards):
            keys = self._keys[(first + step) % self.shards]
            while (want := min(limit - len(leases), SETTLE_CHUNK)) > 0:
                # One consumer per script call: it is deleted as soon as it holds nothing.
                consumer = f"{self.consumer}:{next(self._leases_made)}"
                args = [repr(now), repr(until), want, consumer]
                got = self._leases(self._run("lease", keys, args), consumer, until)
                leases.extend(got)
                if len(got) < want:  # this shard has nothing more due
                    break
            if len(leases) >= limit:
                break
        return leases

    @staticmethod
    def _leases(reply: list[Any], consumer: str, until: float) -> list[Lease]:
        # The hot loop of every worker: one record decoded and one lease made per operation.
        prefix = f"{consumer} "
        leases = []
        values = iter(reply)
        for op_id, record, attempts, entry_id in zip(values, values, values, values, strict=True):
            op = decode(op_id, record)
            token = prefix + entry_id.decode()
            if attempts is None:
                leases.append(new_lease(op, token, 0, until))
            else:
                count, error = orjson.loads(attempts)
                leases.append(new_lease(op, token, count, until, error))
        return leases

    def _by_shard(self, leases: Iterable[Lease]) -> dict[int, list[tuple[Lease, str, str]]]:
        """Leases per shard with their (consumer, entry id); tokens not ours are left out."""
        grouped: dict[int, list[tuple[Lease, str, str]]] = defaultdict(list)
        one_shard = self.shards == 1
        for lease in leases:
            if (parts := split_token(lease.token)) is not None:
                shard = 0 if one_shard else shard_of(lease.op.person_key, self.shards)
                grouped[shard].append((lease, *parts))
        return grouped

    def ack(self, leases: Iterable[Lease]) -> None:
        now = time.time()
        forget_before = repr(now - self.remember_delivered) if self.remember_delivered > 0 else ""
        calls = []
        for shard, held in self._by_shard(leases).items():
            for chunk in chunks(held, SETTLE_CHUNK):
                consumers = list({consumer for _lease, consumer, _entry in chunk})
                args: list[Any] = [repr(now), forget_before, len(consumers), *consumers]
                for lease, _consumer, entry_id in chunk:
                    op = lease.op
                    args += (op.op_id, op.person_key, entry_id, bucket(op.created_at))
                calls.append((self._keys[shard], args))
        # One round trip per call, not one transaction: acks need no atomicity across calls, and
        # other clients' commands run in between (see SETTLE_CHUNK).
        for keys, args in calls:
            self._run("ack", keys, args)

    def release(
        self, leases: Iterable[Lease], *, delay: float = 0.0, now: float | None = None
    ) -> None:
        if delay > 0:
            self._defer(list(leases), now_or(now) + delay)
            return
        for shard, held in self._by_shard(leases).items():
            for chunk in chunks(held, CHUNK):
                args = [
                    part for _lease, consumer, entry_id in chunk for part in (consumer, entry_id)
                ]
                self._run("release", self._keys[shard], args)

    def _defer(self, leases: list[Lease], not_before: float) -> None:
        """A delayed release is a retry that counts no attempt: the head waits in the retry set
        (out of the stream, so nobody else's work waits behind it) with its record unchanged."""
        calls = []
        for lease in leases:
            if (parts := split_token(lease.token)) is None:
                continue
            keys = self._keys[shard_of(lease.op.person_key, self.shards)]
            record = orjson.dumps([lease.attempts, lease.last_error])
            calls.append(
                (keys, [lease.op.op_id, *parts, lease.op.person_key, repr(not_before), record])
            )
        for chunk in chunks(calls, CHUNK):
            self._run_many("retry", chunk)

    def extend(
        self, leases: Iterable[Lease], lease_seconds: float, *, now: float | None = None
    ) -> None:
        until = repr(now_or(now) + lease_seconds)
        for shard, held in self._by_shard(leases).items():
            consumers = list({consumer for _lease, consumer, _entry in held})
            for chunk in chunks(consumers, CHUNK):
                self._run("extend", self._keys[shard], [until, *chunk])

    def mark_sending(self, lease: Lease) -> None:
        if (parts := split_token(lease.token)) is None:
            return
        keys = self._keys[shard_of(lease.op.person_key, self.shards)]
        record = orjson.dumps([lease.attempts, SENDING_MARK])
        self._run("mark", keys, [lease.op.op_id, *parts, record])

    def retry_later(
        self, lease: Lease, *, retry_at: float, error: str, now: float | None = None
    ) -> None:
        if (parts := split_token(lease.token)) is None:
            return
        keys = self._keys[shard_of(lease.op.person_key, self.shards)]
        attempts = orjson.dumps([lease.attempts + 1, error])
        args = [lease.op.op_id, *parts, lease.op.person_key, repr(retry_at), attempts]
        self._run("retry", keys, args)

    def dead_letter(
        self, lease: Lease, reason: DeadReason, detail: str, *, now: float | None = None
    ) -> None:
        reason = DeadReason(reason)
        if (parts := split_token(lease.token)) is None:
            return
        dead_at = now_or(now)
        info = orjson.dumps(
            [
                lease.op.kind.value,
                reason.value,
                detail,
                dead_attempts(lease.attempts, reason),
                dead_at,
            ]
        )
        keys = self._keys[shard_of(lease.op.person_key, self.shards)]
        op = lease.op
        args = [op.op_id, *parts, op.person_key, bucket(op.created_at), info, repr(dead_at)]
        self._run("dead", keys, args)

    # --- dead letters (redis_dead.py) ---------------------------------------------------------

    def list_dead(
        self,
        where: DeadLetterFilter = EVERY_DEAD_LETTER,
        *,
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> list[DeadLetter]:
        return self._dead.list_dead(where, limit, offset, now_or(now))

    def count_dead(
        self, where: DeadLetterFilter = EVERY_DEAD_LETTER, *, now: float | None = None
    ) -> int:
        return self._dead.count_dead(where, now_or(now), every=where == EVERY_DEAD_LETTER)

    def replay(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        return self._dead.replay(where, now_or(now))

    def purge(self, where: DeadLetterFilter, *, now: float | None = None) -> int:
        return self._dead.purge(where, now_or(now))

    # --- inspection ---------------------------------------------------------------------------

    def _depths(self, now: float) -> list[list[Any]]:
        return self._run_many("depth", [(keys, [repr(now)]) for keys in self._keys])

    def depth(self, *, now: float | None = None) -> Depth:
        now = now_or(now)
        pending = leased = scheduled = dead = 0
        oldest: float | None = None
        for shard_pending, shard_leased, shard_scheduled, shard_dead, created in self._depths(now):
            pending += shard_pending
            leased += shard_leased
            scheduled += shard_scheduled
            dead += shard_dead
            if created is not None:
                oldest = float(created) if oldest is None else min(oldest, float(created))
        return Depth(
            ready=pending - leased - scheduled,
            scheduled=scheduled,
            leased=leased,
            dead=dead,
            oldest_waiting_age=None if oldest is None else max(0.0, now - oldest),
        )

    def wait_until_empty(self, timeout: float) -> bool:
        """Block until nothing is pending (all delivered or dead), or ``timeout`` seconds pass;
        True if empty. Woken by the ack/dead-letter scripts, not by polling."""
        deadline = time.monotonic() + timeout
        while True:
            busy = [
                self._keys[shard]
                for shard, depth in enumerate(self._depths(time.time()))
                if depth[0] > 0
            ]
            if not busy:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.client.blpop([busy[0].idle], timeout=min(left, WAIT_SLICE_SECONDS))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self.client.close()
