"""The App API reads, sans I/O: the path and query of each, checked before anything is sent.

These are lookups a caller makes and waits for (a user sync, a check on a broadcast it
triggered), so ``AppClient`` and ``AsyncAppClient`` make them directly; they never go through the
outbox, which holds what must be *told* to Customer.io. All are ``GET`` and share the App API's
general limit of 10 requests a second (a 429 is a ``RetryableError`` with its ``retry_after``).

Paths and parameters as docs.customer.io documents them (App API reference, "Customers" and
"API-triggered Broadcasts"):

- ``GET /v1/campaigns/{broadcast_id}/triggers/{trigger_id}``: a trigger's status,
  ``{"id", "broadcast_id", "created_at", "processed_at"}`` (track-api.json
  ``broadcastTriggerObject``);
- ``GET /v1/campaigns/{broadcast_id}/triggers/{trigger_id}/errors?start=&limit=``: the errors a
  trigger produced, paged by the ``next`` token of each answer;
- ``GET /v1/customers?email=``: the people with an email address, ``{"results": [{"id",
  "email", "cio_id"}]}``; the address is percent-encoded, since an unencoded ``+`` "can return
  empty results without an error";
- ``GET /v1/customers/{customer_id}/attributes?id_type=``: a person's attributes, devices and
  subscription state (track-api.json ``customerAttributesObject``); ``id_type`` is one of id,
  email, phone, cio_id, and 404 means there is no such person.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from cio_relay.digits import DEFAULT_MAX_DIGITS, whole_number
from cio_relay.errors import ValidationError

__all__ = [
    "LOOKUP_ID_TYPES",
    "broadcast_trigger_errors_path",
    "broadcast_trigger_path",
    "customer_attributes_path",
    "customers_by_email_path",
]

#: The identifiers a person is looked up by (the ``id_type`` query parameter). Email and phone
#: work only where the workspace has them enabled as identifiers (else Customer.io answers 400).
LOOKUP_ID_TYPES = ("id", "email", "phone", "cio_id")


def broadcast_trigger_path(broadcast_id: int | str, trigger_id: int | str) -> str:
    """The status of one trigger of an API-triggered broadcast."""
    broadcast = _whole(broadcast_id, "broadcast_id")
    trigger = _whole(trigger_id, "trigger_id")
    return f"/v1/campaigns/{broadcast}/triggers/{trigger}"


def broadcast_trigger_errors_path(
    broadcast_id: int | str,
    trigger_id: int | str,
    *,
    start: str | None = None,
    limit: int | None = None,
) -> str:
    """The errors of one trigger, from the page ``start`` names (an answer's ``next``)."""
    query: dict[str, str] = {}
    if start is not None:
        if not isinstance(start, str) or not start:
            raise ValidationError("start", "must be the 'next' token of an earlier answer")
        query["start"] = start
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError("limit", "must be a whole number of at least 1")
        query["limit"] = str(limit)
    return _with_query(f"{broadcast_trigger_path(broadcast_id, trigger_id)}/errors", query)


def customers_by_email_path(email: str) -> str:
    """The people whose email address is ``email``."""
    if not isinstance(email, str) or "@" not in email:
        raise ValidationError("email", "must be an email address")
    return _with_query("/v1/customers", {"email": email})


def customer_attributes_path(person: str | Mapping[str, str]) -> str:
    """A person's attributes; ``person`` is an id, or ``{"email" | "phone" | "cio_id" | "id":
    value}``."""
    id_type, value = _lookup_identifier(person)
    segment = quote(value, safe="")
    return _with_query(f"/v1/customers/{segment}/attributes", {"id_type": id_type})


def _lookup_identifier(person: str | Mapping[str, str]) -> tuple[str, str]:
    if isinstance(person, str):
        id_type, value = "id", person
    elif isinstance(person, Mapping) and len(person) == 1:
        ((id_type, value),) = person.items()
    else:
        raise ValidationError("person", f"give exactly one of {', '.join(LOOKUP_ID_TYPES)}")
    if id_type not in LOOKUP_ID_TYPES:
        raise ValidationError("person", f"give exactly one of {', '.join(LOOKUP_ID_TYPES)}")
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"person.{id_type}", "must be a non-empty string")
    return id_type, value


_MAX_ID = 10**DEFAULT_MAX_DIGITS


def _whole(value: Any, field_name: str) -> int:
    number = whole_number(value) if isinstance(value, str) else None
    # Bounded by value: str() of an int past 4,300 digits raises.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_ID:
        number = value
    if number is None:
        raise ValidationError(field_name, "must be a whole number (an int or ASCII digits)")
    return number


def _with_query(path: str, query: Mapping[str, str]) -> str:
    # quote, not quote_plus: a '+' in an address must travel as %2B, never as a space.
    return f"{path}?{urlencode(query, quote_via=quote, safe='')}" if query else path
