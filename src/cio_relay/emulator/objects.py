"""What object operations and relationship lists do, read from track-api.json.

- v2 ``type: object`` items: ``identify`` (creates or updates by ``object_type_id`` +
  ``object_id``; by ``cio_object_id`` it only updates), ``identify_anonymous`` (relates the
  object to ``anonymous_id`` members), ``delete``, ``add_relationships`` /
  ``delete_relationships`` (people by id, email or cio_id);
- a person's relationships to objects: the v2 person actions ``add_relationships`` /
  ``delete_relationships``, the top-level ``cio_relationships`` array of a v2 person
  ``identify``, and v1 identify's ``cio_relationships: {action, relationships}`` attribute.

Every list is checked whole before anything is applied, so a refused item changes nothing.
An unknown ``cio_object_id`` or ``cio_id`` is dropped, as an unknown ``cio_id`` is for people.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from . import people
from .limits import RELATIONSHIPS_BYTES, Invalid, check_attributes, check_identifier, json_size
from .relations import ANONYMOUS, PERSON, Member, ObjectKey, StoredObject
from .state import EmulatorState, Person

__all__ = [
    "OBJECT_ACTIONS",
    "ObjectRef",
    "apply_object_item",
    "link_person",
    "object_ref",
    "parse_object_links",
]

OBJECT_ACTIONS = (
    "identify",
    "identify_anonymous",
    "delete",
    "add_relationships",
    "delete_relationships",
)
_OBJECT_IDENTIFIERS = "object_type_id and object_id, or cio_object_id"


class ObjectRef(NamedTuple):
    """An object as a request names it: by key (which may create it) or by cio_object_id."""

    key: ObjectKey | None
    cio_object_id: str | None


ObjectLink = tuple[ObjectRef, dict[str, Any]]
MemberLink = tuple[tuple[str, str], dict[str, Any]]


def object_ref(value: Any, field: str = "identifiers") -> ObjectRef:
    if not isinstance(value, dict):
        raise Invalid(f"{field} must contain {_OBJECT_IDENTIFIERS}", field, "required")
    by_key = "object_type_id" in value or "object_id" in value
    if "cio_object_id" in value:
        if by_key:  # both shapes of the documented oneOf match: neither is chosen
            raise Invalid(f"{field} must contain {_OBJECT_IDENTIFIERS}, not both", field)
        cio_object_id = check_identifier(
            value["cio_object_id"], f"{field}.cio_object_id", capped=False
        )
        return ObjectRef(None, cio_object_id)
    if "object_type_id" not in value or "object_id" not in value:
        raise Invalid(f"{field} must contain {_OBJECT_IDENTIFIERS}", field, "required")
    type_id = check_identifier(value["object_type_id"], f"{field}.object_type_id", capped=False)
    object_id = check_identifier(value["object_id"], f"{field}.object_id")  # 150 bytes
    return ObjectRef((type_id, object_id), None)


def _resolve(state: EmulatorState, ref: ObjectRef, *, create: bool) -> StoredObject | None:
    relations = state.relations
    if ref.key is not None:
        return relations.upsert(ref.key) if create else relations.find(ref.key)
    assert ref.cio_object_id is not None
    found = relations.find_by_cio_object_id(ref.cio_object_id)
    if found is None:
        state.stats.ignored_unknown_cio_ids += 1
    return found


def _entries(value: Any, field: str) -> list[tuple[Any, dict[str, Any]]]:
    """(identifiers, relationship_attributes) of each entry of a relationship list."""
    if not isinstance(value, list):
        raise Invalid(f"{field} must be a list", field, "invalid_type")
    if json_size(value) > RELATIONSHIPS_BYTES:
        raise Invalid(
            f"value for attribute '{field}' cannot be longer than {RELATIONSHIPS_BYTES} bytes",
            field,
            "too_long",
        )
    entries = []
    for index, entry in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(entry, dict):
            raise Invalid(f"{where} must be an object", where, "invalid_type")
        attributes = entry.get("relationship_attributes")
        if attributes is None:
            attributes = {}
        check_attributes(attributes, f"{where}.relationship_attributes")
        entries.append((entry.get("identifiers"), attributes))
    return entries


def parse_object_links(value: Any, field: str = "cio_relationships") -> list[ObjectLink]:
    """A person's relationship list: each entry names an object."""
    return [
        (object_ref(identifiers, f"{field}[{index}].identifiers"), attributes)
        for index, (identifiers, attributes) in enumerate(_entries(value, field))
    ]


