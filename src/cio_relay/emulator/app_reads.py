"""App API reads a sync needs: people by email, and a person's attributes.

The App API's own document was not in the published copy; the response objects are
track-api.json's components (``customer_identifiers``, ``customerAttributesObject``) and the
App API reference: ``GET /v1/customers?email=`` answers ``{"results": [identifiers]}``,
``GET /v1/customers/{customer_id}/attributes?id_type=`` answers ``{"customer": {...}}`` with
every attribute as a string.
"""

from __future__ import annotations

from typing import Any

import orjson

from .context import Account
from .http import Problem, Reply, Request, json_reply, query_params
from .state import Person

__all__ = ["customer_attributes", "customers_by_email"]

_ID_TYPES = ("id", "email", "cio_id")


def _identifiers(person: Person) -> dict[str, Any]:
    return {"email": person.email, "id": person.id, "cio_id": person.cio_id}


def customers_by_email(account: Account, request: Request) -> Reply:
    email = query_params(request).get("email")
    if not email:
        raise Problem(400, "email must be given", "email")
    person = account.state.find("email", email)
    return json_reply({"results": [] if person is None else [_identifiers(person)]})


def _as_string(value: Any) -> str:
    """Customer.io stores attributes as strings (customerAttributesObject)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def customer_attributes(account: Account, request: Request, customer_id: str) -> Reply:
    id_type = query_params(request).get("id_type", "id")
    if id_type not in _ID_TYPES:
        raise Problem(400, "id_type must be id, email or cio_id", "id_type")
    value = customer_id
    if id_type == "cio_id" and value.startswith("cio_"):  # documented with the cio_ prefix
        value = value[4:]
    person = account.state.find(id_type, value)
    if person is None:
        raise Problem(404, f"no person with {id_type} {customer_id[:80]!r}", "customer_id")
    attributes = {
        name: _as_string(attribute)
        for name, attribute in person.attributes.items()
        if attribute is not None
    }
    attributes.update((k, v) for k, v in _identifiers(person).items() if v is not None)
    stamp = int(person.created_at)
    customer = {
        "id": person.id,
        "identifiers": _identifiers(person),
        "attributes": attributes,
        "timestamps": {name: stamp for name in attributes},
        "unsubscribed": _as_string(person.attributes.get("unsubscribed")).lower() in ("true", "1"),
        "devices": list(person.devices.values()),
    }
    return json_reply({"customer": customer})
