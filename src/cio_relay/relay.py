"""The facade users call: ``Relay`` (sync) and ``AsyncRelay`` (coroutines).

Every method validates (the documented limits, at the first boundary), writes the operation
durably to the outbox and returns its op id, a ULID string. Nothing touches the network: workers
deliver (``relay.worker().drain()`` in scripts and tests, ``cio-relay worker`` in production).

    relay = Relay.from_env()
    op_id = relay.identify("user-1", email="ada@example.com", plan="pro")
    relay.track("user-1", "order_completed", {"total": 42})
    relay.worker().drain()
    relay.close()

Backpressure: when the outbox holds more than ``outbox_max_depth`` undelivered operations, the
methods raise ``OutboxFullError`` (with a retry-after) instead of growing without bound; nothing
is ever dropped silently. When the outbox cannot take the write at all (a full disk, Redis
restarting), they raise ``StorageUnavailableError``: nothing was stored, and calling again (with
the same ``op_id`` where one was passed) is safe.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cio_relay.config import Settings
from cio_relay.delivery.hooks import Hooks
from cio_relay.errors import CioRelayError, OutboxFullError, StorageUnavailableError
from cio_relay.operations import Operation, OperationFactory, PersonRef
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.group_writer import GroupWriter

__all__ = ["AsyncRelay", "Relay"]

_DEPTH_CHECK_INTERVAL = 1.0  # seconds between outbox depth checks for backpressure


class _OperationFactory:
    """Builds Operations stamped with this relay's environment; shared by both shells."""

    settings: Settings

    @property
    def _ops(self) -> OperationFactory:
        return OperationFactory.from_settings(self.settings)

    def _build_identify(self, person: PersonRef, attributes: Mapping[str, Any]) -> Operation:
        return self._ops.identify(person, attributes)

    def _build_track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None,
        timestamp: float | None,
        op_id: str | None,
    ) -> Operation:
        return self._ops.track(person, name, data, timestamp=timestamp, op_id=op_id)


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
    """The relay's outbox behind its checks: backpressure (``OutboxFullError``), a storage that
    fails as ``StorageUnavailableError`` (nothing stored), and the ``on_enqueued`` hooks after a
    write. What ``GroupWriter`` writes to for ``AsyncRelay`` and the ingestion API."""

    def __init__(self, outbox: Outbox, max_depth: int, hooks: Hooks) -> None:
        self.outbox = outbox
        self.hooks = hooks
        self._backpressure = _Backpressure(outbox, max_depth)

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


