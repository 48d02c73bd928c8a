"""The relay's outbox behind its checks, for every write a relay makes.

Backpressure: past ``outbox_max_depth`` undelivered operations a write is refused with
``OutboxFullError`` (with a retry-after), instead of the outbox growing without bound; the depth
is asked at most once a second. A storage that fails a write (a full disk, Redis restarting) is
``StorageUnavailableError``, with nothing stored. The ``on_enqueued`` hooks run after a write.

``Relay`` writes through a ``GuardedOutbox``; ``AsyncRelay`` and the ingestion API hand theirs
to a ``GroupWriter`` (it is an ``OutboxWriter``: ``enqueue`` and ``enqueue_nowait``). Writers
that enqueue through a transaction of their own (the user repository, ``cio_relay.sync``) ask
``check_capacity`` first, so they are refused exactly as these writes are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cio_relay.delivery.hooks import Hooks
from cio_relay.errors import CioRelayError, OutboxFullError, StorageUnavailableError
from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox

__all__ = ["GuardedOutbox"]

_DEPTH_CHECK_INTERVAL = 1.0  # seconds between outbox depth checks for backpressure


class _Backpressure:
    """Refuses new work past ``max_depth``; checks the outbox at most once a second."""

    def __init__(self, outbox: Outbox, max_depth: int) -> None:
        self._outbox = outbox
        self._max_depth = max_depth
        self._checked_at = 0.0
        self._depth = 0
        self._lock = threading.Lock()

    def fresh(self) -> bool:
        """Whether ``check`` would decide without asking the outbox (which may block)."""
        return time.monotonic() - self._checked_at < _DEPTH_CHECK_INTERVAL

    def check(self) -> None:
        now = time.monotonic()
        if now - self._checked_at >= _DEPTH_CHECK_INTERVAL:
            with self._lock:
                if now - self._checked_at >= _DEPTH_CHECK_INTERVAL:
                    self._depth = self._outbox.depth().pending
                    self._checked_at = now
        if self._depth >= self._max_depth:
            raise OutboxFullError(self._depth, self._max_depth)


class GuardedOutbox:
    """``outbox`` behind the checks of the module docstring (``relay.guarded_outbox``)."""

    def __init__(self, outbox: Outbox, max_depth: int, hooks: Hooks) -> None:
        self.outbox = outbox
        self.hooks = hooks
        self._backpressure = _Backpressure(outbox, max_depth)

    def check_capacity(self) -> None:
        """Refuse new work as ``enqueue`` would, without enqueueing: ``OutboxFullError`` past
        the maximum depth, ``StorageUnavailableError`` when the depth cannot be read."""
        try:
            self._backpressure.check()
        except CioRelayError:
            raise
        except Exception as exc:
            raise StorageUnavailableError("outbox", exc) from exc

    def enqueue(self, ops: Sequence[Operation]) -> int:
        try:
            self._backpressure.check()
            added = self.outbox.enqueue(ops)
        except (CioRelayError, TypeError):
            raise  # ours, or not Operations: nothing to do with the storage
        except Exception as exc:
            raise StorageUnavailableError("outbox", exc) from exc
        self._enqueued(ops)
        return added

    def enqueue_nowait(self, ops: Sequence[Operation]) -> int | None:
        """``enqueue``, if that needs no waiting (for an event loop); else None, nothing stored.

        Waiting would be needed for an outbox without ``enqueue_nowait`` (Redis: a network round
        trip), one that is busy or fsyncs (see ``SqliteOutbox.enqueue_nowait``), or a
        backpressure check that is due (it asks the outbox its depth). ``on_enqueued`` hooks
        run on the calling thread, as with ``enqueue``.
        """
        nowait = getattr(self.outbox, "enqueue_nowait", None)
        if nowait is None or not self._backpressure.fresh():
            return None
        try:
            self._backpressure.check()
            added: int | None = nowait(ops)
        except (CioRelayError, TypeError):
            raise
        except Exception as exc:
            raise StorageUnavailableError("outbox", exc) from exc
        if added is not None:
            self._enqueued(ops)
        return added

    def _enqueued(self, ops: Sequence[Operation]) -> None:
        if self.hooks.enqueued:
            for op in ops:
                Hooks.fire(self.hooks.enqueued, op)
