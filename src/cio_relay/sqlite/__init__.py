"""The one SQLite layer under every SQLite store of cio-relay (private: no public API).

The outbox (``outbox/sqlite.py``), the webhook inbox (``webhooks/sqlite_inbox.py``) and the
idempotency keys (``server/idempotency.py``) each hold a ``Database`` and bring only their
schema and their SQL. Everything else is here, once:

- ``connection.py``: opening a file, the durability levels and the one set of pragmas;
- ``migrations.py``: versioned schemas, forward steps;
- ``group_commit.py``: concurrent writers share transactions;
- ``checkpoint.py``: WAL checkpoints on a thread beside the writers;
- ``database.py``: ``Database``, the writer and reader connections and the three ways to write;
- ``loop_writes.py``: writes from coroutines, on the loop's thread when nothing can wait.
"""

from cio_relay.sqlite.connection import BUSY_TIMEOUT, ClosedError, Durability, check_durability
from cio_relay.sqlite.database import Database, Work
from cio_relay.sqlite.loop_writes import LoopWrites
from cio_relay.sqlite.migrations import Steps

__all__ = [
    "BUSY_TIMEOUT",
    "ClosedError",
    "Database",
    "Durability",
    "LoopWrites",
    "Steps",
    "Work",
    "check_durability",
]