class Relay(_OperationFactory):
    """Durable, non-blocking access to Customer.io for a Python app.

    Thread-safe: share one Relay across threads; concurrent calls share outbox commits.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        outbox: Outbox | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.settings = settings or Settings()
        if outbox is None:
            from cio_relay.outbox.factory import open_outbox

            outbox = open_outbox(
                self.settings.outbox_url, durability=self.settings.outbox_durability
            )
            self._owns_outbox = True
        else:
            self._owns_outbox = False
        self.outbox = outbox
        self.hooks = hooks or Hooks()
        self.guarded_outbox = GuardedOutbox(outbox, self.settings.outbox_max_depth, self.hooks)

    @classmethod
    def from_env(cls) -> Relay:
        """A relay configured from ``CUSTOMERIO_*``/``CIO_RELAY_*`` variables and cio-relay.toml."""
        return cls(Settings())

    def __repr__(self) -> str:
        return f"Relay(env={self.settings.env!r}, region={self.settings.region!r})"

    # --- writing ------------------------------------------------------------------------------

    def enqueue(self, *operations: Operation) -> list[str]:
        """Store already-built operations (all or none); return their op ids."""
        self.guarded_outbox.enqueue(operations)
        return [op.op_id for op in operations]

    def _one(self, op: Operation) -> str:
        return self.enqueue(op)[0]

    # --- Track API ----------------------------------------------------------------------------

    def identify(self, person: PersonRef, /, **attributes: Any) -> str:
        """Create or update a person.

        ``person`` is an id, or ``{"email": ...}`` / ``{"cio_id": ...}``.
        """
        return self._one(self._build_identify(person, attributes))

    def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        """An event. Pass your own ``op_id`` (a ULID) to make a retried call a no-op."""
        return self._one(self._build_track(person, name, data, timestamp, op_id))

    def track_anonymous(
        self,
        anonymous_id: str,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        return self._one(
            self._ops.track_anonymous(anonymous_id, name, data, timestamp=timestamp, op_id=op_id)
        )

    def page(
        self,
        person: PersonRef,
        url: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        return self._one(self._ops.page(person, url, data, timestamp=timestamp, op_id=op_id))

    def screen(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        return self._one(self._ops.screen(person, name, data, timestamp=timestamp, op_id=op_id))

    def add_device(
        self,
        person: PersonRef,
        token: str,
        platform: str,
        *,
        last_used: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        return self._one(
            self._ops.add_device(
                person, token, platform, last_used=last_used, attributes=attributes
            )
        )

    def delete_device(self, person: PersonRef, token: str) -> str:
        return self._one(self._ops.delete_device(person, token))

    def suppress(self, person: PersonRef) -> str:
        return self._one(self._ops.suppress(person))

    def unsuppress(self, person: PersonRef) -> str:
        return self._one(self._ops.unsuppress(person))

    def merge(self, primary: PersonRef, secondary: PersonRef) -> str:
        return self._one(self._ops.merge(primary, secondary))

    def delete(self, person: PersonRef) -> str:
        return self._one(self._ops.delete(person))

    # --- App API ------------------------------------------------------------------------------

    def send_email(
        self,
        *,
        to: str | list[str],
        identifiers: Mapping[str, str] | None = None,
        transactional_message_id: str | int | None = None,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        """A transactional email; never retried after an ambiguous failure (dead-lettered)."""
        return self._one(
            self._ops.send_email(
                to=to,
                identifiers=identifiers,
                transactional_message_id=transactional_message_id,
                message_data=message_data,
                **fields,
            )
        )

    def send_push(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        return self._one(
            self._ops.send_push(
                identifiers=identifiers,
                transactional_message_id=transactional_message_id,
                message_data=message_data,
                **fields,
            )
        )

    def send_sms(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        return self._one(
            self._ops.send_sms(
                identifiers=identifiers,
                transactional_message_id=transactional_message_id,
                message_data=message_data,
                **fields,
            )
        )

    def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> str:
        return self._one(self._ops.trigger_broadcast(broadcast_id, data=data, **audience))

    # --- delivery -----------------------------------------------------------------------------

    def worker(self, **options: Any) -> Any:
        """A worker delivering this relay's outbox; ``.drain()`` or ``.run()`` it."""
        from cio_relay.delivery.worker import Worker

        return Worker(self.settings, self.outbox, hooks=self.hooks, **options)

    def close(self) -> None:
        if self._owns_outbox:
            self.outbox.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_RELAY_METHODS = (
    "identify",
    "track",
    "track_anonymous",
    "page",
    "screen",
    "add_device",
    "delete_device",
    "suppress",
    "unsuppress",
    "merge",
    "delete",
    "send_email",
    "send_push",
    "send_sms",
    "trigger_broadcast",
    "enqueue",
)


class _Capture(Relay):
    """``Relay``'s methods with its validation and stamping but no outbox: ``_one`` keeps each
    built operation for ``AsyncRelay``, which writes it with the group."""

    def __init__(self, settings: Settings) -> None:  # nothing to open: no super().__init__
        self.settings = settings
        self.built: list[Operation] = []

    def _one(self, op: Operation) -> str:
        self.built.append(op)
        return op.op_id


