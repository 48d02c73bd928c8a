"""``LoopWrites``: one commit per loop iteration on the loop's thread, else a thread that waits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cio_relay.sqlite import Database, LoopWrites
from cio_relay.sqlite.migrations import Steps

STEPS: Steps = {1: ("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",)}


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what is handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.handed = 0
        self.first_handed = asyncio.Event()  # submit runs on the loop's thread

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.handed += 1
        self.first_handed.set()
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def executor() -> AsyncIterator[CountingExecutor]:
    pool = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(pool)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    opened = Database(tmp_path / "store.db", store="test store", steps=STEPS)
    yield opened
    opened.close()


def _add(name: str) -> Callable[[sqlite3.Connection], str]:
    def add(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
        return f"{name} on {threading.get_ident()}"

    return add


def _count(db: Database) -> int:
    count: int = db.read("SELECT count(*) FROM items")[0][0]
    return count


async def test_writes_of_one_iteration_share_one_commit_on_the_loop(
    db: Database, executor: CountingExecutor
) -> None:
    writes = LoopWrites(db)
    before = db.commits
    results = await asyncio.gather(*(writes.write(_add(f"n{i}")) for i in range(50)))
    assert results == [f"n{i} on {threading.get_ident()}" for i in range(50)]
    assert db.commits == before + 1 and executor.handed == 0
    assert _count(db) == 50


async def test_a_busy_file_hands_the_batch_to_a_thread_and_the_loop_runs_on(
    db: Database, executor: CountingExecutor
) -> None:
    writes = LoopWrites(db)
    db.lock.acquire()  # as another thread's write holds it
    try:
        stores = asyncio.gather(*(writes.write(_add(f"n{i}")) for i in range(10)))
        await asyncio.wait_for(executor.first_handed.wait(), 10)  # the loop runs on meanwhile
        assert not stores.done()
    finally:
        db.lock.release()
    results = await stores
    assert all(not result.endswith(str(threading.get_ident())) for result in results)
    assert executor.handed == 1 and _count(db) == 10  # one batch, one hand-over


async def test_a_write_that_waits_too_long_times_out_and_lands_later(
    db: Database, executor: CountingExecutor
) -> None:
    writes = LoopWrites(db)
    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process writing: SQLite's lock, busy_timeout
    try:
        with pytest.raises(TimeoutError, match=r"not done within 0\.05 s"):
            await writes.write(_add("late"), timeout=0.05)
    finally:
        await asyncio.to_thread(other.execute, "ROLLBACK")
        other.close()
    executor.shutdown(wait=True)  # the handed-over write finishes once the lock is free
    assert _count(db) == 1


async def test_on_loop_false_always_uses_a_thread(db: Database, executor: CountingExecutor) -> None:
    writes = LoopWrites(db, on_loop=False)
    await asyncio.gather(writes.write(_add("a")), writes.write(_add("b")))
    assert executor.handed == 1 and _count(db) == 2


async def test_a_failing_write_fails_alone(db: Database, executor: CountingExecutor) -> None:
    writes = LoopWrites(db)
    await writes.write(_add("taken"))
    results = await asyncio.gather(
        writes.write(_add("a")), writes.write(_add("taken")), return_exceptions=True
    )
    assert results[0].startswith("a on ")  # type: ignore[union-attr]
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert _count(db) == 2


async def test_a_closed_database_fails_the_waiting_writes(db: Database) -> None:
    writes = LoopWrites(db)
    db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writes.write(_add("a"))