def link_person(
    state: EmulatorState, person: Person | None, links: list[ObjectLink], *, add: bool
) -> None:
    """Relate ``person`` to (or unrelate it from) each object; adding creates an object
    named by key that does not exist yet."""
    if person is None:
        return
    member: Member = (PERSON, person.cio_id)
    for ref, attributes in links:
        stored = _resolve(state, ref, create=add)
        if stored is None:
            continue
        if add:
            state.relations.relate(member, stored.key, attributes)
        else:
            state.relations.unrelate(member, stored.key)
    person.updated_at = time.time()


def _member_links(value: Any, *, anonymous: bool) -> list[MemberLink]:
    field = "cio_relationships"
    links = []
    for index, (identifiers, attributes) in enumerate(_entries(value, field)):
        where = f"{field}[{index}].identifiers"
        if anonymous:
            anonymous_id = identifiers.get(ANONYMOUS) if isinstance(identifiers, dict) else None
            if anonymous_id is None:
                raise Invalid(f"{where} must contain anonymous_id", where, "required")
            member = (
                ANONYMOUS,
                check_identifier(anonymous_id, f"{where}.anonymous_id", capped=False),
            )
        else:
            member = people.one_identifier(identifiers, where, people.MERGE_IDENTIFIERS)
        links.append((member, attributes))
    return links


def _member(state: EmulatorState, named: tuple[str, str], *, create: bool) -> Member | None:
    if named[0] == ANONYMOUS:
        return named
    person = people.person_for_write(state, *named) if create else state.find(*named)
    return None if person is None else (PERSON, person.cio_id)


def apply_object_item(state: EmulatorState, item: dict[str, Any]) -> None:
    """Apply one v2 ``type: object`` operation."""
    action = item.get("action")
    if action not in OBJECT_ACTIONS:
        raise Invalid(f"action must be one of {', '.join(OBJECT_ACTIONS)}", "action")
    ref = object_ref(item.get("identifiers"))
    if action == "delete":
        stored = _resolve(state, ref, create=False)
        if stored is not None:
            state.relations.delete(stored)
        return
    add = action != "delete_relationships"
    anonymous = action == "identify_anonymous"
    relationships = item.get("cio_relationships")
    if relationships is None and action.endswith("_relationships"):
        raise Invalid("cio_relationships must be present", "cio_relationships", "required")
    links = [] if relationships is None else _member_links(relationships, anonymous=anonymous)
    if anonymous and item.get(ANONYMOUS) is not None:
        # The document's example puts one anonymous_id beside the identifiers.
        links.append(((ANONYMOUS, check_identifier(item[ANONYMOUS], ANONYMOUS, capped=False)), {}))
    attributes: dict[str, Any] = {}
    if action.startswith("identify"):
        raw = item.get("attributes")
        attributes = check_attributes({} if raw is None else raw)
    stored = _resolve(state, ref, create=add)
    if stored is None:
        return
    for name, value in attributes.items():  # track-api.json: null or "" removes an attribute
        if value is None or value == "":
            stored.attributes.pop(name, None)
        else:
            stored.attributes[name] = value
    stored.updated_at = time.time()
    for named, link_attributes in links:
        member = _member(state, named, create=add)
        if member is None:
            continue
        if add:
            state.relations.relate(member, stored.key, link_attributes)
        else:
            state.relations.unrelate(member, stored.key)
