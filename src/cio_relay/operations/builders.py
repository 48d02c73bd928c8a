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
from cio_relay.operations.ids import checked_op_id, new_op_id
from cio_relay.operations.kinds import Kind
from cio_relay.operations.limits import (
    check_attachments,
    check_attributes,
    check_event_data,
    check_recipients,
    json_size,
)
from cio_relay.operations.model import NO_ENV, Identifiers, Operation, PersonRef, new_operation
from cio_relay.operations.objects import ObjectBuilders
from cio_relay.operations.segments_metrics import SegmentMetricBuilders
from cio_relay.operations.send_options import check_send_options
from cio_relay.operations.validation import (
    NOT_PHONE,
    Timestamp,
    broadcast_number,
    check_event_name,
    check_platform,
    check_relationships,
    check_sms_recipient,
    check_token,
    check_transactional,
    checked_mapping,
    person_identifiers,
    recipients_text,
    transactional_identifiers,
    unix_seconds,
    wire_headers,
)
from cio_relay.operations.wire import RELATIONSHIPS

if TYPE_CHECKING:
    from cio_relay.config import Settings

__all__ = [
    "ANONYMOUS_EVENT_TYPES",
    "BROADCAST_AUDIENCES",
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
BROADCAST_AUDIENCES = ("recipients", "emails", "ids", "per_user_data", "data_file_url")


class OperationFactory(ObjectBuilders, SegmentMetricBuilders):
    """Builds checked Operations for one environment (see the module docstring).

    The builders of objects and relationships (``objects``) and of segment membership and
    delivery metrics (``segments_metrics``) are mixed in from their own modules.

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

    # --- App API: transactional and broadcasts ------------------------------------------------

    def send_email(
        self,
        *,
        to: str | list[str],
        identifiers: Mapping[str, str] | None = None,
        transactional_message_id: str | int | None = None,
        message_data: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
        **fields: Any,
    ) -> Operation:
        """A transactional email. Extra ``fields`` (``subject``, ``cc``, ``attachments``,
        ``send_at`` ...) pass through as documented in customerio-api.md §5."""
        if not to:
            raise ValidationError("to", "a recipient is required")
        # On the wire ``to``, ``cc`` and ``bcc`` are comma-separated text (track-api.json
        # ``transactionalSharedEmailObject``); a list of addresses is joined.
        to = recipients_text(to, "to")
        for copied in ("cc", "bcc"):
            if fields.get(copied) is not None:
                fields[copied] = recipients_text(fields[copied], copied)
        check_recipients(to, fields.get("cc"), fields.get("bcc"))
        check_attachments(fields.get("attachments") or {})
        if fields.get("headers") is not None:
            fields["headers"] = wire_headers(fields["headers"])
        payload: dict[str, Any] = {"to": to, **fields}
        ids = transactional_identifiers(identifiers, to)
        return self._send(
            Kind.SEND_EMAIL, payload, ids, transactional_message_id, message_data, op_id, created_at
        )

    def send_push(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
        **fields: Any,
    ) -> Operation:
        """A transactional push; ``fields`` such as ``title``, ``message``, ``to`` pass through."""
        if not identifiers:
            raise ValidationError("identifiers", "a push needs the person's identifiers")
        ids = transactional_identifiers(identifiers, None)
        return self._send(
            Kind.SEND_PUSH, fields, ids, transactional_message_id, message_data, op_id, created_at
        )

    def send_sms(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
        **fields: Any,
    ) -> Operation:
        """A transactional SMS to ``to`` (required): an E.164 number or Liquid that renders one;
        other ``fields`` (``from``, ``tracked``, ``language`` ...) pass through."""
        if not identifiers:
            raise ValidationError("identifiers", "an SMS needs the person's identifiers")
        check_sms_recipient(fields.get("to"))
        ids = transactional_identifiers(identifiers, None)
        return self._send(
            Kind.SEND_SMS, fields, ids, transactional_message_id, message_data, op_id, created_at
        )

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
        created_at: float | None = None,
    ) -> Operation:
        """A transactional WhatsApp message (WhatsApp Business, a template approved by Meta) to
        ``to``: a phone number in E.164 (``+15551234567``) or Liquid (``{{customer.phone}}``)."""
        check_sms_recipient(to)  # documented as SMS's: E.164, or Liquid that renders one
        options = {
            "to": to,
            "send_at": send_at,
            "language": language,
            "tracked": tracked,
            "send_to_unsubscribed": send_to_unsubscribed,
            "queue_draft": queue_draft,
            "disable_message_retention": disable_message_retention,
        }
        return self._template_send(
            Kind.SEND_WHATSAPP,
            identifiers,
            transactional_message_id,
            message_data,
            options,
            op_id,
            created_at,
        )

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
        created_at: float | None = None,
    ) -> Operation:
        """A transactional in-app message from its template, shown by Customer.io's SDKs on the
        person's devices."""
        options = {
            "send_at": send_at,
            "language": language,
            "queue_draft": queue_draft,
            "disable_message_retention": disable_message_retention,
        }
        return self._template_send(
            Kind.SEND_IN_APP,
            identifiers,
            transactional_message_id,
            message_data,
            options,
            op_id,
            created_at,
        )

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
        created_at: float | None = None,
    ) -> Operation:
        """A transactional inbox message from its template, delivered to the person's inbox in
        Customer.io's web SDK."""
        options = {
            "send_at": send_at,
            "language": language,
            "queue_draft": queue_draft,
            "disable_message_retention": disable_message_retention,
        }
        return self._template_send(
            Kind.SEND_INBOX_MESSAGE,
            identifiers,
            transactional_message_id,
            message_data,
            options,
            op_id,
            created_at,
        )

    def _template_send(
        self,
        kind: Kind,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None,
        options: dict[str, Any],
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        """A send whose content is a template kept in Customer.io (WhatsApp, in-app, inbox):
        the person and the template are required (``sendinapp``, ``sendinbox`` in
        track-api.json), and options left at None are not sent."""
        if not identifiers:
            raise ValidationError("identifiers", f"{kind.value} needs the person's identifiers")
        if transactional_message_id in (None, ""):
            raise ValidationError(
                "transactional_message_id", f"{kind.value} needs its template's id or trigger name"
            )
        payload = {name: value for name, value in options.items() if value is not None}
        check_send_options(payload)
        ids = transactional_identifiers(identifiers, None)
        return self._send(
            kind, payload, ids, transactional_message_id, message_data, op_id, created_at
        )

    def _send(
        self,
        kind: Kind,
        payload: dict[str, Any],
        ids: Identifiers,
        transactional_message_id: str | int | None,
        message_data: Mapping[str, Any] | None,
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        """What every send shares; ``payload`` is the builder's own dict (``**fields``)."""
        payload["identifiers"] = ids
        if transactional_message_id not in (None, ""):
            payload["transactional_message_id"] = transactional_message_id
        if message_data is not None:
            payload["message_data"] = message_data
        if payload.get("send_at") is not None:
            payload["send_at"] = unix_seconds(payload["send_at"], "send_at")
        # Only an email may carry its own content instead of a template (``sendemail``).
        check_transactional(payload, template_required=kind is not Kind.SEND_EMAIL)
        json_size(payload, "")  # refuse what cannot be serialised now, not in the worker
        return self._op(kind, ids, payload, op_id, created_at)

    def trigger_broadcast(
        self,
        broadcast_id: int | str,
        *,
        data: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        created_at: float | None = None,
        **audience: Any,
    ) -> Operation:
        """Trigger an API-triggered broadcast with at most one audience (customerio-api.md §5)."""
        number = broadcast_number(broadcast_id)
        chosen = [name for name in BROADCAST_AUDIENCES if audience.get(name) is not None]
        if len(chosen) > 1:
            raise ValidationError("audience", f"give at most one audience; got {', '.join(chosen)}")
        if audience.get("recipients") == {}:
            raise ValidationError("recipients", "empty recipients filter is not valid")
        payload: dict[str, Any] = {"broadcast_id": number, **audience}
        if data is not None:
            payload["data"] = checked_mapping(data, "data")
        json_size(payload, "")
        return self._op(Kind.TRIGGER_BROADCAST, {}, payload, op_id, created_at)

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

    def _op(
        self,
        kind: Kind,
        ids: Identifiers,
        payload: dict[str, Any],
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        return new_operation(
            new_op_id() if op_id is None else checked_op_id(op_id),
            kind,
            ids,
            payload,
            time.time() if created_at is None else created_at,
            self.env,
        )
