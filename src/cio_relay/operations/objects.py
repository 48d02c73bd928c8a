"""Builders of the v2 operations on objects and relationships (track-api.json ``object_*`` and
``person_add_relationships`` / ``person_delete_relationships``).

An object is a non-person entity (a company, a course) named by ``{"object_type_id": "1",
"object_id": "acme"}`` (which creates it) or ``{"cio_object_id": ...}`` (Customer.io's own id,
which only updates). Its operations are stored with no person identifiers: the object is in
``payload["object"]``, and the relationships in ``payload["relationships"]`` exactly as the
item's ``cio_relationships`` array travels.

Ordering (``Operation.person_key``): a person's relationship changes are ordered with the rest
of that person's operations (the person key), so an identify followed by ``add_relationships``
arrives in that order. An object's operations are ordered by the object (``object:{type}:{id}``)
and are not ordered against the people they relate to: relating an object to a person who is
only being identified now may reach Customer.io first (relate from the person's side,
``add_relationships``, when that order matters).

These are ``OperationFactory`` methods (this mixin); objects carry no ``_env`` stamp, which
is about people and events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations.kinds import Kind
from cio_relay.operations.limits import LIMITS, check_attributes, check_bytes, json_size
from cio_relay.operations.model import Identifiers, Operation, OperationMaker, PersonRef
from cio_relay.operations.validation import NOT_PHONE, checked_mapping, person_identifiers

__all__ = ["ObjectBuilders", "ObjectRef", "Related", "object_identifiers"]

#: An object as callers name it: ``{"object_type_id": "1", "object_id": "acme"}`` (the type id
#: may be given as an int) or ``{"cio_object_id": "obb7fd050101"}``.
ObjectRef = Mapping[str, Any]
#: One side of a relationship: the other entity's reference, or the documented entry
#: ``{"identifiers": <reference>, "relationship_attributes": {...}}``.
Related = Any

_OBJECT_SHAPE = "give object_type_id and object_id, or cio_object_id"


def object_identifiers(given: Any, field_name: str = "object") -> dict[str, str]:
    """``given`` as the documents name an object: ``object_type_id`` (a string-formatted whole
    number from 1) and ``object_id`` (at most 150 bytes), or ``cio_object_id``."""
    if not isinstance(given, Mapping):
        raise ValidationError(field_name, _OBJECT_SHAPE)
    named = {key: value for key, value in given.items() if value not in (None, "")}
    if set(named) == {"cio_object_id"}:
        cio_object_id = named["cio_object_id"]
        if not isinstance(cio_object_id, str) or not cio_object_id.strip():
            raise ValidationError(f"{field_name}.cio_object_id", "must be a non-empty string")
        return {"cio_object_id": cio_object_id}
    if set(named) != {"object_type_id", "object_id"}:
        raise ValidationError(field_name, f"{_OBJECT_SHAPE}; got {sorted(named)}")
    type_id = named["object_type_id"]
    if isinstance(type_id, int) and not isinstance(type_id, bool):
        type_id = str(type_id)
    if not isinstance(type_id, str) or not type_id.isascii() or not type_id.isdigit():
        raise ValidationError(
            f"{field_name}.object_type_id", "must be a whole number from 1, like '1'"
        )
    if int(type_id) < 1:
        raise ValidationError(f"{field_name}.object_type_id", "object types are numbered from 1")
    object_id = named["object_id"]
    if not isinstance(object_id, str) or not object_id.strip():
        raise ValidationError(f"{field_name}.object_id", "must be a non-empty string")
    check_bytes(f"{field_name}.object_id", object_id, LIMITS.identifier_bytes)
    return {"object_type_id": type_id, "object_id": object_id}


def _entry(related: Related) -> tuple[Any, Any]:
    """``(reference, relationship attributes)`` of one relationship as a caller gives it."""
    if isinstance(related, Mapping) and "identifiers" in related:
        extra = set(related) - {"identifiers", "relationship_attributes"}
        if extra:
            raise ValidationError("relationships", f"unknown keys {sorted(extra)}")
        return related["identifiers"], related.get("relationship_attributes")
    return related, None


def _relationships(
    given: Sequence[Related], name_one: Any, field_name: str = "relationships"
) -> list[dict[str, Any]]:
    """The item's ``cio_relationships`` array: each entry named by ``name_one(reference,
    where)``, with its relationship attributes where given; at most 100,000 bytes in all (the
    documented size of ``cio_relationships``)."""
    if isinstance(given, str | bytes | Mapping) or not isinstance(given, Sequence) or not given:
        raise ValidationError(field_name, "must be a non-empty list")
    out: list[dict[str, Any]] = []
    for index, related in enumerate(given):
        where = f"{field_name}[{index}]"
        reference, attributes = _entry(related)
        entry: dict[str, Any] = {"identifiers": name_one(reference, f"{where}.identifiers")}
        if attributes is not None:
            entry["relationship_attributes"] = checked_mapping(
                attributes, f"{where}.relationship_attributes"
            )
        out.append(entry)
    size = json_size(out, field_name)
    if size > LIMITS.relationships_bytes:
        raise LimitExceeded(field_name, LIMITS.relationships_bytes, size)
    return out


def _person(reference: Any, where: str) -> Identifiers:
    # An object's relationships name people by id, email or cio_id (``v2_cio_relationships``).
    return person_identifiers(reference, where, NOT_PHONE)


def _anonymous(reference: Any, where: str) -> dict[str, str]:
    if not isinstance(reference, str) or not reference.strip():
        raise ValidationError(f"{where}.anonymous_id", "must be a non-empty string")
    return {"anonymous_id": reference}


class ObjectBuilders(OperationMaker):
    """``OperationFactory``'s builders of objects and relationships (see the module docstring)."""

    __slots__ = ()

    # --- a person's relationships -------------------------------------------------------------

    def add_relationships(
        self,
        person: PersonRef,
        objects: Sequence[Related],
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Relate ``person`` to ``objects``: each an object reference, or ``{"identifiers":
        <reference>, "relationship_attributes": {...}}``. Ordered with the person's operations."""
        return self._person_relationships(
            Kind.ADD_RELATIONSHIPS, person, objects, op_id, created_at
        )

    def delete_relationships(
        self,
        person: PersonRef,
        objects: Sequence[Related],
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Remove ``person``'s relationships to ``objects``. Ordered with the person's
        operations."""
        return self._person_relationships(
            Kind.DELETE_RELATIONSHIPS, person, objects, op_id, created_at
        )

    def _person_relationships(
        self,
        kind: Kind,
        person: PersonRef,
        objects: Sequence[Related],
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        ids = person_identifiers(person)
        payload = {"relationships": _relationships(objects, object_identifiers)}
        return self._op(kind, ids, payload, op_id, created_at)

    # --- objects ------------------------------------------------------------------------------

    def identify_object(
        self,
        obj: ObjectRef,
        attributes: Mapping[str, Any] | None = None,
        *,
        people: Sequence[Related] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Create or update an object with ``attributes`` (the documented attribute limits),
        related to ``people`` where given (each a person reference by id, email or cio_id, or
        ``{"identifiers": ..., "relationship_attributes": ...}``). Ordered by the object."""
        payload = self._object_payload(obj, attributes)
        if people is not None:
            payload["relationships"] = _relationships(people, _person, "people")
        return self._op(Kind.IDENTIFY_OBJECT, {}, payload, op_id, created_at)

    def delete_object(
        self, obj: ObjectRef, *, op_id: str | None = None, created_at: float | None = None
    ) -> Operation:
        """Delete an object, and with it its relationships to people. Ordered by the object."""
        payload = {"object": object_identifiers(obj)}
        return self._op(Kind.DELETE_OBJECT, {}, payload, op_id, created_at)

    def identify_anonymous(
        self,
        obj: ObjectRef,
        anonymous_id: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        relationship_attributes: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Create or update an object and relate it to someone not identified yet, by
        ``anonymous_id``; identifying a person with that ``anonymous_id`` carries the
        relationship over (track-api.json ``object_identify_anonymous``). Ordered by the
        object."""
        if not isinstance(anonymous_id, str) or not anonymous_id.strip():
            raise ValidationError("anonymous_id", "must be a non-empty string")
        payload = self._object_payload(obj, attributes)
        entry: dict[str, Any] = {"identifiers": anonymous_id}
        if relationship_attributes is not None:
            entry["relationship_attributes"] = relationship_attributes
        payload["relationships"] = _relationships([entry], _anonymous, "anonymous_id")
        return self._op(Kind.IDENTIFY_ANONYMOUS, {}, payload, op_id, created_at)

    def add_object_relationships(
        self,
        obj: ObjectRef,
        people: Sequence[Related],
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Relate an object to ``people`` (by id, email or cio_id). Ordered by the object."""
        return self._object_relationships(
            Kind.ADD_OBJECT_RELATIONSHIPS, obj, people, op_id, created_at
        )

    def delete_object_relationships(
        self,
        obj: ObjectRef,
        people: Sequence[Related],
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Remove an object's relationships to ``people``. Ordered by the object."""
        return self._object_relationships(
            Kind.DELETE_OBJECT_RELATIONSHIPS, obj, people, op_id, created_at
        )

    def _object_relationships(
        self,
        kind: Kind,
        obj: ObjectRef,
        people: Sequence[Related],
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        payload = {
            "object": object_identifiers(obj),
            "relationships": _relationships(people, _person, "people"),
        }
        return self._op(kind, {}, payload, op_id, created_at)

    @staticmethod
    def _object_payload(obj: ObjectRef, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"object": object_identifiers(obj)}
        if attributes:
            attrs = checked_mapping(attributes, "attributes")
            check_attributes(attrs)
            payload["attributes"] = attrs
        return payload
