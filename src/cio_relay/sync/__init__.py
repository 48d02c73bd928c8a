"""User sync: the repository pattern over the outbox (issue 14, first slice).

``UserRepository`` / ``AsyncUserRepository`` (repository.py) diff each person against what was
last sent (plans.py) and record the new state with its outbox operations in one commit
(store.py; sqlite_store.py for the SQLite outbox's file).
"""

from cio_relay.sync.factory import user_store_for
from cio_relay.sync.repository import AsyncUserRepository, UserRepository
from cio_relay.sync.sqlite_store import SqliteUserStore
from cio_relay.sync.store import MemoryUserStore, UserState, UserStore

__all__ = [
    "AsyncUserRepository",
    "MemoryUserStore",
    "SqliteUserStore",
    "UserRepository",
    "UserState",
    "UserStore",
    "user_store_for",
]
