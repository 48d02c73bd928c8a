"""The facade users call: ``Relay`` (sync) and ``AsyncRelay`` (coroutines).

Every method checks its input (the documented limits, at the first boundary), writes the
operation durably to the outbox and returns its op id, a ULID string. Nothing touches the
network: workers deliver (``relay.worker().drain()`` in scripts and tests, ``cio-relay worker``
in production).

    relay = Relay()  # configured from CUSTOMERIO_*/CIO_RELAY_* variables and cio-relay.toml
    op_id = relay.identify("user-1", email="ada@example.com", plan="pro")
    relay.track("user-1", "order_completed", {"total": 42})
    relay.worker().drain()
    relay.close()

The two shells have the same methods with the same signatures (a test compares them): each
method builds its operation with the relay's ``OperationFactory`` (which stamps the relay's
environment) and hands it to ``_one``, which ``Relay`` writes at once and ``AsyncRelay`` awaits
with the other calls of its event loop (``GroupWriter``). Nothing is shared between calls but
the outbox, so concurrent callers, on threads or on several event loops, each get their own
operation back. The module is past 500 lines because it is one surface written twice: the
shells mirror each other method for method, and splitting either would part the pairs.

Timestamps (``timestamp``, ``last_used``, a send's ``send_at``) are Unix seconds or a
``datetime`` with a time zone; a naive datetime is refused (``ValidationError`` naming the
field) rather than guessed to be UTC or local time.

Backpressure: when the outbox holds more than ``outbox_max_depth`` undelivered operations, the
methods raise ``OutboxFullError`` (with a retry-after) instead of growing without bound; nothing
is ever dropped silently. When the outbox cannot take the write at all (a full disk, Redis
restarting), they raise ``StorageUnavailableError``: nothing was stored, and calling again (with
the same ``op_id`` where one was passed) is safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cio_relay.config import Settings
from cio_relay.delivery.hooks import Hooks
from cio_relay.guarded_outbox import GuardedOutbox
from cio_relay.operations import (
    AnonymousEventType,
    Metric,
    ObjectRef,
    Operation,
    OperationFactory,
    PersonRef,
    PushMetric,
    SegmentIdType,
    Timestamp,
)
from cio_relay.operations.objects import Related
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.group_writer import GroupWriter

if TYPE_CHECKING:
    from cio_relay.delivery.worker import Worker

__all__ = ["AsyncRelay", "Relay"]


class _RelayBase:
    """What both shells hold: settings, the outbox behind its checks, hooks, the factory."""

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
        self._build = OperationFactory.from_settings(self.settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.settings.env!r}, region={self.settings.region!r})"

    def worker(self, **options: Any) -> Worker:
        """A worker delivering this relay's outbox; ``.drain()`` or ``.run()`` it."""
        from cio_relay.delivery.worker import Worker

        return Worker(self.settings, self.outbox, hooks=self.hooks, **options)

    def _adopted(self, operations: Sequence[Operation]) -> list[Operation]:
        """Operations built by hand, in this relay's environment (``OperationFactory.adopt``)."""
        return [self._build.adopt(op) for op in operations]


