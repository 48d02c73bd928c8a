"""Custom objects and the relationships between them and people, as the emulator keeps them.

An object is known by ``(object_type_id, object_id)`` and gets an immutable ``cio_object_id``
when it is created (track-api.json, ``object_identifiers``). A relationship links one member
to one object and carries its own ``relationship_attributes``. A member is a person's
``cio_id`` or, before that person is identified, an ``anonymous_id`` (the v2 object action
``identify_anonymous``); identifying a person with that ``anonymous_id`` carries the
relationships over to the profile, as the document says.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

__all__ = ["ANONYMOUS", "PERSON", "Member", "ObjectKey", "Relations", "StoredObject"]

ObjectKey = tuple[str, str]  # (object_type_id, object_id)
PERSON = "cio_id"
ANONYMOUS = "anonymous_id"
Member = tuple[str, str]  # (PERSON, cio_id) or (ANONYMOUS, anonymous_id)


class StoredObject:
    __slots__ = ("attributes", "cio_object_id", "created_at", "key", "updated_at")

    def __init__(self, key: ObjectKey, cio_object_id: str, now: float) -> None:
        self.key = key
        self.cio_object_id = cio_object_id
        self.attributes: dict[str, Any] = {}
        self.created_at = now
        self.updated_at = now

    def to_json(self) -> dict[str, Any]:
        return {
            "object_type_id": self.key[0],
            "object_id": self.key[1],
            "cio_object_id": self.cio_object_id,
            "attributes": self.attributes,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Relations:
    """Objects by key and by ``cio_object_id``, and the member <-> object links both ways."""

    def __init__(self) -> None:
        self.objects: dict[ObjectKey, StoredObject] = {}
        self.by_cio_object_id: dict[str, ObjectKey] = {}
        self.by_member: dict[Member, dict[ObjectKey, dict[str, Any]]] = {}
        self.by_object: dict[ObjectKey, set[Member]] = {}
        # Customer.io's cio_object_ids are opaque strings; a counter is unique and cheap.
        self._cio_object_ids = itertools.count(0xB000000001)

    # --- objects ---------------------------------------------------------------------------

    def find(self, key: ObjectKey) -> StoredObject | None:
        return self.objects.get(key)

    def find_by_cio_object_id(self, cio_object_id: str) -> StoredObject | None:
        key = self.by_cio_object_id.get(cio_object_id)
        return None if key is None else self.objects.get(key)

    def upsert(self, key: ObjectKey) -> StoredObject:
        stored = self.objects.get(key)
        if stored is None:
            stored = StoredObject(key, format(next(self._cio_object_ids), "010x"), time.time())
            self.objects[key] = stored
            self.by_cio_object_id[stored.cio_object_id] = key
        return stored

    def delete(self, stored: StoredObject) -> None:
        self.objects.pop(stored.key, None)
        self.by_cio_object_id.pop(stored.cio_object_id, None)
        for member in self.by_object.pop(stored.key, set()):
            links = self.by_member.get(member)
            if links is not None:
                links.pop(stored.key, None)
                if not links:
                    del self.by_member[member]

    # --- relationships ---------------------------------------------------------------------

    def relate(self, member: Member, key: ObjectKey, attributes: dict[str, Any]) -> None:
        """Link ``member`` to the object; an existing link gets the new attributes on top."""
        links = self.by_member.setdefault(member, {})
        links[key] = {**links.get(key, {}), **attributes}
        self.by_object.setdefault(key, set()).add(member)

    def unrelate(self, member: Member, key: ObjectKey) -> None:
        links = self.by_member.get(member)
        if links is None or links.pop(key, None) is None:
            return
        if not links:
            del self.by_member[member]
        members = self.by_object.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self.by_object[key]

    def move_member(self, old: Member, new: Member) -> None:
        """Give ``new`` the links of ``old`` (a merge, or an anonymous visitor identified);
        where both are linked to an object, ``new``'s attributes win."""
        moved = self.by_member.pop(old, None)
        if not moved:
            return
        links = self.by_member.setdefault(new, {})
        for key, attributes in moved.items():
            links[key] = {**attributes, **links.get(key, {})}
            members = self.by_object.setdefault(key, set())
            members.discard(old)
            members.add(new)

    def forget_member(self, member: Member) -> None:
        for key in list(self.by_member.get(member, {})):
            self.unrelate(member, key)

    def links_of(self, member: Member) -> list[dict[str, Any]]:
        """The objects ``member`` is related to, with each relationship's attributes."""
        rows = []
        for key, attributes in self.by_member.get(member, {}).items():
            stored = self.objects.get(key)
            rows.append(
                {
                    "object_type_id": key[0],
                    "object_id": key[1],
                    "cio_object_id": None if stored is None else stored.cio_object_id,
                    "relationship_attributes": attributes,
                }
            )
        return rows

    def members_of(self, key: ObjectKey) -> list[dict[str, Any]]:
        """Who is related to the object, with each relationship's attributes."""
        rows = []
        for member in sorted(self.by_object.get(key, ())):
            attributes = self.by_member.get(member, {}).get(key, {})
            rows.append({member[0]: member[1], "relationship_attributes": attributes})
        return rows
