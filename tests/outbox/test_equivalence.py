"""SqliteOutbox behaves exactly like MemoryOutbox (the reference) on random operation sequences:
every answer (leases in order, counts, dead letters, depth) must match."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings

from cio_relay.outbox.sqlite import SqliteOutbox
from tests.outbox.equivalence import SameAsMemory


class SqliteSameAsMemory(SameAsMemory):
    def open_other(self) -> SqliteOutbox:
        self.tmp = tempfile.TemporaryDirectory(prefix="outbox-equivalence-")
        return SqliteOutbox(Path(self.tmp.name) / "outbox.db")

    def close_other(self) -> None:
        self.other.close()
        self.tmp.cleanup()


SqliteSameAsMemory.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_sqlite_outbox_matches_memory_outbox = SqliteSameAsMemory.TestCase
