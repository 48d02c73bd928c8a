"""What only the SQLite outbox promises: durability, sharing one file, group commit, crashes."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cio_relay import operations as ops
from cio_relay.errors import ConfigError
from cio_relay.outbox.base import DeadLetterFilter, DeadReason
from cio_relay.outbox.sqlite import ADMIT_BATCH, SCHEMA_VERSION, SqliteOutbox
from cio_relay.outbox.sqlite_schema import DUE_HEADS
from tests.sqlite.old_layout import ADA, BOB, CY, DEE, restore

from .test_contract import drain_ids, event, ids


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


def _child(code: str, path: Path) -> subprocess.Popen[str]:
    """A Python process running ``code`` with ``path`` as ``sys.argv[1]``."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_everything_survives_close_and_reopen_leases_included(path: Path) -> None:
    a1, a2, b1, c1 = event("a", 1), event("a", 2), event("b", 1), event("c", 1)
    box = SqliteOutbox(path)
    box.enqueue([a1, a2, b1, c1])
    t = time.time()
    leases = {lease.op.person_key: lease for lease in box.lease(10, 30, now=t)}
    box.retry_later(leases["id:b"], retry_at=t + 60, error="503 busy", now=t)
    box.dead_letter(leases["id:c"], DeadReason.PERMANENT, "400 bad", now=t)
    box.close()

    box = SqliteOutbox(path)
    try:
        assert box.lease(10, 30, now=t + 1) == []  # a is still leased, b waits to retry
        depth = box.depth(now=t + 1)
        assert (depth.ready, depth.scheduled, depth.leased, depth.dead) == (1, 1, 1, 1)
        [expired] = box.lease(10, 30, now=t + 31)
        assert expired.op == a1
        box.retry_later(leases["id:a"], retry_at=t, error="stale", now=t + 31)  # ignored
        [retried] = box.lease(10, 30, now=t + 60)
        assert (retried.op, retried.attempts, retried.last_error) == (b1, 1, "503 busy")
        [dead] = box.list_dead()
        assert (dead.op, dead.detail) == (c1, "400 bad")
        box.ack([expired])
        assert ids(box.lease(10, 30, now=t + 61)) == [a2.op_id]
    finally:
        box.close()


def test_two_outboxes_on_one_file_share_queue_and_leases(path: Path) -> None:
    app, worker = SqliteOutbox(path), SqliteOutbox(path)
    try:
        a1, a2, b1 = event("a", 1), event("a", 2), event("b", 1)
        app.enqueue([a1, a2])
        t = time.time()
        [lease] = worker.lease(10, 30, now=t)
        assert app.enqueue([b1, a1]) == 1  # a1 is a duplicate across connections too
        t = time.time()
        assert ids(app.lease(10, 30, now=t)) == [b1.op_id]  # a is leased by the worker
        worker.ack([lease])
        assert ids(app.lease(10, 30, now=t)) == [a2.op_id]
        assert worker.depth(now=t).leased == 2
    finally:
        app.close()
        worker.close()


def test_a_process_and_this_one_enqueue_into_one_file_at_once(path: Path) -> None:
    SqliteOutbox(path).close()  # create the schema before the race
    child = _child(
        """
        import sys
        from cio_relay import operations as ops
        from cio_relay.outbox.sqlite import SqliteOutbox
        box = SqliteOutbox(sys.argv[1])
        for i in range(300):
            op = ops.track(f"child-{i % 10}", "e", {"i": i})
            box.enqueue([op])
            print(op.op_id, flush=True)
        box.close()
        """,
        path,
    )
    mine = [event(f"parent-{i % 10}", i) for i in range(300)]
    box = SqliteOutbox(path)
    try:
        for op in mine:
            box.enqueue([op])
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        theirs = out.split()
        assert len(theirs) == 300
        delivered = drain_ids(box, time.time())
        assert sorted(delivered) == sorted([op.op_id for op in mine] + theirs)
    finally:
        box.close()


def test_concurrent_enqueues_share_commits(path: Path) -> None:
    # durability="power" makes each commit an fsync, so threads arriving together queue behind
    # the leader's commit; 8 threads x 40 calls cannot take 320 commits.
    box = SqliteOutbox(path, durability="power")
    per_thread = [[event(f"t{t}", i) for i in range(40)] for t in range(8)]
    start = threading.Barrier(len(per_thread))

    def work(batch: list[ops.Operation]) -> None:
        start.wait()
        for op in batch:
            box.enqueue([op])

    threads = [threading.Thread(target=work, args=(batch,)) for batch in per_thread]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert box.depth().pending == 320
        assert box.enqueue_commits < 320
        # every thread's operations come out in its own order
        delivered = drain_ids(box, time.time())
        for batch in per_thread:
            assert [i for i in delivered if i in {op.op_id for op in batch}] == [
                op.op_id for op in batch
            ]
    finally:
        box.close()


