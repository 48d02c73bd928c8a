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


def _object(ref: s.ObjectKey | s.CioObject) -> dict[str, Any]:
    return ref.model_dump()


def _relationship(reference: Any, attributes: dict[str, Any] | None) -> Any:
    """One relationship as the builders take it: the bare reference, or the documented entry
    when it carries attributes of its own."""
    if attributes is None:
        return reference
    return {"identifiers": reference, "relationship_attributes": attributes}


def _related_object(entry: s.ObjectKey | s.CioObject | s.ObjectRelationship) -> Any:
    if isinstance(entry, s.ObjectRelationship):
        return _relationship(_object(entry.identifiers), entry.relationship_attributes)
    return _object(entry)


def _related_person(entry: str | s.Identifiers | s.PersonRelationship) -> Any:
    # The builders check each person (one of id, email, cio_id) and name its place.
    if isinstance(entry, s.PersonRelationship):
        return _relationship(_related_person(entry.identifiers), entry.relationship_attributes)
    return entry if isinstance(entry, str) else entry.as_person()


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
        self._relationships = {
            "add_relationships": ops.add_relationships,
            "delete_relationships": ops.delete_relationships,
            "add_object_relationships": ops.add_object_relationships,
            "delete_object_relationships": ops.delete_object_relationships,
        }
        self._segments = {
            "add_to_segment": ops.add_to_segment,
            "remove_from_segment": ops.remove_from_segment,
        }
        self._template_sends = {
            "send_in_app": ops.send_in_app,
            "send_inbox_message": ops.send_inbox_message,
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
            s.PersonRelationshipsItem: lambda item: self.person_relationships(
                item.type, _person(item.person), item
            ),
            s.ObjectItem: lambda item: self.identify_object(_object(item.object_), item),
            s.DeleteObjectItem: lambda item: self.delete_object(_object(item.object_)),
            s.AnonymousObjectItem: lambda item: self.identify_anonymous(
                _object(item.object_), item
            ),
            s.ObjectPeopleItem: lambda item: self.object_people(
                item.type, _object(item.object_), item
            ),
            s.SegmentItem: lambda item: self.segment(item.type, item.segment_id, item),
            s.MetricItem: self.metric,
            s.PushEventItem: self.push_metric,
            s.TemplateSendItem: lambda item: self.template_send(item.type, item),
            s.WhatsAppItem: self.whatsapp,
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

    def template_send(self, kind: str, body: s.TemplateSendBody) -> Operation:
        """``send_in_app`` or ``send_inbox_message``."""
        return self.checked(
            self._template_sends[kind],
            identifiers=body.identifiers.as_person(),
            transactional_message_id=body.transactional_message_id,
            message_data=body.message_data,
            **body.options(),
        )

    def whatsapp(self, body: s.WhatsAppBody) -> Operation:
        return self.checked(
            self._ops.send_whatsapp,
            identifiers=body.identifiers.as_person(),
            transactional_message_id=body.transactional_message_id,
            message_data=body.message_data,
            **body.options(),
        )

    # --- objects and relationships --------------------------------------------------------------

    def person_relationships(
        self, kind: str, person: PersonRef, body: s.PersonRelationshipsBody
    ) -> Operation:
        """``add_relationships`` or ``delete_relationships``."""
        related = [_related_object(entry) for entry in body.relationships]
        return self.checked(self._relationships[kind], person, related)

    def identify_object(self, obj: dict[str, Any], body: s.ObjectBody) -> Operation:
        people = None if body.people is None else [_related_person(p) for p in body.people]
        return self.checked(self._ops.identify_object, obj, body.attributes, people=people)

    def delete_object(self, obj: dict[str, Any]) -> Operation:
        return self.checked(self._ops.delete_object, obj)

    def identify_anonymous(self, obj: dict[str, Any], body: s.AnonymousObjectBody) -> Operation:
        return self.checked(
            self._ops.identify_anonymous,
            obj,
            body.anonymous_id,
            body.attributes,
            relationship_attributes=body.relationship_attributes,
        )

    def object_people(self, kind: str, obj: dict[str, Any], body: s.ObjectPeopleBody) -> Operation:
        """``add_object_relationships`` or ``delete_object_relationships``."""
        people = [_related_person(entry) for entry in body.people]
        return self.checked(self._relationships[kind], obj, people)

    # --- segments and delivery metrics ----------------------------------------------------------

    def segment(self, kind: str, segment_id: int | str, body: s.SegmentPeopleBody) -> Operation:
        """``add_to_segment`` or ``remove_from_segment``."""
        return self.checked(self._segments[kind], segment_id, body.ids, id_type=body.id_type)

    def metric(self, body: s.MetricBody) -> Operation:
        return self.checked(
            self._ops.track_metric,
            body.delivery_id,
            body.metric,
            recipient=body.recipient,
            reason=body.reason,
            href=body.href,
            timestamp=body.timestamp,
        )

    def push_metric(self, body: s.PushEventBody) -> Operation:
        return self.checked(
            self._ops.track_push_metric,
            body.delivery_id,
            body.event,
            body.device_id,
            timestamp=body.timestamp,
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
        """A batch item of a subclass of the item types (the table holds the exact ones)."""
        for item_type, build in self._items.items():
            if isinstance(item, item_type):
                return build(item)  # type: ignore[no-any-return]
        raise ValidationError("type", f"unknown operation type {type(item).__name__}")
