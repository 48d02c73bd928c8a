"""The Redis outbox's dead letters: listing, counting, replaying and purging them.

Each shard keeps its dead letters in a hash (op id -> record, ``T:dead``), their details in
another (op id -> ``[kind, reason, detail, attempts, dead_at, seq]``, ``T:dead_info``) and a
sorted set by ``dead_at`` (``T:dead_at``), not a stream. Idempotent enqueue must find a dead op
id in O(1), ``dlq show/replay/purge`` address single ids, and listing is newest first with
pagination and ``older_than`` (a score range); a stream indexes none of that but time. Filters
by kind or reason scan the shard newest first, like SQLite's dead-letter index: dead letters
are an operator's volume, not a firehose. Dead-lettering itself is a settle script of the
outbox (``dead.lua``); replaying and purging are scripts too (``revive.lua``, ``purge.lua``).
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from cio_relay.operations import Operation
from cio_relay.outbox.base import DeadLetter, DeadLetterFilter, DeadReason
from cio_relay.outbox.redis_connection import RedisClient
from cio_relay.outbox.redis_keys import ShardKeys
from cio_relay.outbox.redis_records import bucket, chunks, decode, oldest_by_bucket, text

__all__ = ["DEAD_PAGE", "RedisDeadLetters"]

#: Dead letters fetched per round trip while scanning with a filter.
DEAD_PAGE = 500

#: Runs one outbox script on one shard's keys: ``run(name, keys, args)``.
RunScript = Callable[[str, ShardKeys, list[Any]], Any]
#: A matching dead letter: (shard, op id, info).
Row = tuple[int, str, list[Any]]


class RedisDeadLetters:
    """The dead letters of every shard of one outbox namespace, newest first."""

    def __init__(self, client: RedisClient, keys: list[ShardKeys], run: RunScript, chunk: int):
        self.client = client
        self._keys = keys
        self._run = run
        self._chunk = chunk  # operations per script call

    def list_dead(
        self, where: DeadLetterFilter, limit: int, offset: int, now: float
    ) -> list[DeadLetter]:
        offset = max(offset, 0)
        rows = list(itertools.islice(self._newest_first(where, now), offset, offset + limit))
        return [
            DeadLetter(op, DeadReason(info[1]), info[2], info[3], info[4])
            for op, (_shard, _op_id, info) in self._with_records(rows)
        ]

    def count_dead(self, where: DeadLetterFilter, now: float, *, every: bool) -> int:
        """How many match ``where``; ``every``: the filter matches all (counted per shard)."""
        if every:
            with self.client.pipeline(transaction=False) as pipe:
                for keys in self._keys:
                    pipe.hlen(keys.dead)
                return sum(int(n) for n in pipe.execute())
        return sum(1 for _ in self._newest_first(where, now))

    def replay(self, where: DeadLetterFilter, now: float) -> int:
        rows = list(self._newest_first(where, now))[::-1]  # oldest first
        revived = 0
        for chunk in chunks(rows, self._chunk):
            by_shard: dict[int, list[Operation]] = defaultdict(list)
            for op, (shard, _op_id, _info) in self._with_records(chunk):
                by_shard[shard].append(op)
            for shard, shard_ops in by_shard.items():
                args: list[Any] = oldest_by_bucket(shard_ops)
                for op in shard_ops:
                    args += (op.op_id, op.person_key, bucket(op.created_at))
                revived += int(self._run("revive", self._keys[shard], args))
        return revived

    def purge(self, where: DeadLetterFilter, now: float) -> int:
        by_shard: dict[int, list[str]] = defaultdict(list)
        for shard, op_id, _info in self._newest_first(where, now):
            by_shard[shard].append(op_id)
        return sum(
            int(self._run("purge", self._keys[shard], chunk))
            for shard, ids in by_shard.items()
            for chunk in chunks(ids, self._chunk)
        )

    # --- finding ------------------------------------------------------------------------------

    def _newest_first(self, where: DeadLetterFilter, now: float) -> Iterator[Row]:
        """(shard, op_id, info) of every matching dead letter, newest first across shards (equal
        times in the order they died within a shard; across shards, in no particular order)."""

        def tagged(shard: int) -> Iterator[tuple[tuple[float, int], str, list[Any], int]]:
            for order, op_id, info in self._in_shard(self._keys[shard], where, now):
                yield order, op_id, info, shard

        streams = [tagged(shard) for shard in range(len(self._keys))]
        for _order, op_id, info, shard in heapq.merge(*streams, key=lambda r: r[0], reverse=True):
            yield shard, op_id, info

    def _in_shard(
        self, keys: ShardKeys, where: DeadLetterFilter, now: float
    ) -> Iterator[tuple[tuple[float, int], str, list[Any]]]:
        """((dead_at, seq), op_id, info) of one shard's matching dead letters, newest first."""
        if where.op_ids:
            rows: Iterable[tuple[list[Any], str]] = self._by_ids(keys, where.op_ids)
        else:
            rows = self._by_time(keys, where, now)
        for info, op_id in rows:
            if _matches(where, info, now):
                yield (info[4], info[5]), op_id, info

    def _by_ids(self, keys: ShardKeys, op_ids: Iterable[str]) -> list[tuple[list[Any], str]]:
        ids = list(dict.fromkeys(op_ids))
        infos = self.client.hmget(keys.dead_info, ids)
        rows = [(orjson.loads(info), op_id) for op_id, info in zip(ids, infos, strict=True) if info]
        return sorted(rows, key=lambda row: (row[0][4], row[0][5]), reverse=True)

    def _by_time(
        self, keys: ShardKeys, where: DeadLetterFilter, now: float
    ) -> Iterator[tuple[list[Any], str]]:
        """Newest first by ``dead_at`` (a score range), equal ``dead_at`` by ``seq``."""
        # Scores are exact doubles; the bound is widened a hair and the exact test applied later.
        top = "+inf" if where.older_than is None else repr(now - where.older_than + 1e-6)
        same_time: list[tuple[list[Any], str]] = []
        offset = 0
        while page := self._page(keys, top, offset):
            offset += len(page)
            for member, info in zip(page, self.client.hmget(keys.dead_info, page), strict=True):
                if info is None:  # purged meanwhile
                    continue
                decoded = orjson.loads(info)
                if same_time and decoded[4] != same_time[0][0][4]:
                    yield from sorted(same_time, key=lambda row: row[0][5], reverse=True)
                    same_time = []
                same_time.append((decoded, text(member)))
        yield from sorted(same_time, key=lambda row: row[0][5], reverse=True)

    def _page(self, keys: ShardKeys, top: str, offset: int) -> list[Any]:
        page: list[Any] = self.client.zrevrangebyscore(
            keys.dead_at, top, "-inf", start=offset, num=DEAD_PAGE
        )
        return page

    def _with_records(self, rows: list[Row]) -> list[tuple[Operation, Row]]:
        """Dead letters with their operations, in the order given (minus any purged meanwhile)."""
        ops: list[Operation | None] = [None] * len(rows)
        by_shard: dict[int, list[int]] = defaultdict(list)
        for index, (shard, _op_id, _info) in enumerate(rows):
            by_shard[shard].append(index)
        for shard, indexes in by_shard.items():
            for chunk in chunks(indexes, self._chunk):
                ids = [rows[i][1] for i in chunk]
                records = self.client.hmget(self._keys[shard].dead, ids)
                for i, record in zip(chunk, records, strict=True):
                    if isinstance(record, bytes):  # None if purged meanwhile
                        ops[i] = decode(rows[i][1].encode(), record)
        return [(op, row) for op, row in zip(ops, rows, strict=True) if op is not None]


def _matches(where: DeadLetterFilter, info: list[Any], now: float) -> bool:
    kind, reason, _detail, _attempts, dead_at, _seq = info
    return (
        (where.kind is None or kind == where.kind)
        and (where.reason is None or reason == where.reason)
        and (where.older_than is None or now - dead_at >= where.older_than)
    )
