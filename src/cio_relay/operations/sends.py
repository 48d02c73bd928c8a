"""Builders of the App API operations: transactional sends (email, push, SMS, WhatsApp, in-app,
inbox) and API-triggered broadcasts (customerio-api.md §5).

Each builder checks what Customer.io documents for its request (``sendemail``, ``sendpush``,
``sendsms``, ``sendinapp``, ``sendinbox`` in track-api.json): recipients, attachments,
headers, the template or content a send needs, a broadcast's single audience. The sends whose
content is a template kept in Customer.io (WhatsApp, in-app, inbox) take typed options, checked
in ``send_options``. None of these carries the ``_env`` stamp, which is about people and events.

These are ``OperationFactory`` methods (this mixin). Transactional sends and broadcast triggers
are not idempotent: the dispatcher does not send one twice blindly (``Operation.idempotent``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cio_relay.errors import ValidationError
from cio_relay.operations.kinds import Kind
from cio_relay.operations.limits import check_attachments, check_recipients, json_size
from cio_relay.operations.model import Identifiers, Operation, OperationMaker
from cio_relay.operations.send_options import check_send_options
from cio_relay.operations.validation import (
    Timestamp,
    broadcast_number,
    check_sms_recipient,
    check_transactional,
    checked_mapping,
    recipients_text,
    transactional_identifiers,
    unix_seconds,
    wire_headers,
)

__all__ = ["BROADCAST_AUDIENCES", "SendBuilders"]

#: The audiences a broadcast trigger may name, at most one of them.
BROADCAST_AUDIENCES = ("recipients", "emails", "ids", "per_user_data", "data_file_url")


class SendBuilders(OperationMaker):
    """``OperationFactory``'s builders of transactional sends and broadcast triggers."""

    __slots__ = ()

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
