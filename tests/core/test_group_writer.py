"""GroupWriter: a group is written on the loop's thread when nothing can make it wait, and
handed to a worker thread (the loop staying free) when something can."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cio_relay import Settings
from cio_relay import operations as ops
from cio_relay.outbox.group_writer import GroupWriter
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.server.idempotency import Claim, IdempotencyStore


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the work handed to a thread."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0
        self.handed = asyncio.Event()  # submit is called on the loop's thread

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        self.handed.set()
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def executor() -> AsyncIterator[CountingExecutor]:
    pool = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(pool)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(tmp_path / "outbox.db")
    yield box
    box.close()


@pytest.fixture
async def writer(outbox: SqliteOutbox, executor: CountingExecutor) -> GroupWriter:
    """A writer past its first group, which also checks the outbox depth for backpressure (in
    the thread); later groups may go inline. Counts start from zero."""
    writer = GroupWriter(Relay(Settings(), outbox=outbox).guarded_outbox)
    await writer.write([_track(0)])
    assert executor.submitted == 1
    executor.submitted = 0
    executor.handed.clear()
    return writer


def _track(i: int) -> ops.Operation:
    return ops.track(f"u{i % 5}", "e", {"i": i})


async def test_an_uncontended_group_is_written_on_the_loop(
    outbox: SqliteOutbox, executor: CountingExecutor, writer: GroupWriter
) -> None:
    await asyncio.gather(*(writer.write([_track(i)]) for i in range(1, 51)))
    assert outbox.depth().pending == 51
    assert (writer.groups_written, outbox.enqueue_commits) == (2, 2)
    assert executor.submitted == 0


async def test_a_group_waits_in_a_thread_while_this_process_holds_the_file(
    outbox: SqliteOutbox, executor: CountingExecutor, writer: GroupWriter
) -> None:
    outbox._lock.acquire()  # as a worker's lease or a checkpoint's pause holds it
    write = asyncio.ensure_future(writer.write([_track(1), _track(2)]))
    await asyncio.wait_for(executor.handed.wait(), 10)  # the loop runs on while the write waits
    assert not write.done()
    outbox._lock.release()
    await write
    assert outbox.depth().pending == 3 and executor.submitted == 1


async def test_a_group_waits_in_a_thread_while_another_process_writes(
    outbox: SqliteOutbox, executor: CountingExecutor, writer: GroupWriter
) -> None:
    other = sqlite3.connect(outbox.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    write = asyncio.ensure_future(writer.write([_track(1)]))
    await asyncio.wait_for(executor.handed.wait(), 10)
    assert not write.done()
    await asyncio.to_thread(other.execute, "COMMIT")
    await write
    other.close()
    assert outbox.depth().pending == 2 and executor.submitted == 2  # the write, the COMMIT
    assert outbox._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000  # restored


async def test_groups_with_idempotency_claims_and_other_outboxes_use_the_thread(
    tmp_path: Path, outbox: SqliteOutbox, executor: CountingExecutor
) -> None:
    store = IdempotencyStore(str(tmp_path / "idempotency.db"))
    claimed = GroupWriter(Relay(Settings(), outbox=outbox).guarded_outbox, store)
    await claimed.write([_track(0)])  # backpressure checked: later groups may go inline
    op = _track(1)
    await claimed.write([op], Claim("scope", "key-1", b"print", (op.op_id,)))
    memory_outbox = MemoryOutbox()
    memory = GroupWriter(Relay(Settings(), outbox=memory_outbox).guarded_outbox)
    await memory.write([_track(2)])
    await memory.write([_track(3)])
    assert executor.submitted == 4
    assert store.lookup("scope", "key-1") is not None
    assert outbox.depth().pending == 2 and memory_outbox.depth().pending == 2
    store.close()


def test_enqueue_nowait_never_waits_and_stores_nothing_when_it_cannot(tmp_path: Path) -> None:
    power = SqliteOutbox(tmp_path / "power.db", durability="power")
    assert power.enqueue_nowait([_track(1)]) is None  # an fsync per commit: never on a loop
    power.close()
    box = SqliteOutbox(tmp_path / "outbox.db")
    first = _track(1)
    assert box.enqueue_nowait([first, _track(2)]) == 2
    assert box.enqueue_nowait([first]) == 0  # idempotent, as enqueue
    taken = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with box._lock:
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    assert box.enqueue_nowait([_track(3)]) is None
    release.set()
    holder.join()
    assert box.depth().pending == 2
    box.close()
