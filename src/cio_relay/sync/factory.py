"""``user_store_for(outbox)``: the user store that commits together with an outbox (store.py)."""

from __future__ import annotations

from cio_relay.errors import ConfigError
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.sync.memory_store import MemoryUserStore
from cio_relay.sync.sqlite_store import SqliteUserStore
from cio_relay.sync.store import UserStore

__all__ = ["user_store_for"]


def user_store_for(outbox: Outbox) -> UserStore:
    """The user store that commits with ``outbox``; ``ConfigError`` for one that has none."""
    if isinstance(outbox, SqliteOutbox):
        return SqliteUserStore(outbox)
    if isinstance(outbox, MemoryOutbox):
        return MemoryUserStore(outbox)
    raise ConfigError(
        f"user sync keeps its state in the outbox's own transactions, which {type(outbox).__name__}"
        " cannot share; set CIO_RELAY_OUTBOX to a sqlite:/// (or memory://) outbox to use it"
    )