class AsyncRelay:
    """``Relay`` for asyncio apps: the same methods as coroutines.

    Validation runs inline (it is pure and fast); the durable write runs in a worker thread so
    the event loop never waits on the disk. Concurrent calls share that thread hop and one
    commit (``GroupWriter``): a busy app pays the disk once per group, not once per call, and
    each call still returns only once its operations are durable.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        outbox: Outbox | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self._relay = Relay(settings, outbox=outbox, hooks=hooks)
        self.settings = self._relay.settings
        self.outbox = self._relay.outbox
        self.hooks = self._relay.hooks
        self._capture = _Capture(self.settings)
        # One writer per event loop: its futures and flusher task belong to that loop.
        self._writers: dict[asyncio.AbstractEventLoop, GroupWriter] = {}

    @classmethod
    def from_env(cls) -> AsyncRelay:
        return cls(Settings())

    def __repr__(self) -> str:
        return f"AsyncRelay(env={self.settings.env!r}, region={self.settings.region!r})"

    async def _call(self, method: str, /, *args: Any, **kwargs: Any) -> str:
        """``Relay.<method>``'s operation, built inline and written with the group."""
        getattr(self._capture, method)(*args, **kwargs)
        op = self._capture.built.pop()  # no await since the call: it is this call's operation
        return (await self.enqueue(op))[0]

    async def enqueue(self, *operations: Operation) -> list[str]:
        """Store ``operations`` durably (with whatever other calls are waiting); their op ids."""
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            self._writers = {
                known: w for known, w in self._writers.items() if not known.is_closed()
            }
            writer = self._writers[loop] = GroupWriter(self._relay.guarded_outbox)
        await writer.write(operations)
        return [op.op_id for op in operations]

    async def identify(self, person: PersonRef, /, **attributes: Any) -> str:
        op = self._relay._build_identify(person, attributes)
        return (await self.enqueue(op))[0]

    async def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._relay._build_track(person, name, data, timestamp, op_id)
        return (await self.enqueue(op))[0]

    async def track_anonymous(
        self, anonymous_id: str, name: str, data: Mapping[str, Any] | None = None, **kw: Any
    ) -> str:
        return await self._call("track_anonymous", anonymous_id, name, data, **kw)

    async def page(
        self, person: PersonRef, url: str, data: Mapping[str, Any] | None = None, **kw: Any
    ) -> str:
        return await self._call("page", person, url, data, **kw)

    async def screen(
        self, person: PersonRef, name: str, data: Mapping[str, Any] | None = None, **kw: Any
    ) -> str:
        return await self._call("screen", person, name, data, **kw)

    async def add_device(self, person: PersonRef, token: str, platform: str, **kw: Any) -> str:
        return await self._call("add_device", person, token, platform, **kw)

    async def delete_device(self, person: PersonRef, token: str) -> str:
        return await self._call("delete_device", person, token)

    async def suppress(self, person: PersonRef) -> str:
        return await self._call("suppress", person)

    async def unsuppress(self, person: PersonRef) -> str:
        return await self._call("unsuppress", person)

    async def merge(self, primary: PersonRef, secondary: PersonRef) -> str:
        return await self._call("merge", primary, secondary)

    async def delete(self, person: PersonRef) -> str:
        return await self._call("delete", person)

    async def send_email(self, **kw: Any) -> str:
        return await self._call("send_email", **kw)

    async def send_push(self, **kw: Any) -> str:
        return await self._call("send_push", **kw)

    async def send_sms(self, **kw: Any) -> str:
        return await self._call("send_sms", **kw)

    async def trigger_broadcast(self, broadcast_id: int | str, **kw: Any) -> str:
        return await self._call("trigger_broadcast", broadcast_id, **kw)

    def worker(self, **options: Any) -> Any:
        return self._relay.worker(**options)

    async def aclose(self) -> None:
        writer = self._writers.pop(asyncio.get_running_loop(), None)
        if writer is not None:
            await writer.aclose()  # the writes in progress land before the outbox closes
        await asyncio.to_thread(self._relay.close)

    async def __aenter__(self) -> AsyncRelay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
