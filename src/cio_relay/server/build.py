"""Validated request bodies to Operations, with the relay's environment stamped in.

Pure: the operation builders (an ``OperationFactory`` made from the settings, as the relay's is,
so that the environment is stamped the same way) check the documented limits and raise
``ValidationError``/``LimitExceeded`` naming the field; batch items get their position in front
(``operations[3].data``). Nothing here touches the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cio_relay.config import Settings
from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations import IDENTIFIER_TYPES, Operation, OperationFactory, PersonRef
from cio_relay.server import schemas as s

__all__ = ["OperationBuilder", "person_from_path"]


def person_from_path(person_id: str, id_type: str | None) -> PersonRef:
    """``/v1/people/{id}?id_type=email``: the person's identifiers.

    A plain id stays a string: the operation builders take the same person from it as from
    ``{"id": ...}``, without the checks a mapping needs (docs/benchmarks.md).
    """
    if not id_type or id_type == "id":  # no id_type, or an empty one, means an id
        return person_id
    if id_type not in IDENTIFIER_TYPES:
        raise ValidationError(
            "id_type", f"must be one of {', '.join(IDENTIFIER_TYPES)}, not {id_type[:40]!r}"
        )
    return {id_type: person_id}


def _person(ref: str | s.Identifiers, field: str = "person") -> PersonRef:
    if isinstance(ref, str):
        return ref
    ids = ref.as_person()
    if len(ids) != 1:
        raise ValidationError(field, f"give exactly one of id, email, cio_id; got {sorted(ids)}")
    return ids


def _prefixed(exc: ValidationError, prefix: str) -> ValidationError:
    field = f"{prefix}.{exc.field}" if exc.field else prefix
    if isinstance(exc, LimitExceeded):
        return LimitExceeded(field, exc.limit, exc.size, exc.unit)
    message = str(exc).removeprefix(f"{exc.field}: ")
    return ValidationError(field, message)


class OperationBuilder:
    """Builds Operations the way ``Relay`` does: events and attributes carry the environment."""

    def __init__(self, settings: Settings) -> None:
        self._ops = ops = OperationFactory.from_settings(settings)
        self._simple = {
            "delete": ops.delete,
            "suppress": ops.suppress,
            "unsuppress": ops.unsuppress,
        }
        self._events = {
            "event": ops.track,
            "track": ops.track,
            "page": ops.page,
            "screen": ops.screen,
        }
        # Batch items by their exact class (an isinstance chain over pydantic models costs a
        # Python-level __instancecheck__ per test, per item).
        self._items: dict[type, Any] = {
            s.IdentifyItem: lambda item: self.identify(_person(item.person), item),
            s.PersonItem: lambda item: self.simple(item.type, _person(item.person)),
            s.TrackItem: lambda item: self.event(
                _person(item.person), item.name, item.data, item.timestamp, item.type
            ),
            s.AnonymousItem: self.anonymous,
            s.EmailItem: self.email,
            s.BroadcastItem: lambda item: self.broadcast(item.broadcast_id, item),
        }

    def checked(self, build: Any, *args: Any, **kwargs: Any) -> Operation:
        """Run an operation builder; malformed text (a lone surrogate) is a validation error.

        The builders check that every payload serialises (``_json_size``), so what passes here
        is storable; the group writer still isolates a request whose write fails. Each
        operation gets a new op id (``operations.new_op_id``) from its builder.
        """
        try:
            return build(*args, **kwargs)  # type: ignore[no-any-return]
        except UnicodeError:
            raise ValidationError("body", "contains text that is not valid Unicode") from None

    # --- single operations --------------------------------------------------------------------

    def identify(self, person: PersonRef, body: s.IdentifyBody) -> Operation:
        return self.checked(self._ops.identify, person, body.attributes)

    def event(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None,
        timestamp: int | None,
        event_type: str,
    ) -> Operation:
        # The hot path of batch ingestion: the builder is called directly, not through checked().
        try:
            return self._events[event_type](person, name, data, timestamp=timestamp)
        except UnicodeError:
            raise ValidationError("body", "contains text that is not valid Unicode") from None

    def anonymous(self, body: s.AnonymousEventBody) -> Operation:
        return self.checked(
            self._ops.track_anonymous,
            body.anonymous_id,
            body.name,
            body.data,
            event_type=body.event_type(),
            timestamp=body.timestamp,
        )

    def simple(self, kind: str, person: PersonRef) -> Operation:
        return self.checked(self._simple[kind], person)

    def email(self, body: s.EmailBody) -> Operation:
        identifiers = body.identifiers.as_person() if body.identifiers is not None else None
        return self.checked(
            self._ops.send_email,
            to=body.to,
            identifiers=identifiers,
            transactional_message_id=body.transactional_message_id,
            message_data=body.message_data,
            **body.passthrough(),
        )

    def broadcast(self, broadcast_id: int | str, body: s.BroadcastBody) -> Operation:
        return self.checked(
            self._ops.trigger_broadcast, broadcast_id, data=body.data, **body.audience()
        )

    # --- batch --------------------------------------------------------------------------------

    def batch(self, body: s.BatchBody) -> list[Operation]:
        """Every item or none: the first invalid item raises, naming its position."""
        out: list[Operation] = []
        items = self._items
        for index, item in enumerate(body.operations):
            try:
                build = items.get(type(item))
                out.append(self.item(item) if build is None else build(item))
            except ValidationError as exc:
                raise _prefixed(exc, f"operations[{index}]") from None
        return out

    def item(self, item: Any) -> Operation:
        if isinstance(item, s.IdentifyItem):
            return self.identify(_person(item.person), item)
        if isinstance(item, s.PersonItem):
            return self.simple(item.type, _person(item.person))
        if isinstance(item, s.TrackItem):
            return self.event(_person(item.person), item.name, item.data, item.timestamp, item.type)
        if isinstance(item, s.AnonymousItem):
            return self.anonymous(item)
        if isinstance(item, s.EmailItem):
            return self.email(item)
        if isinstance(item, s.BroadcastItem):
            return self.broadcast(item.broadcast_id, item)
        raise ValidationError("type", f"unknown operation type {type(item).__name__}")