class Relay(_RelayBase):
    """Durable, non-blocking access to Customer.io for a Python app.

    Thread-safe: share one Relay across threads; concurrent calls share outbox commits.
    """

    def enqueue(self, *operations: Operation) -> list[str]:
        """Store operations built with ``cio_relay.operations`` (all or none); their op ids.

        One built by hand (``ops.track(...)``) takes this relay's environment; one built for
        another environment is refused (``ValidationError`` on ``env``).
        """
        adopted = self._adopted(operations)
        self.guarded_outbox.enqueue(adopted)
        return [op.op_id for op in adopted]

    def _one(self, op: Operation) -> str:
        self.guarded_outbox.enqueue((op,))
        return op.op_id

    # --- Track API ----------------------------------------------------------------------------

    def identify(self, person: PersonRef, /, **attributes: Any) -> str:
        """Create or update a person with ``attributes``.

        ``person`` is an id, or ``{"email": ...}`` / ``{"cio_id": ...}``.
        """
        return self._one(self._build.identify(person, attributes))

    def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        """An event. Pass your own ``op_id`` (a ULID) to make a retried call a no-op."""
        op = self._build.track(person, name, data, timestamp=timestamp, op_id=op_id)
        return self._one(op)

    def page(
        self,
        person: PersonRef,
        url: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        """A page view: an event of type ``page`` named by the URL."""
        op = self._build.page(person, url, data, timestamp=timestamp, op_id=op_id)
        return self._one(op)

    def screen(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        """A mobile screen view: an event of type ``screen``."""
        op = self._build.screen(person, name, data, timestamp=timestamp, op_id=op_id)
        return self._one(op)

    def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_type: AnonymousEventType = "event",
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        """An event (a page or screen view with ``event_type``) for someone not yet identified,
        merged later by ``anonymous_id``; None for an event about no one yet (an invite)."""
        op = self._build.track_anonymous(
            anonymous_id, name, data, event_type=event_type, timestamp=timestamp, op_id=op_id
        )
        return self._one(op)

    def add_device(
        self,
        person: PersonRef,
        token: str,
        platform: str,
        *,
        last_used: Timestamp | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Add or update a push device (``platform`` ios or android) for a person."""
        op = self._build.add_device(
            person, token, platform, last_used=last_used, attributes=attributes
        )
        return self._one(op)

    def delete_device(self, person: PersonRef, token: str) -> str:
        """Remove a push device from a person."""
        return self._one(self._build.delete_device(person, token))

    def suppress(self, person: PersonRef) -> str:
        """Delete a person and stop them being added again."""
        return self._one(self._build.suppress(person))

    def unsuppress(self, person: PersonRef) -> str:
        """Let a suppressed person be added again."""
        return self._one(self._build.unsuppress(person))

    def merge(self, primary: PersonRef, secondary: PersonRef) -> str:
        """Merge ``secondary`` into ``primary``; the secondary is deleted (irreversible)."""
        return self._one(self._build.merge(primary, secondary))

    def delete(self, person: PersonRef) -> str:
        """Delete a person (irreversible at Customer.io)."""
        return self._one(self._build.delete(person))

    # --- relationships and objects (v2) -------------------------------------------------------

    def add_relationships(self, person: PersonRef, objects: Sequence[Related]) -> str:
        """Relate a person to ``objects``: each ``{"object_type_id", "object_id"}``,
        ``{"cio_object_id"}`` or ``{"identifiers": ..., "relationship_attributes": {...}}``."""
        return self._one(self._build.add_relationships(person, objects))

    def delete_relationships(self, person: PersonRef, objects: Sequence[Related]) -> str:
        """Remove a person's relationships to ``objects``."""
        return self._one(self._build.delete_relationships(person, objects))

    def identify_object(
        self,
        obj: ObjectRef,
        attributes: Mapping[str, Any] | None = None,
        *,
        people: Sequence[Related] | None = None,
    ) -> str:
        """Create or update an object (``{"object_type_id": "1", "object_id": "acme"}``), related
        to ``people`` where given."""
        return self._one(self._build.identify_object(obj, attributes, people=people))

    def delete_object(self, obj: ObjectRef) -> str:
        """Delete an object and its relationships."""
        return self._one(self._build.delete_object(obj))

    def identify_anonymous(
        self,
        obj: ObjectRef,
        anonymous_id: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        relationship_attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Create or update an object related to someone not identified yet (``anonymous_id``)."""
        op = self._build.identify_anonymous(
            obj, anonymous_id, attributes, relationship_attributes=relationship_attributes
        )
        return self._one(op)

    def add_object_relationships(self, obj: ObjectRef, people: Sequence[Related]) -> str:
        """Relate an object to ``people`` (by id, email or cio_id)."""
        return self._one(self._build.add_object_relationships(obj, people))

    def delete_object_relationships(self, obj: ObjectRef, people: Sequence[Related]) -> str:
        """Remove an object's relationships to ``people``."""
        return self._one(self._build.delete_object_relationships(obj, people))

    # --- segments and delivery metrics (v1) ---------------------------------------------------

    def add_to_segment(
        self, segment_id: int | str, ids: Sequence[str], *, id_type: SegmentIdType = "id"
    ) -> str:
        """Add up to 1,000 people (named by ``id_type``) to a manual segment."""
        return self._one(self._build.add_to_segment(segment_id, ids, id_type=id_type))

    def remove_from_segment(
        self, segment_id: int | str, ids: Sequence[str], *, id_type: SegmentIdType = "id"
    ) -> str:
        """Remove up to 1,000 people from a manual segment."""
        return self._one(self._build.remove_from_segment(segment_id, ids, id_type=id_type))

    def track_metric(
        self,
        delivery_id: str,
        metric: Metric,
        *,
        recipient: str | int | None = None,
        reason: str | None = None,
        href: str | None = None,
        timestamp: Timestamp | None = None,
    ) -> str:
        """Report a delivery's metric (``/api/v1/metrics``) for a channel that does not itself."""
        op = self._build.track_metric(
            delivery_id, metric, recipient=recipient, reason=reason, href=href, timestamp=timestamp
        )
        return self._one(op)

    def track_push_metric(
        self,
        delivery_id: str,
        event: PushMetric,
        device_id: str,
        *,
        timestamp: Timestamp | None = None,
    ) -> str:
        """Report a device-side push metric (the legacy ``/api/v1/push/events``)."""
        op = self._build.track_push_metric(delivery_id, event, device_id, timestamp=timestamp)
        return self._one(op)

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
        op = self._build.send_email(
            to=to,
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return self._one(op)

    def send_push(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        """A transactional push; ``fields`` such as ``title``, ``message`` pass through."""
        op = self._build.send_push(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return self._one(op)

    def send_sms(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        """A transactional SMS; ``fields`` such as ``to`` pass through."""
        op = self._build.send_sms(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return self._one(op)

    def send_whatsapp(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        to: str,
        message_data: Mapping[str, Any] | None = None,
        send_at: Timestamp | None = None,
        language: str | None = None,
        tracked: bool | None = None,
        send_to_unsubscribed: bool | None = None,
        queue_draft: bool | None = None,
        disable_message_retention: bool | None = None,
        op_id: str | None = None,
    ) -> str:
        """A transactional WhatsApp message from its approved template to ``to`` (E.164 or
        Liquid); never retried after an ambiguous failure (dead-lettered)."""
        op = self._build.send_whatsapp(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            to=to,
            message_data=message_data,
            send_at=send_at,
            language=language,
            tracked=tracked,
            send_to_unsubscribed=send_to_unsubscribed,
            queue_draft=queue_draft,
            disable_message_retention=disable_message_retention,
            op_id=op_id,
        )
        return self._one(op)

    def send_in_app(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        send_at: Timestamp | None = None,
        language: str | None = None,
        queue_draft: bool | None = None,
        disable_message_retention: bool | None = None,
        op_id: str | None = None,
    ) -> str:
        """A transactional in-app message from its template; not retried when ambiguous."""
        op = self._build.send_in_app(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            send_at=send_at,
            language=language,
            queue_draft=queue_draft,
            disable_message_retention=disable_message_retention,
            op_id=op_id,
        )
        return self._one(op)

    def send_inbox_message(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        send_at: Timestamp | None = None,
        language: str | None = None,
        queue_draft: bool | None = None,
        disable_message_retention: bool | None = None,
        op_id: str | None = None,
    ) -> str:
        """A transactional inbox message from its template; not retried when ambiguous."""
        op = self._build.send_inbox_message(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            send_at=send_at,
            language=language,
            queue_draft=queue_draft,
            disable_message_retention=disable_message_retention,
            op_id=op_id,
        )
        return self._one(op)

    def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> str:
        """Trigger an API-triggered broadcast, with at most one audience."""
        return self._one(self._build.trigger_broadcast(broadcast_id, data=data, **audience))

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_outbox:
            self.outbox.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRelay(_RelayBase):
    """``Relay`` for asyncio apps: the same methods, as coroutines.

    Validation runs inline (it is pure and fast); the durable write runs in a worker thread so
    the event loop never waits on the disk. Concurrent calls share that thread hop and one
    commit (``GroupWriter``): a busy app pays the disk once per group, not once per call, and
    each call still returns only once its operations are durable. One AsyncRelay may serve
    several event loops, on several threads: each loop gets its own group writer.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        outbox: Outbox | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        super().__init__(settings, outbox=outbox, hooks=hooks)
        # One writer per event loop: its futures and flusher task belong to that loop.
        self._writers: dict[asyncio.AbstractEventLoop, GroupWriter] = {}
        self._writers_lock = threading.Lock()

    async def enqueue(self, *operations: Operation) -> list[str]:
        """Store operations built with ``cio_relay.operations`` (all or none, with whatever other
        calls are waiting); their op ids. As ``Relay.enqueue`` for the environment."""
        adopted = self._adopted(operations)
        await self._writer().write(adopted)
        return [op.op_id for op in adopted]

    async def _one(self, op: Operation) -> str:
        await self._writer().write((op,))
        return op.op_id

    def _writer(self) -> GroupWriter:
        """The running loop's group writer (made on its first call; closed loops' are let go)."""
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            with self._writers_lock:
                self._writers = {
                    known: w for known, w in self._writers.items() if not known.is_closed()
                }
                writer = self._writers[loop] = GroupWriter(self.guarded_outbox)
        return writer

    # --- Track API ----------------------------------------------------------------------------

    async def identify(self, person: PersonRef, /, **attributes: Any) -> str:
        return await self._one(self._build.identify(person, attributes))

    async def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.track(person, name, data, timestamp=timestamp, op_id=op_id)
        return await self._one(op)

    async def page(
        self,
        person: PersonRef,
        url: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.page(person, url, data, timestamp=timestamp, op_id=op_id)
        return await self._one(op)

    async def screen(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.screen(person, name, data, timestamp=timestamp, op_id=op_id)
        return await self._one(op)

    async def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_type: AnonymousEventType = "event",
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.track_anonymous(
            anonymous_id, name, data, event_type=event_type, timestamp=timestamp, op_id=op_id
        )
        return await self._one(op)

    async def add_device(
        self,
        person: PersonRef,
        token: str,
        platform: str,
        *,
        last_used: Timestamp | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        op = self._build.add_device(
            person, token, platform, last_used=last_used, attributes=attributes
        )
        return await self._one(op)

    async def delete_device(self, person: PersonRef, token: str) -> str:
        return await self._one(self._build.delete_device(person, token))

    async def suppress(self, person: PersonRef) -> str:
        return await self._one(self._build.suppress(person))

    async def unsuppress(self, person: PersonRef) -> str:
        return await self._one(self._build.unsuppress(person))

    async def merge(self, primary: PersonRef, secondary: PersonRef) -> str:
        return await self._one(self._build.merge(primary, secondary))

    async def delete(self, person: PersonRef) -> str:
        return await self._one(self._build.delete(person))

    # --- relationships and objects (v2) -------------------------------------------------------

    async def add_relationships(self, person: PersonRef, objects: Sequence[Related]) -> str:
        return await self._one(self._build.add_relationships(person, objects))

    async def delete_relationships(self, person: PersonRef, objects: Sequence[Related]) -> str:
        return await self._one(self._build.delete_relationships(person, objects))

    async def identify_object(
        self,
        obj: ObjectRef,
        attributes: Mapping[str, Any] | None = None,
        *,
        people: Sequence[Related] | None = None,
    ) -> str:
        return await self._one(self._build.identify_object(obj, attributes, people=people))

    async def delete_object(self, obj: ObjectRef) -> str:
        return await self._one(self._build.delete_object(obj))

    async def identify_anonymous(
        self,
        obj: ObjectRef,
        anonymous_id: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        relationship_attributes: Mapping[str, Any] | None = None,
    ) -> str:
        op = self._build.identify_anonymous(
            obj, anonymous_id, attributes, relationship_attributes=relationship_attributes
        )
        return await self._one(op)

    async def add_object_relationships(self, obj: ObjectRef, people: Sequence[Related]) -> str:
        return await self._one(self._build.add_object_relationships(obj, people))

    async def delete_object_relationships(self, obj: ObjectRef, people: Sequence[Related]) -> str:
        return await self._one(self._build.delete_object_relationships(obj, people))

    # --- segments and delivery metrics (v1) ---------------------------------------------------

    async def add_to_segment(
        self, segment_id: int | str, ids: Sequence[str], *, id_type: SegmentIdType = "id"
    ) -> str:
        return await self._one(self._build.add_to_segment(segment_id, ids, id_type=id_type))

    async def remove_from_segment(
        self, segment_id: int | str, ids: Sequence[str], *, id_type: SegmentIdType = "id"
    ) -> str:
        return await self._one(self._build.remove_from_segment(segment_id, ids, id_type=id_type))

    async def track_metric(
        self,
        delivery_id: str,
        metric: Metric,
        *,
        recipient: str | int | None = None,
        reason: str | None = None,
        href: str | None = None,
        timestamp: Timestamp | None = None,
    ) -> str:
        op = self._build.track_metric(
            delivery_id, metric, recipient=recipient, reason=reason, href=href, timestamp=timestamp
        )
        return await self._one(op)

    async def track_push_metric(
        self,
        delivery_id: str,
        event: PushMetric,
        device_id: str,
        *,
        timestamp: Timestamp | None = None,
    ) -> str:
        op = self._build.track_push_metric(delivery_id, event, device_id, timestamp=timestamp)
        return await self._one(op)

    # --- App API ------------------------------------------------------------------------------

    async def send_email(
        self,
        *,
        to: str | list[str],
        identifiers: Mapping[str, str] | None = None,
        transactional_message_id: str | int | None = None,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        op = self._build.send_email(
            to=to,
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return await self._one(op)

    async def send_push(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        op = self._build.send_push(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return await self._one(op)

    async def send_sms(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        op = self._build.send_sms(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return await self._one(op)

    async def send_whatsapp(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        to: str,
        message_data: Mapping[str, Any] | None = None,
        send_at: Timestamp | None = None,
        language: str | None = None,
        tracked: bool | None = None,
        send_to_unsubscribed: bool | None = None,
        queue_draft: bool | None = None,
        disable_message_retention: bool | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.send_whatsapp(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            to=to,
            message_data=message_data,
            send_at=send_at,
            language=language,
            tracked=tracked,
            send_to_unsubscribed=send_to_unsubscribed,
            queue_draft=queue_draft,
            disable_message_retention=disable_message_retention,
            op_id=op_id,
        )
        return await self._one(op)

    async def send_in_app(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        send_at: Timestamp | None = None,
        language: str | None = None,
        queue_draft: bool | None = None,
        disable_message_retention: bool | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.send_in_app(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            send_at=send_at,
            language=language,
            queue_draft=queue_draft,
            disable_message_retention=disable_message_retention,
            op_id=op_id,
        )
        return await self._one(op)

    async def send_inbox_message(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        send_at: Timestamp | None = None,
        language: str | None = None,
        queue_draft: bool | None = None,
        disable_message_retention: bool | None = None,
        op_id: str | None = None,
    ) -> str:
        op = self._build.send_inbox_message(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            send_at=send_at,
            language=language,
            queue_draft=queue_draft,
            disable_message_retention=disable_message_retention,
            op_id=op_id,
        )
        return await self._one(op)

    async def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> str:
        return await self._one(self._build.trigger_broadcast(broadcast_id, data=data, **audience))

    # --- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        with self._writers_lock:
            writer = self._writers.pop(asyncio.get_running_loop(), None)
        if writer is not None:
            await writer.aclose()  # the writes in progress land before the outbox closes
        if self._owns_outbox:
            await asyncio.to_thread(self.outbox.close)

    async def __aenter__(self) -> AsyncRelay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