def test_nothing_reported_durable_is_lost_to_sigkill(path: Path) -> None:
    SqliteOutbox(path).close()
    child = _child(
        """
        import sys, threading
        from cio_relay import operations as ops
        from cio_relay.outbox.sqlite import SqliteOutbox
        box = SqliteOutbox(sys.argv[1])
        printing = threading.Lock()
        def work(t):
            i = 0
            while True:  # until killed
                op = ops.track(f"t{t}-{i % 5}", "e", {"i": i})
                box.enqueue([op])
                with printing:
                    print(op.op_id, flush=True)
                i += 1
        for t in range(4):
            threading.Thread(target=work, args=(t,), daemon=True).start()
        threading.Event().wait()
        """,
        path,
    )
    assert child.stdout is not None
    reported = []
    try:
        for line in child.stdout:
            reported.append(line.strip())
            if len(reported) == 500:
                break
        child.send_signal(signal.SIGKILL)
        reported += child.stdout.read().split()  # lines already written before the kill
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    box = SqliteOutbox(path)
    try:
        stored = set(drain_ids(box, time.time()))
        assert len(reported) >= 500
        assert set(reported) <= stored
    finally:
        box.close()


def test_lease_reads_only_due_heads_through_the_index(path: Path) -> None:
    box = SqliteOutbox(path)
    try:
        deep = [event("deep", i) for i in range(3000)]
        box.enqueue(deep)
        t = time.time()
        [head] = box.lease(10, 30, now=t)
        others = [event(f"p{i}") for i in range(20)]
        box.enqueue(others)
        t = time.time()
        assert ids(box.lease(100, 30, now=t)) == [op.op_id for op in others]
        box.retry_later(head, retry_at=t + 60, error="x", now=t)
        assert box.lease(100, 30, now=t) == []
    finally:
        box.close()
    conn = sqlite3.connect(path)
    try:
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + DUE_HEADS, (t, 1)))
        assert "USING COVERING INDEX heads_due (due_at<?)" in plan, plan
        assert "SCAN" not in plan, plan
    finally:
        conn.close()


