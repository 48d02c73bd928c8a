"""``open_outbox(url)``: pick an outbox backend from a URL (``CIO_RELAY_OUTBOX``).

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling), or a
  bare file path: ``SqliteOutbox``; parent directories are created.
- ``memory://``: ``MemoryOutbox`` (tests; nothing survives the process).
- ``redis://host:port/db`` (or ``rediss://``, ``?shards=N&namespace=name``): ``RedisOutbox``;
  its durability is the Redis server's persistence settings (docs/scaling.md).

``open_outbox_when_reachable`` is how the long-running commands (``cio-relay run`` and
``cio-relay worker``) open it: a Redis still starting, or a volume not mounted yet, is waited
for; only settings that cannot work (``ConfigError``) end the wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from cio_relay.backoff import growing_delays
from cio_relay.errors import ConfigError
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import Durability, SqliteOutbox

__all__ = ["SCHEMES", "open_outbox", "open_outbox_when_reachable"]

log = logging.getLogger("cio_relay.outbox")

#: Waits between tries to open an unreachable outbox: 0.5 s doubling up to 10 s.
_OPEN_FIRST, _OPEN_MOST = 0.5, 10.0

SCHEMES = ("sqlite", "memory", "redis", "rediss")


def open_outbox(url_or_path: str | Path, *, durability: Durability = "process") -> Outbox:
    """Open the outbox that ``url_or_path`` names.

    ``durability`` applies to file-backed outboxes: ``"process"`` survives ``kill -9``,
    ``"power"`` survives power loss (an fsync per commit).

    Raises ``ConfigError`` for an unknown scheme, a backend not available yet, or a missing path.
    """
    text = str(url_or_path).strip()
    scheme, separator, rest = text.partition("://")
    if not separator:  # no scheme: a file path
        return _open_sqlite(text, durability)
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(
                f"outbox URL {text!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        return _open_sqlite(rest[1:], durability)
    if scheme == "memory":
        return MemoryOutbox()
    if scheme in ("redis", "rediss"):
        try:
            from cio_relay.outbox.redis import RedisOutbox
        except ImportError:  # redis-py is an optional extra
            raise ConfigError(
                "the Redis outbox needs redis-py: pip install 'cio-relay[redis]'"
            ) from None
        return RedisOutbox.from_url(text)
    raise ConfigError(
        f"outbox URL has unknown scheme {scheme!r}; expected one of "
        + ", ".join(f"{name}://" for name in SCHEMES)
    )


def _open_sqlite(path_text: str, durability: Durability) -> SqliteOutbox:
    if not path_text:
        raise ConfigError("outbox URL names no file: write sqlite:///path/to/outbox.db")
    path = Path(path_text).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteOutbox(path, durability=durability)


def open_outbox_when_reachable(
    url_or_path: str | Path,
    *,
    durability: Durability = "process",
    wait: Callable[[float], bool],
) -> Outbox | None:
    """``open_outbox``, tried again while it fails for any reason but ``ConfigError``.

    ``wait(seconds)`` pauses between tries and returns True to give up (a stop was asked for:
    then None is returned), e.g. ``threading.Event().wait``.
    """
    delays = growing_delays(_OPEN_FIRST, _OPEN_MOST)
    while True:
        try:
            return open_outbox(url_or_path, durability=durability)
        except ConfigError:
            raise
        except Exception as exc:
            delay = next(delays)
            # The class only: a connection error's text names the host and port.
            log.error(
                "the outbox cannot be opened (%s); trying again in %.1f s",
                type(exc).__name__,
                delay,
            )
            if wait(delay):
                return None
