"""Opening the Redis outbox: its client, its URL, its scripts, and the checks made at opening.

``RedisOutbox`` makes its own client from a URL (``connect``): timeouts that fail a call rather
than hang a worker, and ``CommandPacker``, which packs every command in one hiredis call. The
URL carries the outbox's own options next to redis-py's (``outbox_options``). Opening refuses a
namespace created with another shard count and an ``allkeys-*`` eviction policy, and warns when
``appendonly`` is off (``check_shard_count``, ``check_persistence``). The Lua scripts ship as
package data (``outbox/lua``) and are loaded with ``common.lua``'s helpers (``load_scripts``).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import hiredis
import redis
from redis.commands.core import Script
from redis.exceptions import DataError

from cio_relay.errors import ConfigError
from cio_relay.outbox.redis_keys import GROUP, meta_key
from cio_relay.outbox.redis_records import text

__all__ = [
    "SCRIPTS",
    "CommandPacker",
    "RedisClient",
    "check_persistence",
    "check_shard_count",
    "connect",
    "connect_cluster",
    "load_script_source",
    "load_scripts",
    "outbox_options",
]

log = logging.getLogger("cio_relay.outbox.redis")

#: What a RedisOutbox talks to: one Redis (or a primary with replicas) or a Redis Cluster.
RedisClient = redis.Redis | redis.cluster.RedisCluster

SCRIPTS = (
    "enqueue",
    "lease",
    "ack",
    "retry",
    "mark",
    "extend",
    "dead",
    "release",
    "revive",
    "purge",
    "depth",
)

#: The outbox's own options in its URL, and how each is read.
_URL_OPTIONS: dict[str, Any] = {"shards": int, "namespace": str, "remember_delivered": float}


def load_script_source(name: str) -> str:
    """A script's Lua source: the group name, common.lua's helpers, then the script itself."""
    lua = resources.files("cio_relay.outbox").joinpath("lua")
    common = lua.joinpath("common.lua").read_text()
    return f"local GROUP = '{GROUP}'\n{common}\n{lua.joinpath(f'{name}.lua').read_text()}"


def load_scripts(client: RedisClient) -> dict[str, Script]:
    """Every outbox script, registered with ``client`` (loaded on first use, by hash after)."""
    return {name: client.register_script(load_script_source(name)) for name in SCRIPTS}


class CommandPacker:
    """Packs commands for the outbox's own client with one hiredis call.

    redis-py's default packer passes every argument through a Python encoder first; script calls
    carry a few arguments per operation, so on every enqueue and ack that was a large share of
    the caller's CPU in the client (docs/benchmarks.md). hiredis packs str (as UTF-8), bytes,
    int and float itself; bytearray and memoryview are copied to bytes, and anything else (a
    bool, None) is refused with redis-py's DataError, as the default packer does.
    """

    def pack(self, *args: Any) -> list[bytes]:
        name = args[0]
        if (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name):
            args = (*name.split(), *args[1:])  # "SCRIPT LOAD": two words on the wire
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
            try:
                return [hiredis.pack_command(args)]
            except TypeError as exc:
                raise DataError(f"invalid argument for a Redis command: {exc}") from None


def connect(url: str) -> redis.Redis:
    """The outbox's own client for one Redis (``redis://``/``rediss://``)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        command_packer=CommandPacker(),
    )


def connect_cluster(url: str) -> redis.cluster.RedisCluster:
    """The outbox's own client for a Redis Cluster, through the node in ``url``."""
    return redis.cluster.RedisCluster.from_url(url, socket_timeout=10)


def outbox_options(url: str, options: dict[str, Any]) -> tuple[str, bool]:
    """Move the outbox's options out of ``url``'s query into ``options`` (where a value given
    there wins); the URL left for redis-py, and whether it names a Redis Cluster
    (``cluster=1``)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    cluster = query.pop("cluster", ["0"])[-1].lower() in ("1", "true", "yes")
    for name, convert in _URL_OPTIONS.items():
        if name in query:
            value = query.pop(name)[-1]
            try:
                options.setdefault(name, convert(value))
            except ValueError:
                raise ConfigError(f"outbox URL: {name} must be a number, got {value!r}") from None
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True))), cluster


def check_shard_count(client: RedisClient, namespace: str, shards: int) -> None:
    """Refuse to open a namespace with another shard count than it was created with."""
    key = meta_key(namespace)
    client.hsetnx(key, "shards", shards)
    stored = int(client.hget(key, "shards") or 0)
    if stored != shards:
        raise ConfigError(
            f"the Redis outbox namespace {namespace!r} was created with {stored} shards; "
            f"it cannot be opened with shards={shards} (people would change shards)"
        )


def check_persistence(client: RedisClient) -> None:
    """Refuse an eviction policy that drops keys under memory pressure; warn without an
    append-only file."""
    try:
        config = {**client.config_get("appendonly"), **client.config_get("maxmemory-policy")}
    except redis.ResponseError:  # managed services often disable CONFIG
        log.debug("cannot read the Redis persistence settings (CONFIG is disabled)")
        return
    settings = {str(k): text(v) for k, v in config.items() if isinstance(v, str | bytes)}
    policy = settings.get("maxmemory-policy", "noeviction")
    if policy.startswith("allkeys-"):
        raise ConfigError(
            f"Redis runs maxmemory-policy={policy}: it would evict pending operations under "
            "memory pressure; set maxmemory-policy noeviction for the outbox's Redis"
        )
    if settings.get("appendonly") != "yes":
        log.warning(
            "Redis runs with appendonly=no: operations acknowledged since the last snapshot "
            "are lost if Redis stops; set appendonly yes (see docs/scaling.md)"
        )