def test_schema_version_is_recorded_and_a_newer_file_is_refused(path: Path) -> None:
    SqliteOutbox(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(ConfigError, match="newer than this cio-relay understands"):
        SqliteOutbox(path)


def test_durability_setting_is_checked_and_applied(path: Path) -> None:
    with pytest.raises(ConfigError, match="durability must be 'process' or 'power'"):
        SqliteOutbox(path, durability="sometimes")  # type: ignore[arg-type]
    for durability, level in (("process", 1), ("power", 2)):  # NORMAL, FULL
        box = SqliteOutbox(path, durability=durability)  # type: ignore[arg-type]
        try:
            assert box._conn.execute("PRAGMA synchronous").fetchone()[0] == level
            assert box._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            box.close()


def test_close_is_idempotent_and_use_after_close_is_a_clear_error(path: Path) -> None:
    box = SqliteOutbox(path)
    box.close()
    box.close()
    with pytest.raises(RuntimeError, match="is closed"):
        box.enqueue([event("a")])
    with pytest.raises(RuntimeError, match="is closed"):
        box.count_dead(DeadLetterFilter(kind="track"))


def test_large_op_id_filters_and_payloads_round_trip(path: Path) -> None:
    box = SqliteOutbox(path)
    try:
        big = ops.identify("a", {f"k{i}": "v" * 900 for i in range(40)})  # spills to overflow
        box.enqueue([big, *(event(f"p{i}") for i in range(50))])
        leases = box.lease(100, 30)
        for lease in leases:
            box.dead_letter(lease, DeadReason.PERMANENT, "x")
        every_id = tuple(lease.op.op_id for lease in leases)
        assert box.count_dead(DeadLetterFilter(op_ids=every_id * 1000)) == 51
        [dead] = box.list_dead(DeadLetterFilter(op_ids=(big.op_id,)))
        assert dead.op == big
    finally:
        box.close()


def test_a_version_1_file_is_migrated_with_its_pending_work(path: Path) -> None:
    a1, a2, a3 = event("a", 1), event("a", 2), event("a", 3)
    box = SqliteOutbox(path)
    box.enqueue([a1, a2])
    [first] = box.lease(10, 30)  # both admitted into ``ops``, as version 1 held them
    box.release([first])
    box.close()
    conn = sqlite3.connect(path)
    try:  # back to version 1: no ``intake`` table
        conn.execute("DROP TABLE intake")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()
    box = SqliteOutbox(path)
    try:
        box.enqueue([a3, a1])  # the repeat of a1 stays one operation
        assert drain_ids(box, time.time()) == [a1.op_id, a2.op_id, a3.op_id]
        assert box.depth().ready == 0
    finally:
        box.close()


def test_waiting_operations_not_yet_admitted_count_in_depth(path: Path) -> None:
    box = SqliteOutbox(path)
    try:
        box.enqueue([event("a", 1), event("b", 1)])
        depth = box.depth(now=time.time() + 5)
        assert (depth.ready, depth.leased, depth.scheduled) == (2, 0, 0)
        assert depth.oldest_waiting_age is not None and depth.oldest_waiting_age >= 5
    finally:
        box.close()


def test_a_deferred_release_sticks_through_a_later_release(path: Path) -> None:
    # Found by the equivalence machine: after release(delay=5) and a later release(delay=0),
    # the operation stays behind work that was due before its deferral ended, as in memory.
    t = time.time() + 1000
    box = SqliteOutbox(path)
    try:
        first, other, second = event("a", 1), event("b", 1), event("a", 2)
        box.enqueue([first, other, second])
        _, b1 = box.lease(2, 5, now=t)
        box.release([b1], delay=5, now=t)  # b deferred until t + 5
        a2, b2 = box.lease(2, 5, now=t + 6)  # a's lease ran out at t + 5: both due again
        box.ack([a2])  # a's next is due since its enqueue, long before t + 5
        box.release([b2], now=t + 6)  # b: due at t + 5 still, not at its enqueue time
        assert ids(box.lease(1, 5, now=t + 6)) == [second.op_id]
    finally:
        box.close()


def test_one_persons_backlog_in_intake_does_not_hide_other_peoples_work(path: Path) -> None:
    box = SqliteOutbox(path)
    try:
        box.enqueue([event("whale", i) for i in range(3 * ADMIT_BATCH)])
        others = [event(f"p{i}") for i in range(10)]
        box.enqueue(others)
        [head] = box.lease(1, 60)
        box.retry_later(head, retry_at=time.time() + 3600, error="503")
        assert ids(box.lease(10, 60)) == [op.op_id for op in others]
    finally:
        box.close()


def test_the_outbox_checkpoints_its_file_as_it_is_written(path: Path) -> None:
    box = SqliteOutbox(path)
    try:
        assert box._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for batch in range(25):  # 25,000 rows: past CHECKPOINT_EVERY_CHANGES
            box.enqueue([event(f"p{i}", batch) for i in range(1_000)])
    finally:
        box.close()
    assert box._db._checkpointer is not None and box._db._checkpointer.rounds >= 1


def test_a_file_written_before_the_sqlite_layer_opens_with_its_work(path: Path) -> None:
    restore("outbox", path)
    box = SqliteOutbox(path)
    try:
        later = time.time() + 10 * 24 * 3600  # bob's retry is due, every lease long expired
        depth = box.depth(now=later)
        assert (depth.ready, depth.scheduled, depth.leased, depth.dead) == (5, 0, 0, 1)
        [dead] = box.list_dead()
        assert (dead.op.op_id, dead.reason, dead.detail) == (CY, DeadReason.PERMANENT, "400 bad")
        new = event("new", 1)
        again = ops.track("dee", "late", op_id=DEE)
        assert box.enqueue([new, again]) == 1  # DEE is stored already: once
        leases = box.lease(10, 30, now=later)
        assert sorted(ids(leases)) == sorted([ADA[0], BOB, DEE, new.op_id])  # one per person
        bob = next(lease for lease in leases if lease.op.op_id == BOB)
        assert (bob.attempts, bob.last_error) == (1, "503 busy")
        box.ack(leases)
        assert ids(box.lease(10, 30, now=later)) == [ADA[1]]  # ada's order kept
    finally:
        box.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 1024
    finally:
        conn.close()
