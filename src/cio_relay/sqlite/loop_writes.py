"""``LoopWrites``: writes from coroutines, gathered per event-loop iteration.

Every ``write`` made during one iteration of a loop joins one batch, flushed at the end of that
iteration (``call_soon``): so the requests a server read in one go share one commit, and no
request waits for a timer.

- **On the loop's thread** when nothing can make the batch wait (``Database.write_nowait``):
  ``durability="process"``, the connection free in this process, the file's write lock free in
  every other. A thread hop costs more than such a commit, and a writer thread would have to win
  the GIL back from a busy loop after every SQLite call, which made the thread path's latency
  vary under load.
- **Otherwise on a thread** (the loop's default executor) through group commit
  (``Database.write_many``), which may wait for the lock; batches handed over at once share
  commits there too. Only a handed-over batch can take long, so only it gets a timer: a caller
  that gave a ``timeout`` gets ``TimeoutError`` once it has passed (the write may still land).

A work that fails, fails alone (group_commit.py); its caller gets the exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from cio_relay.sqlite.database import Database, Work
from cio_relay.sqlite.group_commit import Failed

__all__ = ["LoopWrites"]

T = TypeVar("T")
_Pending = tuple[Work, "asyncio.Future[Any]", float | None]


class LoopWrites:
    """Batches of ``db`` writes per event loop; ``on_loop=False`` always hands them over."""

    def __init__(self, db: Database, *, on_loop: bool = True) -> None:
        self._db = db
        self._on_loop = on_loop and db.durability == "process"
        self._pending: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}

    async def write(self, work: Callable[[Any], T], timeout: float | None = None) -> T:
        """``work``'s result once committed; ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((work, future, timeout))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop)
        works = [work for work, _, _ in batch]
        if self._on_loop:
            try:
                values = self._db.write_nowait(works)
            except Exception as exc:  # closed
                _settle(batch, [Failed(exc)] * len(batch))
                return
            if values is not None:
                _settle(batch, values)
                return
        self._hand_over(loop, batch, works)

    def _hand_over(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], works: list[Work]
    ) -> None:
        timeouts = [timeout for _, _, timeout in batch if timeout is not None]
        if timeouts:
            loop.call_later(min(timeouts), _expire, batch, min(timeouts))
        written = loop.run_in_executor(None, self._db.write_many, works)

        def settle(done: asyncio.Future[list[Any]]) -> None:
            if done.cancelled():  # the loop is shutting down its executor
                for _, future, _ in batch:
                    future.cancel()
                return
            error = done.exception()
            _settle(batch, [Failed(error)] * len(batch) if error else done.result())

        written.add_done_callback(settle)


def _settle(batch: list[_Pending], outcomes: list[Any]) -> None:
    for (_, future, _), outcome in zip(batch, outcomes, strict=True):
        if future.done():  # the caller gave up waiting (timeout or cancelled)
            continue
        if isinstance(outcome, Failed):
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome)


def _expire(batch: list[_Pending], timeout: float) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(TimeoutError(f"write not done within {timeout} s"))
