"""App API handlers: transactional sends and API-triggered broadcasts (customerio-api.md §5).

Refusals raise ``Problem``; the app renders App API errors as
``{"errors":[{"detail": ..., "status": "..."}]}``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ulid import ULID

from cio_relay.digits import whole_number

from . import people
from .context import Account
from .http import Problem, Reply, Request, json_reply, parse_object
from .limits import Invalid, check_identifier

__all__ = ["send", "trigger_broadcast", "trigger_errors", "trigger_status"]

RECIPIENTS = 15
ATTACHMENTS_BYTES = 2_000_000
CHANNELS = frozenset({"email", "push", "sms", "whatsapp", "in_app", "inbox_message"})
AUDIENCES = ("recipients", "emails", "ids", "per_user_data", "data_file_url")
SEND_IDENTIFIERS = ("id", "email", "cio_id")


def _bad(message: str, field: str = "") -> Problem:
    return Problem(400, message, field)


def _send_identifiers(value: Any) -> tuple[str, str]:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in SEND_IDENTIFIERS:
        raise _bad("identifiers must contain exactly one of id, email, cio_id", "identifiers")
    ((id_type, identifier),) = value.items()
    try:
        field = f"identifiers.{id_type}"
        return id_type, check_identifier(identifier, field, capped=id_type == "id")
    except Invalid as refused:
        raise _bad(refused.message, refused.field) from None


def _count_recipients(value: Any, field: str) -> int:
    """Recipients are one string, separated by commas (track-api.json,
    transactionalSharedEmailObject): a JSON list is refused, as any wrongly typed field."""
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        return len([part for part in value.split(",") if part.strip()])
    raise _bad(f"{field} must be a string of comma-separated addresses", field)


def _check_email(body: dict[str, Any]) -> None:
    if not body.get("to"):
        raise _bad("to must be present", "to")
    total = sum(_count_recipients(body.get(name), name) for name in ("to", "cc", "bcc"))
    if total > RECIPIENTS:
        raise _bad(
            f"cannot send to more than {RECIPIENTS} recipients across to, cc and bcc (was {total})",
            "to",
        )
    if body.get("transactional_message_id") in (None, "") and not all(
        body.get(name) for name in ("body", "subject", "from")
    ):
        raise _bad(
            "a message without transactional_message_id needs body, subject and from",
            "transactional_message_id",
        )
    _check_attachments(body.get("attachments"))


def _check_attachments(attachments: Any) -> None:
    if attachments is None:
        return
    if not isinstance(attachments, dict):
        raise _bad("attachments must be an object of filename to base64 content", "attachments")
    total = 0
    for filename, content in attachments.items():
        if "." not in filename.strip(".") or not isinstance(content, str):
            raise _bad(
                f"attachment {filename!r} needs a filename with an extension and base64 content",
                "attachments",
            )
        total += len(content)  # the encoded size, as sent: the stricter reading of "< 2 MB"
    if total > ATTACHMENTS_BYTES:
        raise _bad(
            f"attachments cannot be larger than {ATTACHMENTS_BYTES} bytes in total (was {total})",
            "attachments",
        )


# E.164: a plus and up to 15 digits; the document also allows Liquid ({{customer.phone}}).
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def _check_sms(body: dict[str, Any]) -> None:
    """``to`` is required for SMS (track-api.json, sendsms): E.164 or Liquid."""
    to = body.get("to")
    if not isinstance(to, str) or not to:
        raise _bad("to must be present: a phone number in E.164 format", "to")
    if not (_E164.fullmatch(to) or "{{" in to):
        raise _bad("to must be a phone number in E.164 format, like +15551234567", "to")


def send(account: Account, request: Request, channel: str) -> Reply:
    body = parse_object(request)
    id_type, value = _send_identifiers(body.get("identifiers"))
    if channel == "email":
        _check_email(body)
    elif body.get("transactional_message_id") in (None, ""):
        raise _bad("transactional_message_id must be present", "transactional_message_id")
    if channel == "sms":
        _check_sms(body)
    elif channel != "email" and body.get("to") is not None and not isinstance(body["to"], str):
        raise _bad("to must be a string", "to")
    if body.get("message_data") is not None and not isinstance(body["message_data"], dict):
        raise _bad("message_data must be an object", "message_data")
    # An unknown person is created (customerio-api.md §5, the Ruby README).
    person = people.person_for_write(account.state, id_type, value)
    if person is None:
        raise Problem(404, f"no person with cio_id {value!r}", "identifiers.cio_id")
    queued_at = int(time.time())
    delivery = {
        "delivery_id": str(ULID()),
        "channel": channel,
        "queued_at": queued_at,
        "cio_id": person.cio_id,
        "customer_id": person.id,
        "identifiers": {"id": person.id, "email": person.email, "cio_id": person.cio_id},
        "transactional_message_id": body.get("transactional_message_id"),
        "to": body.get("to"),
        "subject": body.get("subject"),
        "devices": list(person.devices.values()) if channel == "push" else [],
        "request": _without_attachment_content(body),
    }
    account.state.deliveries.append(delivery)
    account.report_delivery(delivery)
    return json_reply({"delivery_id": delivery["delivery_id"], "queued_at": queued_at})


def _without_attachment_content(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body.get("attachments"), dict):
        return body
    sizes = {name: len(content) for name, content in body["attachments"].items()}
    return {**body, "attachments": sizes}


def _broadcast_id(raw: str) -> int:
    number = whole_number(raw)
    if number is None:
        raise Problem(404, f"broadcast {raw[:40]!r} not found")
    return number


def trigger_broadcast(account: Account, request: Request, raw_id: str) -> Reply:
    broadcast_id = _broadcast_id(raw_id)
    body = parse_object(request)
    chosen = [name for name in AUDIENCES if body.get(name) is not None]
    if len(chosen) > 1:
        raise Problem(422, f"give at most one audience, not {', '.join(chosen)}", chosen[1])
    if "recipients" in chosen and not body["recipients"]:
        raise Problem(422, "empty recipients filter is not valid", "recipients")
    if body.get("data") is not None and not isinstance(body["data"], dict):
        raise Problem(422, "data must be an object", "data")
    audience = _audience(account, body, chosen[0] if chosen else None)
    trigger_id = account.state.next_trigger_id()
    account.state.triggers[trigger_id] = {
        "id": trigger_id,
        "broadcast_id": broadcast_id,
        "audience": chosen[0] if chosen else "ui",
        "people": audience,
        "data": body.get("data") or {},
        "request": body,
        "created_at": int(time.time()),
        "processed_at": int(time.time()),  # the emulator processes a trigger at once
        "errors": [],
    }
    return json_reply({"id": trigger_id})


def _audience(account: Account, body: dict[str, Any], kind: str | None) -> list[str]:
    """The cio_ids targeted by an ``ids``/``emails``/``per_user_data`` audience.

    Only existing people can be targeted (customerio-api.md §5). The real service may accept
    the trigger and list the missing people under its errors later (UNCONFIRMED); refusing it
    with 422 at once is the conservative choice: nobody is silently left out.
    """
    if kind not in ("ids", "emails", "per_user_data"):
        return []
    entries = body[kind]
    if not isinstance(entries, list):
        raise Problem(422, f"{kind} must be a list", kind)
    wanted: list[tuple[str, str]] = []
    for entry in entries:
        if kind == "ids":
            wanted.append(("id", str(entry)))
        elif kind == "emails":
            wanted.append(("email", str(entry)))
        elif isinstance(entry, dict) and ("id" in entry or "email" in entry):
            wanted.append(("id", str(entry["id"])) if "id" in entry else ("email", entry["email"]))
        else:
            raise Problem(422, "per_user_data entries need an id or an email", kind)
    found, missing = [], []
    for id_type, value in wanted:
        person = account.state.find(id_type, value)
        if person is not None:
            found.append(person.cio_id)
        elif not body.get(f"{id_type}_ignore_missing"):
            missing.append(value)
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise Problem(422, f"{len(missing)} people in {kind} do not exist: {shown}", kind)
    return found


def _trigger(account: Account, raw_id: str, raw_trigger: str) -> dict[str, Any]:
    broadcast_id = _broadcast_id(raw_id)
    trigger_id = whole_number(raw_trigger)
    trigger = account.state.triggers.get(trigger_id) if trigger_id is not None else None
    if trigger is None or trigger["broadcast_id"] != broadcast_id:
        raise Problem(404, f"trigger {raw_trigger[:40]!r} of broadcast {broadcast_id} not found")
    return trigger


def trigger_status(account: Account, request: Request, raw_id: str, raw_trigger: str) -> Reply:
    """``{"trigger": {id, broadcast_id, created_at, processed_at}}`` (track-api.json,
    broadcastTriggerObject)."""
    trigger = _trigger(account, raw_id, raw_trigger)
    keys = ("id", "broadcast_id", "created_at", "processed_at")
    return json_reply({"trigger": {key: trigger[key] for key in keys}})


def trigger_errors(account: Account, request: Request, raw_id: str, raw_trigger: str) -> Reply:
    """``{"errors": [...], "next": ...}``, a page of the trigger's per-person errors, as the
    documented examples show them (docs.customer.io, API-triggered broadcast errors)."""
    return json_reply({"errors": _trigger(account, raw_id, raw_trigger)["errors"], "next": 0})
