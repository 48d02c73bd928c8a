"""Group commit for asyncio callers: concurrent writers share one commit.

Used by the ingestion API (each HTTP request) and by ``AsyncRelay`` (each awaited call). It lives
with the outboxes, not with either of them, because it needs only an outbox-like writer (the
``OutboxWriter`` protocol: ``enqueue`` and ``enqueue_nowait``, which the relay's guarded outbox and
``SqliteOutbox`` have) and the core model: the relay (a feature) and the HTTP ingestion (a face)
both sit above it, and neither is imported here. Each caller hands its operations (and, in the API,
its idempotency claim) to ``GroupWriter.write`` and waits. One flusher task takes everything
waiting, writes it with a single enqueue, and wakes every request of the group; what arrives during
a flush forms the next group. Under load, groups grow by themselves, so the disk is paid once per
group instead of once per request, and no request waits for a timer.

Where the write cannot wait on anything (``enqueue_nowait``: a SQLite outbox without fsync, free
this instant) it runs right on the loop's thread, which costs less CPU than the hop to a worker
thread and its GIL hand-overs (docs/benchmarks.md). Otherwise (Redis, ``durability="power"``, the
file held by a worker or another process, idempotency claims to record) the group goes to a
worker thread, which may wait.

A request is answered only after its group's write returned: the operations are durable
(contract 1). When the outbox refuses the group for backpressure, every request of it gets the
``OutboxFullError`` (answered 503 with Retry-After). Any other failure of a group is retried one
request at a time, so that one request's problem cannot fail its neighbours; a storage that
fails them all gives each a ``StorageUnavailableError`` (also a 503), with nothing stored: an
idempotency claim is reserved before the enqueue and forgotten if the enqueue fails. Once the
operations are durable the request succeeds, even if marking its claim done then fails: the
claim, still pending, holds the op ids, so a retry with the same key writes the same ids again
(which the outbox stores once) instead of new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cio_relay.errors import OutboxFullError, StorageUnavailableError
from cio_relay.operations import Operation

__all__ = ["ClaimStore", "GroupWriter", "OutboxWriter"]

log = logging.getLogger("cio_relay.server")

#: An idempotency claim: opaque here, understood by the ``ClaimStore`` it goes to.
Claim = Any


class OutboxWriter(Protocol):
    """Where a group is written: an outbox, or one behind the relay's checks."""

    def enqueue(self, ops: Sequence[Operation]) -> object:
        """Store ``ops`` durably, all or none (may wait)."""
        ...

    def enqueue_nowait(self, ops: Sequence[Operation]) -> int | None:
        """``enqueue`` if that needs no waiting; else None, with nothing stored."""
        ...


class ClaimStore(Protocol):
    """Where idempotency claims are recorded around a group's write (server/idempotency.py)."""

    def reserve(self, claims: Sequence[Claim]) -> None: ...

    def complete(self, claims: Sequence[Claim]) -> None: ...

    def forget(self, claims: Sequence[Claim]) -> None: ...


@dataclass(slots=True)
class _Waiting:
    ops: Sequence[Operation]
    claim: Claim | None
    done: asyncio.Future[None]


class GroupWriter:
    """Writes operations for many concurrent requests in groups; see the module docstring."""

    def __init__(self, outbox: OutboxWriter, idempotency: ClaimStore | None = None) -> None:
        self.outbox = outbox
        self.idempotency = idempotency
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self.groups_written = 0  # how many commits served the requests (tests, benchmarks)

    async def write(self, ops: Sequence[Operation], claim: Claim | None = None) -> None:
        """Return once ``ops`` are durable in the outbox (and ``claim`` is recorded as done).

        Raises ``OutboxFullError`` under backpressure; storage errors propagate.
        """
        loop = asyncio.get_running_loop()
        waiting = _Waiting(ops, claim, loop.create_future())
        waiting.done.add_done_callback(_retrieve)
        self._waiting.append(waiting)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all())
        # Shielded: a client that disconnects does not cancel a write others share.
        await asyncio.shield(waiting.done)

    async def _flush_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                if not self._write_now(group):
                    await asyncio.to_thread(self._write_group, group)
            except OutboxFullError as exc:
                _settle(group, exc)
            except Exception:
                await self._write_one_by_one(group)
            else:
                _settle(group, None)

    def _write_now(self, group: list[_Waiting]) -> bool:
        """Write ``group`` on the loop's thread if that needs no waiting (no idempotency claims,
        an outbox that can tell); whether it was written."""
        if any(w.claim is not None for w in group):
            return False
        if self.outbox.enqueue_nowait([op for waiting in group for op in waiting.ops]) is None:
            return False
        self.groups_written += 1
        return True

    async def _write_one_by_one(self, group: list[_Waiting]) -> None:
        for waiting in group:
            try:
                await asyncio.to_thread(self._write_group, [waiting])
            except Exception as exc:
                _settle([waiting], exc)
            else:
                _settle([waiting], None)

    def _write_group(self, group: list[_Waiting]) -> None:
        claims = [w.claim for w in group if w.claim is not None]
        store = self.idempotency if claims else None
        if store is not None:
            try:
                store.reserve(claims)
            except Exception as exc:
                raise StorageUnavailableError("idempotency store", exc) from exc
        try:
            self.outbox.enqueue([op for waiting in group for op in waiting.ops])
        except BaseException:
            if store is not None:
                # Should this fail too, the pending claims only make a retry reuse their ids.
                with contextlib.suppress(Exception):
                    store.forget(claims)
            raise
        if store is not None:
            try:
                store.complete(claims)
            except Exception:
                log.warning("idempotency claims left pending after a durable write", exc_info=True)
        self.groups_written += 1

    async def aclose(self) -> None:
        """Wait for the writes in progress (shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            await self._flusher


def _retrieve(future: asyncio.Future[None]) -> None:
    # The waiting request may have gone (client disconnected): mark its error as seen.
    if not future.cancelled():
        future.exception()


def _settle(group: list[_Waiting], error: Exception | None) -> None:
    for waiting in group:
        if waiting.done.done():
            continue
        if error is None:
            waiting.done.set_result(None)
        else:
            waiting.done.set_exception(error)
