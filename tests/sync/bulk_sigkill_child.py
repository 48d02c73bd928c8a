"""A bulk sync that kills itself with SIGKILL partway, for tests/sync/test_bulk_postgres.py.

    python bulk_sigkill_child.py <postgres url> <outbox file> <batch size> <batches> <where>

runs ``BulkSync`` over the ``users`` table into the SQLite outbox file and SIGKILLs its own
process once ``<batches>`` batches have committed: ``between`` kills from ``on_progress`` (after
the batch's commit), ``inside`` kills inside the next batch's transaction, once its people's
states and outbox rows are written but before the commit; ``removing`` runs with
``removed="delete"`` and kills from ``on_progress`` once ``<batches>`` batches of removed
people are erased. No sleep, no timing: the kill point is a count. Exits 3 if the run ends
without being killed (the parent then fails).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from collections.abc import Sequence

from cio_relay.config import Settings
from cio_relay.operations import Operation
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from cio_relay.sync.bulk import BulkSync
from cio_relay.sync.runs import SyncRun
from cio_relay.sync.spec import RemovedPolicy, SyncSpec

NOT_KILLED = 3


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingOutbox(SqliteOutbox):
    """A SQLite outbox whose ``enqueue_in`` (called by the user store inside a batch's
    transaction) kills the process on its call number ``kill_on``, after writing its rows."""

    kill_on = 0
    calls = 0

    def enqueue_in(self, conn: sqlite3.Connection, ops: Sequence[Operation]) -> int:
        written = super().enqueue_in(conn, ops)
        KillingOutbox.calls += 1
        if KillingOutbox.calls == self.kill_on:
            kill_myself()
        return written


def main(url: str, outbox_path: str, batch_size: int, batches: int, where: str) -> int:
    outbox = KillingOutbox(outbox_path)
    if where == "inside":
        KillingOutbox.kill_on = batches + 1
    relay = Relay(Settings(stamp_env=False), outbox=outbox)
    removed: RemovedPolicy = "delete" if where == "removing" else "ignore"
    spec = SyncSpec(source=url, table="users", batch_size=batch_size, removed=removed)

    def on_progress(run: SyncRun) -> None:
        done = run.removed if where == "removing" else run.rows_read
        if where != "inside" and done >= batches * batch_size:
            kill_myself()

    BulkSync(UserRepository(relay), spec).run(on_progress=on_progress)
    return NOT_KILLED


if __name__ == "__main__":
    url, outbox_path, batch_size, batches, where = sys.argv[1:]
    sys.exit(main(url, outbox_path, int(batch_size), int(batches), where))
