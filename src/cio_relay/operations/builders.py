"""The builders: an ``OperationFactory`` turns what a caller says into a checked ``Operation``.

A factory holds one environment. It writes it into every operation it builds (``env``) and,
when ``stamp_env`` is on, into a person's attributes and an event's data as ``_env``, so that a
workspace shared by several environments can tell them apart. It is the one place where that
happens: ``Relay``, ``AsyncRelay`` and the ingestion API each build through a factory made from
their settings, and ``adopt`` gives an operation built by hand the environment of the relay that
enqueues it.

Each builder checks the documented limits (``limits``) and the shape of its input
(``validation``), so a violation is refused here, naming the field, and nothing is
half-written (design.md contract 5). The module-level builders of ``cio_relay.operations``
(``ops.track(...)``) are the methods of a factory of no environment (``NO_ENV``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from cio_relay.errors import ValidationError
from cio_relay.operations.kinds import Kind
from cio_relay.operations.limits import check_attributes, check_event_data
from cio_relay.operations.model import NO_ENV, Identifiers, Operation, PersonRef, new_operation
from cio_relay.operations.objects import ObjectBuilders
from cio_relay.operations.segments_metrics import SegmentMetricBuilders
from cio_relay.operations.sends import SendBuilders
from cio_relay.operations.validation import (
    NOT_PHONE,
    Timestamp,
    check_event_name,
    check_platform,
    check_relationships,
    check_token,
    checked_mapping,
    person_identifiers,
    unix_seconds,
)
from cio_relay.operations.wire import RELATIONSHIPS

if TYPE_CHECKING:
    from cio_relay.config import Settings

__all__ = [
    "ANONYMOUS_EVENT_TYPES",
    "EVENT_KINDS",
    "AnonymousEventType",
    "OperationFactory",
]

#: The kinds of named event about a person, with data (``track``, ``page``, ``screen``).
EVENT_KINDS = frozenset({Kind.TRACK, Kind.PAGE, Kind.SCREEN})
#: The kinds whose ``data`` carries the ``_env`` stamp (a person's carry it in ``attributes``).
_DATA_STAMPED = EVENT_KINDS | {Kind.TRACK_ANONYMOUS}
#: The types of an anonymous event (track-api.json ``anonymousEventsRequest``).
AnonymousEventType = Literal["event", "page", "screen"]
ANONYMOUS_EVENT_TYPES: tuple[AnonymousEventType, ...] = ("event", "page", "screen")


class OperationFactory(SendBuilders, ObjectBuilders, SegmentMetricBuilders):
    """Builds checked Operations for one environment (see the module docstring).

    The builders of transactional sends and broadcast triggers (``sends``), of objects and
    relationships (``objects``) and of segment membership and delivery metrics
    (``segments_metrics``) are mixed in from their own modules.

    ``op_id`` (a ULID, kept upper-cased) makes a retried call store the operation once; it is
    new for each operation when not given. ``created_at`` (Unix seconds) is now when not given.
    """

    __slots__ = ("_stamp", "env", "stamp_env")

    def __init__(self, env: str = NO_ENV, *, stamp_env: bool = False) -> None:
        self.env = env
        self.stamp_env = stamp_env
        self._stamp = stamp_env and env != NO_ENV

    @classmethod
    def from_settings(cls, settings: Settings) -> OperationFactory:
        return cls(settings.env, stamp_env=settings.stamp_env)

    def __repr__(self) -> str:
        return f"OperationFactory(env={self.env!r}, stamp_env={self.stamp_env!r})"

    # --- people -------------------------------------------------------------------------------

    def identify(
        self,
        person: PersonRef,
        attributes: Mapping[str, Any] | None = None,
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Create or update a person with ``attributes``. Relationships to objects go in the
        ``cio_relationships`` attribute as v1 documents it: ``{"action": "add_relationships" |
        "delete_relationships", "relationships": [{"identifiers": {"object_type_id": ...,
        "object_id": ...}, "relationship_attributes": {...}}]}``."""
        ids = person_identifiers(person)
        attrs = self._stamped(attributes or {}, "attributes")
        check_attributes(attrs)
        if RELATIONSHIPS in attrs:
            check_relationships(attrs[RELATIONSHIPS])
            removes = attrs[RELATIONSHIPS].get("action") == "delete_relationships"
            if removes and "phone" in ids:  # v2 carries it alone, and v1 cannot name a phone
                raise ValidationError(
                    "attributes.cio_relationships",
                    "a person named by phone cannot remove relationships in an identify; "
                    "remove them in an operation of their own",
                )
        return self._op(Kind.IDENTIFY, ids, {"attributes": attrs}, op_id, created_at)

    def delete(
        self, person: PersonRef, *, op_id: str | None = None, created_at: float | None = None
    ) -> Operation:
        """Delete a person (irreversible at Customer.io)."""
        return self._op(Kind.DELETE, person_identifiers(person), {}, op_id, created_at)

    def suppress(
        self, person: PersonRef, *, op_id: str | None = None, created_at: float | None = None
    ) -> Operation:
        """Delete a person and stop them being added again."""
        return self._op(Kind.SUPPRESS, person_identifiers(person), {}, op_id, created_at)

    def unsuppress(
        self, person: PersonRef, *, op_id: str | None = None, created_at: float | None = None
    ) -> Operation:
        """Let a suppressed person be added again."""
        return self._op(Kind.UNSUPPRESS, person_identifiers(person), {}, op_id, created_at)

    def merge(
        self,
        primary: PersonRef,
        secondary: PersonRef,
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Merge ``secondary`` into ``primary``; the secondary is deleted (irreversible)."""
        # A merge names people by id, email or cio_id (track-api.json ``person_merge``).
        first = person_identifiers(primary, "primary", NOT_PHONE)
        second = person_identifiers(secondary, "secondary", NOT_PHONE)
        if first == second:
            raise ValidationError("secondary", "cannot merge a person into themselves")
        payload = {"primary": first, "secondary": second}
        return self._op(Kind.MERGE, first, payload, op_id, created_at)

    # --- events -------------------------------------------------------------------------------

    def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """An event for a person. ``op_id`` travels as the event ``id``, so a redelivery is
        ignored; ``timestamp`` (Unix seconds, or a datetime with a time zone) is the second of
        ``created_at`` when not given."""
        ids = person_identifiers(person)
        return self._event(Kind.TRACK, ids, name, data, timestamp, op_id, created_at)

    def page(
        self,
        person: PersonRef,
        url: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """A page view: an event of type ``page`` named by the URL."""
        ids = person_identifiers(person)
        return self._event(Kind.PAGE, ids, url, data, timestamp, op_id, created_at)

    def screen(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """A mobile screen view: an event of type ``screen``."""
        ids = person_identifiers(person)
        return self._event(Kind.SCREEN, ids, name, data, timestamp, op_id, created_at)

    def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_type: AnonymousEventType = "event",
        timestamp: Timestamp | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """An event (or, with ``event_type``, a page or screen view) for someone not yet
        identified, merged later into the person whose ``anonymous_id`` matches. ``anonymous_id``
        may be None for an event about no one yet, such as an invite to an address with no
        profile (track-api.json ``anonymousEventsRequest``)."""
        if anonymous_id is not None and (
            not isinstance(anonymous_id, str) or not anonymous_id.strip()
        ):
            raise ValidationError("anonymous_id", "must be a non-empty string, or None")
        if event_type not in ANONYMOUS_EVENT_TYPES:
            raise ValidationError(
                "event_type", f"must be one of {', '.join(ANONYMOUS_EVENT_TYPES)}"
            )
        op = self._event(Kind.TRACK_ANONYMOUS, {}, name, data, timestamp, op_id, created_at)
        # The payload is the op's own dict, seen by no one else yet.
        if anonymous_id is not None:
            op.payload["anonymous_id"] = anonymous_id
        if event_type != "event":
            op.payload["type"] = event_type
        return op

    def _event(
        self,
        kind: Kind,
        ids: Identifiers,
        name: str,
        data: Mapping[str, Any] | None,
        timestamp: Timestamp | None,
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        clean = self._stamped(data or {}, "data")
        stripped = check_event_name(name)
        check_event_data(clean)
        created = time.time() if created_at is None else created_at
        payload = {
            "name": stripped,
            "data": clean,
            "timestamp": int(created)
            if timestamp is None
            else unix_seconds(timestamp, "timestamp"),
        }
        return self._op(kind, ids, payload, op_id, created)

    # --- devices ------------------------------------------------------------------------------

    def add_device(
        self,
        person: PersonRef,
        token: str,
        platform: str,
        *,
        last_used: Timestamp | None = None,
        attributes: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Add or update a push device (``platform`` ios or android) for a person."""
        ids = person_identifiers(person)
        check_token(token)
        check_platform(platform)
        attrs = checked_mapping(attributes or {}, "device.attributes")
        check_attributes(attrs, "device.attributes")
        payload: dict[str, Any] = {"token": token, "platform": platform, "attributes": attrs}
        if last_used is not None:
            payload["last_used"] = unix_seconds(last_used, "last_used")
        return self._op(Kind.ADD_DEVICE, ids, payload, op_id, created_at)

    def delete_device(
        self,
        person: PersonRef,
        token: str,
        *,
        op_id: str | None = None,
        created_at: float | None = None,
    ) -> Operation:
        """Remove a push device from a person."""
        ids = person_identifiers(person)
        check_token(token)
        return self._op(Kind.DELETE_DEVICE, ids, {"token": token}, op_id, created_at)

    # --- the environment ----------------------------------------------------------------------

    def adopt(self, op: Operation) -> Operation:
        """``op`` in this factory's environment: as it is if it is already there; stamped as this
        factory stamps if it was built by hand (``NO_ENV``); refused if it is another's."""
        if op.env == self.env:
            return op
        if op.env != NO_ENV:
            raise ValidationError(
                "env", f"the operation was built for {op.env!r}; this relay writes {self.env!r}"
            )
        payload = op.payload
        if self._stamp and op.kind is Kind.IDENTIFY:
            attributes = self._stamped(payload["attributes"], "attributes")
            check_attributes(attributes)  # the stamp is one attribute more
            payload = {**payload, "attributes": attributes}
        elif self._stamp and op.kind in _DATA_STAMPED:
            data = self._stamped(payload["data"], "data")
            check_event_data(data)
            payload = {**payload, "data": data}
        return new_operation(op.op_id, op.kind, op.identifiers, payload, op.created_at, self.env)

    def _stamped(self, values: Mapping[str, Any], field_name: str) -> dict[str, Any]:
        """A copy of ``values`` (the caller's dict is never kept), stamped with ``_env``."""
        out = checked_mapping(values, field_name)
        if self._stamp:
            out.setdefault("_env", self.env)
        return out
