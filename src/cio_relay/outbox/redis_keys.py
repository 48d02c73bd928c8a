"""Every Redis key, consumer-group name and TTL the Redis outbox and the shared rate limiter use.

Redis Cluster: every key one Lua script touches shares one hash tag, so each script runs on one
node. The outbox's keys are grouped per *shard* (``{<namespace>:<shard>}``); a person's
operations always live in one shard (``shard_of``), so every script works on one shard. The
namespace's metadata and each rate limit have their own tags, touched by their own calls.

Keys of shard ``s`` in namespace ``ns`` (tag ``T = {ns:s}``):

- ``T:stream`` (stream): one entry (field ``o`` = op id) per person whose head is ready or
  leased. The consumer group ``relay`` hands entries out (XREADGROUP) to one consumer per lease
  call; its pending list is the lease ledger (which consumer holds which entry). Entries older
  than the oldest pending or unread one are trimmed (XTRIM MINID), never by MAXLEN.
- ``T:leases`` (zset): consumer -> lease_until of that lease call; the consumer ``~released``
  (deadline 0) holds leases given back with ``release``.
- ``T:ops`` (hash): op id -> record, orjson ``[kind, created_at, env, identifiers, payload]``,
  of every pending operation.
- ``T:heads`` (hash): person key -> ``"<hint><entry id> <head op id>"`` for every person with
  pending work: the person's oldest pending op (the only one ever active) and its stream entry
  (``-`` while it waits in ``T:retry``); the hint is ``+`` when ops may wait behind the head in
  ``T:q:<person_key>`` and ``.`` when none do (common.lua).
- ``T:q:<person_key>`` (list): the op ids waiting behind the person's head, oldest first.
- ``T:retry`` (zset): person key -> retry_at: heads waiting to retry, out of the stream.
- ``T:attempts`` (hash): op id -> orjson ``[attempts, last_error]`` (ops that were retried).
- ``T:age_count`` (hash) and ``T:age_min`` (zset): pending ops per second of ``created_at``,
  and the oldest ``created_at`` seen in each second (the oldest waiting age, to the second).
- ``T:done`` (zset): op id -> acked at: delivered ids, while ``remember_delivered`` is set.
- ``T:dead`` (hash): op id -> record of a dead letter (the same bytes as in ``T:ops``).
- ``T:dead_info`` (hash): op id -> orjson ``[kind, reason, detail, attempts, dead_at, seq]``;
  ``seq`` (from the counter ``T:dead_seq``) orders dead letters with equal ``dead_at``.
- ``T:dead_at`` (zset): op id -> dead_at (newest first, pagination, ``older_than``).
- ``T:idle`` (list): one element, pushed when the shard's last pending op leaves
  (``RedisOutbox.wait_until_empty`` blocks on it).

Outside the shards: ``{ns}:meta`` (hash: ``shards``, fixed at creation) and
``{ns:ratelimit:<scope>:<family>}`` (hash: ``tat``, ``paused_until``; expires once idle).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = [
    "DELIVERED_TTL_SECONDS",
    "GROUP",
    "SCRIPT_KEY_NAMES",
    "ShardKeys",
    "check_namespace",
    "meta_key",
    "ratelimit_key",
    "shard_keys",
    "shard_of",
]

#: The consumer group every worker reads the shard streams through.
GROUP = "relay"

#: How long an acknowledged (delivered) op id is remembered by default, so that enqueueing it
#: again (a caller retrying long after a lost reply) is still a duplicate. 0, as in the SQLite
#: and memory outboxes: an id is remembered while pending or dead-lettered; a retry within
#: milliseconds (redis-py's own) finds it still pending, and past delivery Customer.io
#: de-duplicates Track events by ``id`` (the op id). ``RedisOutbox(remember_delivered=300)`` keeps
#: them; memory grows with delivery rate x seconds (docs/benchmarks.md: the size of one id).
DELIVERED_TTL_SECONDS = 0.0

#: The order in which every outbox script receives its shard's keys as ``KEYS`` (common.lua
#: names them in this order); the prefix of the waiting lists comes last.
SCRIPT_KEY_NAMES = (
    "ops",
    "heads",
    "leases",
    "retry",
    "attempts",
    "age_count",
    "age_min",
    "stream",
    "done",
    "dead",
    "dead_info",
    "dead_at",
    "idle",
    "dead_seq",
    "waiting_prefix",
)


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The key names of one shard; ``script_keys`` is what every outbox script gets as KEYS."""

    tag: str

    def key(self, name: str) -> str:
        return f"{self.tag}:{name}"

    @property
    def stream(self) -> str:
        return self.key("stream")

    @property
    def dead(self) -> str:
        return self.key("dead")

    @property
    def dead_info(self) -> str:
        return self.key("dead_info")

    @property
    def dead_at(self) -> str:
        return self.key("dead_at")

    @property
    def idle(self) -> str:
        return self.key("idle")

    @property
    def ops(self) -> str:
        return self.key("ops")

    def waiting(self, person_key: str) -> str:
        return self.key(f"q:{person_key}")

    @property
    def script_keys(self) -> list[str]:
        return [self.key("q:") if n == "waiting_prefix" else self.key(n) for n in SCRIPT_KEY_NAMES]


def check_namespace(namespace: str) -> str:
    """A namespace is part of a hash tag: it must be non-empty and free of braces."""
    if not namespace or "{" in namespace or "}" in namespace:
        raise ValueError(
            f"namespace must be a non-empty string without '{{' or '}}', got {namespace!r}"
        )
    return namespace


def shard_keys(namespace: str, shard: int) -> ShardKeys:
    return ShardKeys(f"{{{namespace}:{shard}}}")


def shard_of(person_key: str, shards: int) -> int:
    """The shard a person's operations live in: CRC-32, the same on every machine and process
    (Python's ``hash`` is salted per process)."""
    if shards == 1:
        return 0
    return zlib.crc32(person_key.encode()) % shards


def meta_key(namespace: str) -> str:
    return f"{{{namespace}}}:meta"


def ratelimit_key(namespace: str, scope: str, family: str) -> str:
    """One rate limit: ``scope`` separates Customer.io workspaces sharing a Redis."""
    return f"{{{namespace}:ratelimit:{scope}:{family}}}"
