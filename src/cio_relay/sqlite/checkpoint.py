"""WAL checkpoints on a thread of their own, beside the writers.

Left to SQLite, a checkpoint runs inside the commit that crosses ``wal_autocheckpoint``: that
commit copies the whole WAL into the database file and fsyncs it, and every caller waiting on
it (a group commit's followers, an event loop writing on its own thread) waits too; under a
steady load those stalls were the whole p99 latency of the ingestion API (docs/benchmarks.md).

So the connections have autocheckpoint off, and after each commit the writer tells the
``Checkpointer`` how many rows its connection has changed; after ``every_changes`` rows or
``every_commits`` commits, whichever comes first, the checkpointer thread, on its own
connection:

1. runs passive checkpoints while the writers go on (the bulk of the copying and the fsyncs;
   SQLite lets writers append to the WAL meanwhile), until one finds little left to copy;
2. then takes the writer's lock and runs one more passive checkpoint for the frames appended
   during the last round: a short pause, after which every frame is in the database file, so
   the next write starts the WAL again from its beginning and the file stays bounded. If a
   large transaction was committed meanwhile (while this thread waited for the lock behind it,
   say a lease admitting a backlog), the lock is let go and step 1 runs again first, so the
   pause stays short.

Step 2 is needed because under steady writes a passive checkpoint never catches up with the
end of the WAL (frames arrive while it copies), and SQLite only reuses the WAL once it has.
Another process's writes are not paused by our lock; that process runs its own checkpointer,
and a round that does not complete is finished by a later one.

Rows and commits both count because either can fill the WAL: a commit writes every page it
dirtied (a few even for one small row), and large rows take pages of their own.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["CHECKPOINT_EVERY_CHANGES", "CHECKPOINT_EVERY_COMMITS", "Checkpointer"]

log = logging.getLogger("cio_relay.sqlite")

#: Rows changed, or commits, between checkpoints (docs/benchmarks.md). Rarer checkpoints copy a
#: hot page once for many commits, at the price of a longer WAL (disk, and the reads that search
#: it); more frequent ones did not cost less CPU, and pause the writers more often.
CHECKPOINT_EVERY_CHANGES = 20_000
CHECKPOINT_EVERY_COMMITS = 2_000
#: Frames still to copy below which the last round is run with the writers paused.
_SMALL_TAIL_FRAMES = 2_000
#: Rows changed while waiting for the writer's lock past which the paused round is put off.
_SMALL_TAIL_CHANGES = 2_000
#: Unpaused rounds before pausing the writers anyway (the WAL must not grow without bound).
_MAX_UNPAUSED_ROUNDS = 4
_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"


class Checkpointer:
    """One file's checkpoints, on a daemon thread started at the first need.

    ``every_changes`` and ``every_commits`` default to the module's settings (read when the
    checkpointer is made, so a benchmark can try others).
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        writer_lock: threading.Lock,
        every_changes: int | None = None,
        every_commits: int | None = None,
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._writer_lock = writer_lock
        self._every = CHECKPOINT_EVERY_CHANGES if every_changes is None else every_changes
        self._next_at = self._every
        self._every_commits = CHECKPOINT_EVERY_COMMITS if every_commits is None else every_commits
        self._commits_left = self._every_commits
        self._due = threading.Event()
        self._requested = False  # a round is due; it runs even if close() comes first
        self._closed = False
        self._thread: threading.Thread | None = None
        self._changes = 0  # the writer's total_changes at its last commit
        self.rounds = 0  # checkpoints completed with every frame copied (tests, diagnostics)
        self.paused_frames = 0  # frames the last round copied with the writers paused (same)

    def wrote(self, total_changes: int) -> None:
        """After a commit, with the writer's ``total_changes``; wakes the thread when due."""
        self._changes = total_changes
        self._commits_left -= 1
        if (total_changes < self._next_at and self._commits_left > 0) or self._closed:
            return
        self._next_at = total_changes + self._every
        self._commits_left = self._every_commits
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"checkpoint {self._path.name}", daemon=True
            )
            self._thread.start()
        self._requested = True
        self._due.set()

    def close(self) -> None:
        """Stop the thread after any round due. Call without holding the writer lock."""
        self._closed = True
        self._due.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            while True:
                self._due.wait()
                self._due.clear()
                if self._requested:
                    self._requested = False
                    try:
                        self._checkpoint(conn)
                    except sqlite3.Error as exc:  # the next round tries again
                        log.warning("checkpoint of %s failed: %s", self._path.name, exc)
                if self._closed:
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        for attempt in range(_MAX_UNPAUSED_ROUNDS):
            copied, copied_up_to = self._copy_unpaused(conn)
            self._writer_lock.acquire()
            # Rows committed since the last unpaused round began are the paused round's work.
            # A large transaction among them (a lease admitting a backlog, committed while this
            # thread waited for the lock) is copied unpaused first, unless that has gone on too
            # long: the WAL must stay bounded.
            tail = self._changes - copied_up_to
            if tail < _SMALL_TAIL_CHANGES or attempt == _MAX_UNPAUSED_ROUNDS - 1:
                break
            self._writer_lock.release()
        try:
            _, wal_frames, copied_paused = conn.execute(_PASSIVE).fetchone()
        finally:
            self._writer_lock.release()
        self.paused_frames = max(0, copied_paused - copied)
        if copied_paused == wal_frames:
            self.rounds += 1

    def _copy_unpaused(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Passive rounds until one finds little to copy; the frames copied by then, and the
        writer's ``total_changes`` when the last round began (everything up to it is copied).

        A passive round copies the WAL up to where it ended when the round began; the frames
        appended meanwhile are the next round's work. Once a round had little to copy, the next
        (paused) one has less still.
        """
        copied_before = 0
        for _ in range(_MAX_UNPAUSED_ROUNDS):
            changes = self._changes
            _, _, copied = conn.execute(_PASSIVE).fetchone()
            if copied - copied_before < _SMALL_TAIL_FRAMES:
                break
            copied_before = copied
        return int(copied), changes
