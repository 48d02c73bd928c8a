"""User sync: the repository pattern over the outbox (issue 14, first slice).

``UserRepository`` / ``AsyncUserRepository`` (repository.py) diff each person against what was
last sent (plans.py) and record the new state with its outbox operations in one commit
(store.py; sqlite_store.py for the SQLite outbox's file).

Two-way preferences (preferences.py): subscription webhooks update the local preferences
without enqueueing anything. Per field (``unsubscribed``, each ``topic_<id>``) the latest
timestamp wins: an app change stamped with its own time, a webhook with its event
``timestamp``; a tie goes to the webhook, Customer.io being the system of record for the
subscription center. ``get(id).preference_times`` says when and from where each was set.
"""

from cio_relay.sync.factory import user_store_for
from cio_relay.sync.memory_store import MemoryUserStore
from cio_relay.sync.preferences import PREFERENCE_PATTERNS, preference_handler
from cio_relay.sync.repository import AsyncUserRepository, UserRepository
from cio_relay.sync.sqlite_store import SqliteUserStore
from cio_relay.sync.store import PreferenceStamp, UserState, UserStore

__all__ = [
    "PREFERENCE_PATTERNS",
    "AsyncUserRepository",
    "MemoryUserStore",
    "PreferenceStamp",
    "SqliteUserStore",
    "UserRepository",
    "UserState",
    "UserStore",
    "preference_handler",
    "user_store_for",
]
