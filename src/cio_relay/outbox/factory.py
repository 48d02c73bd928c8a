"""``open_outbox(url)``: pick an outbox backend from a URL (``CIO_RELAY_OUTBOX``).

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling), or a
  bare file path: ``SqliteOutbox``; parent directories are created.
- ``memory://``: ``MemoryOutbox`` (tests; nothing survives the process).
- ``redis://host:port/db``: not available yet (planned); a clear ``ConfigError`` until then.
"""

from __future__ import annotations

from pathlib import Path

from cio_relay.errors import ConfigError
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import Durability, SqliteOutbox

__all__ = ["SCHEMES", "open_outbox"]

SCHEMES = ("sqlite", "memory")
_PLANNED = ("redis", "rediss")


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
    if scheme in _PLANNED:
        # The Redis streams backend (outbox/redis.py) plugs in here once it exists.
        raise ConfigError(
            f"outbox scheme {scheme!r} is not yet available in this version of cio-relay; "
            "use sqlite:///path/to/outbox.db"
        )
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
