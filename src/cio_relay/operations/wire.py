"""How each kind of operation travels: its v1 request and its ``/api/v2/batch`` item.

One map per API version, keyed by kind (``V1_REQUESTS``, ``V2_ITEMS``): the dispatcher builds a
request or an item for every operation it sends, so a dict lookup picks the builder instead of
a chain of kind tests. tests/core/test_operations.py checks that every kind has a v1 request and
that exactly ``V2_KINDS`` have a v2 item.

Pure: what a request says is decided here, the sending is ``cio_relay.customerio``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

from cio_relay.operations.kinds import Api, Kind

__all__ = [
    "V1_REQUESTS",
    "V2_EVENT_DATA_KEY",
    "V2_ITEMS",
    "V2_ONLY_KINDS",
    "Request",
    "Wired",
    "path_identifier",
]

#: v2 person events carry their properties under this key (track-api.json ``person_event``).
V2_EVENT_DATA_KEY = "attributes"
#: Kinds v1 has no request for (objects, relationships on their own): their single request is
#: their v2 item on ``/api/v2/entity``.
V2_ONLY_KINDS = frozenset(
    {
        Kind.ADD_RELATIONSHIPS,
        Kind.DELETE_RELATIONSHIPS,
        Kind.IDENTIFY_OBJECT,
        Kind.DELETE_OBJECT,
        Kind.IDENTIFY_ANONYMOUS,
        Kind.ADD_OBJECT_RELATIONSHIPS,
        Kind.DELETE_OBJECT_RELATIONSHIPS,
    }
)
#: The attribute v1 carries relationships in, ``{"action", "relationships"}``; in v2 they are a
#: top-level array of the item (track-api.json ``v1_cio_relationships``, ``identify_person``).
RELATIONSHIPS = "cio_relationships"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to Customer.io, before any I/O."""

    api: Api
    method: Literal["GET", "PUT", "POST", "DELETE"]
    path: str
    body: dict[str, Any] | None = None


class Wired(Protocol):
    """What the wire reads of an ``Operation`` (the model imports this module, not the reverse)."""

    @property
    def op_id(self) -> str: ...

    @property
    def identifiers(self) -> dict[str, str]: ...

    @property
    def payload(self) -> dict[str, Any]: ...


def path_identifier(identifiers: Mapping[str, str]) -> str:
    """The ``{identifier}`` path segment: an id, an email, or ``cio_<cio_id>``; URL-quoted.

    A phone cannot name a person in a v1 path (the path takes it for an id): the v1 request of
    an operation about a phone is its v2 item on ``/api/v2/entity`` (``_v1_or_entity``)."""
    ((id_type, value),) = identifiers.items()
    if id_type == "phone":
        raise ValueError("a v1 path cannot name a person by phone; send the v2 item")
    return quote(f"cio_{value}" if id_type == "cio_id" else value, safe="")


# --- v1: one request per operation --------------------------------------------------------------


def _customer_path(op: Wired, suffix: str = "") -> str:
    return f"/api/v1/customers/{path_identifier(op.identifiers)}{suffix}"


def _device(payload: dict[str, Any], token_key: str) -> dict[str, Any]:
    """A device as both APIs describe it; only the token's key differs (v1 ``id``, v2 ``token``)."""
    device: dict[str, Any] = {token_key: payload["token"], "platform": payload["platform"]}
    if "last_used" in payload:
        device["last_used"] = payload["last_used"]
    if payload.get("attributes"):
        device["attributes"] = payload["attributes"]
    return device


def _v1_event(event_type: str | None) -> Callable[[Wired], Request]:
    def build(op: Wired) -> Request:
        payload = op.payload
        body: dict[str, Any] = {
            "name": payload["name"],
            "data": payload["data"],
            "id": op.op_id,
            "timestamp": payload["timestamp"],
        }
        if event_type is not None:
            body["type"] = event_type
        return Request(Api.TRACK, "POST", _customer_path(op, "/events"), body)

    return build


def _v1_anonymous_event(op: Wired) -> Request:
    """An event, page or screen view of someone not identified; ``anonymous_id`` is optional
    (track-api.json ``anonymousEventsRequest``: an invite to someone with no profile yet)."""
    payload = op.payload
    body = {
        "name": payload["name"],
        "data": payload["data"],
        "id": op.op_id,
        "timestamp": payload["timestamp"],
    }
    if "anonymous_id" in payload:
        body["anonymous_id"] = payload["anonymous_id"]
    if payload.get("type", "event") != "event":
        body["type"] = payload["type"]
    return Request(Api.TRACK, "POST", "/api/v1/events", body)


def _v1_post(suffix: str) -> Callable[[Wired], Request]:
    return lambda op: Request(Api.TRACK, "POST", _customer_path(op, suffix))


def _v1_send(channel: str) -> Callable[[Wired], Request]:
    return lambda op: Request(
        Api.TRANSACTIONAL, "POST", f"/v1/send/{channel}", _documented_send(op.payload)
    )


_RECIPIENT_FIELDS = ("to", "cc", "bcc")


def _documented_send(payload: dict[str, Any]) -> dict[str, Any]:
    """A send's body. The builders store ``to``/``cc``/``bcc`` as comma-separated text and
    ``headers`` as JSON text, as the documents send them; sends stored by earlier releases (a
    list of recipients, a dict of headers) are put in that shape here."""
    legacy = [key for key in _RECIPIENT_FIELDS if isinstance(payload.get(key), list)]
    if not legacy and not isinstance(payload.get("headers"), dict):
        return payload
    body = dict(payload)
    for key in legacy:
        body[key] = ",".join(body[key])
    if isinstance(body.get("headers"), dict):
        pairs = [{"name": name, "value": value} for name, value in body["headers"].items()]
        body["headers"] = json.dumps(pairs)
    return body


def _v1_broadcast(op: Wired) -> Request:
    body = {k: v for k, v in op.payload.items() if k != "broadcast_id"}
    return Request(
        Api.BROADCAST, "POST", f"/v1/campaigns/{op.payload['broadcast_id']}/triggers", body
    )


def _v1_identify(op: Wired) -> Request:
    return Request(Api.TRACK, "PUT", _customer_path(op), op.payload["attributes"])


V1_REQUESTS: dict[Kind, Callable[[Wired], Request]] = {
    Kind.IDENTIFY: _v1_identify,
    Kind.DELETE: lambda op: Request(Api.TRACK, "DELETE", _customer_path(op)),
    Kind.TRACK: _v1_event(None),
    Kind.PAGE: _v1_event("page"),
    Kind.SCREEN: _v1_event("screen"),
    Kind.TRACK_ANONYMOUS: _v1_anonymous_event,
    Kind.ADD_DEVICE: lambda op: Request(
        Api.TRACK, "PUT", _customer_path(op, "/devices"), {"device": _device(op.payload, "id")}
    ),
    Kind.DELETE_DEVICE: lambda op: Request(
        Api.TRACK,
        "DELETE",
        _customer_path(op, f"/devices/{quote(op.payload['token'], safe='')}"),
    ),
    Kind.SUPPRESS: _v1_post("/suppress"),
    Kind.UNSUPPRESS: _v1_post("/unsuppress"),
    Kind.MERGE: lambda op: Request(
        Api.TRACK,
        "POST",
        "/api/v1/merge_customers",
        {"primary": op.payload["primary"], "secondary": op.payload["secondary"]},
    ),
    Kind.SEND_EMAIL: _v1_send("email"),
    Kind.SEND_PUSH: _v1_send("push"),
    Kind.SEND_SMS: _v1_send("sms"),
    Kind.SEND_WHATSAPP: _v1_send("whatsapp"),
    Kind.SEND_IN_APP: _v1_send("in_app"),
    Kind.SEND_INBOX_MESSAGE: _v1_send("inbox_message"),
    Kind.TRIGGER_BROADCAST: _v1_broadcast,
}


# --- v2: one batch item per operation (keys in the order the items have always had) ------------


def _v2_event(action: str) -> Callable[[Wired], dict[str, Any]]:
    def build(op: Wired) -> dict[str, Any]:
        payload = op.payload
        item: dict[str, Any] = {
            "type": "person",
            "action": action,
            "identifiers": op.identifiers,
            "name": payload["name"],
            "id": op.op_id,
            "timestamp": payload["timestamp"],
        }
        if payload["data"]:
            item[V2_EVENT_DATA_KEY] = payload["data"]
        return item

    return build


def _v2_person(
    action: str, **fields: Callable[[dict[str, Any]], Any]
) -> Callable[[Wired], dict[str, Any]]:
    """A person item: ``type``, ``action``, ``identifiers``, then each of ``fields`` made from
    the payload."""

    def build(op: Wired) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "person", "action": action, "identifiers": op.identifiers}
        for key, value in fields.items():
            item[key] = value(op.payload)
        return item

    return build


def _v2_identify(op: Wired) -> dict[str, Any] | None:
    """An identify item; relationships given as v1's attribute travel as the item's own
    ``cio_relationships`` array. Removing them is another action (``delete_relationships``),
    which cannot also set attributes: such an identify travels on v1, which carries both."""
    attributes = op.payload["attributes"]
    item: dict[str, Any] = {"type": "person", "action": "identify", "identifiers": op.identifiers}
    if RELATIONSHIPS not in attributes:
        item["attributes"] = attributes
        return item
    relationships = attributes[RELATIONSHIPS]
    if relationships.get("action", "add_relationships") != "add_relationships":
        return None
    item["attributes"] = {k: v for k, v in attributes.items() if k != RELATIONSHIPS}
    item[RELATIONSHIPS] = relationships["relationships"]
    return item


V2_ITEMS: dict[Kind, Callable[[Wired], dict[str, Any] | None]] = {
    Kind.IDENTIFY: _v2_identify,
    Kind.DELETE: _v2_person("delete"),
    Kind.TRACK: _v2_event("event"),
    Kind.PAGE: _v2_event("page"),
    Kind.SCREEN: _v2_event("screen"),
    Kind.ADD_DEVICE: _v2_person("add_device", device=lambda payload: _device(payload, "token")),
    Kind.DELETE_DEVICE: _v2_person(
        "delete_device", device=lambda payload: {"token": payload["token"]}
    ),
    Kind.SUPPRESS: _v2_person("suppress"),
    Kind.UNSUPPRESS: _v2_person("unsuppress"),
    Kind.MERGE: lambda op: {
        "type": "person",
        "action": "merge",
        "primary": op.payload["primary"],
        "secondary": op.payload["secondary"],
    },
}


def _v2_relationships(action: str) -> Callable[[Wired], dict[str, Any]]:
    """A person's relationships to objects, added or removed (``person_add_relationships``)."""
    return lambda op: {
        "type": "person",
        "action": action,
        "identifiers": op.identifiers,
        RELATIONSHIPS: op.payload["relationships"],
    }


def _v2_object(action: str) -> Callable[[Wired], dict[str, Any]]:
    """An object item (track-api.json ``object_operations``): the object's identifiers, then its
    attributes and its relationships to people (or to anonymous ids) where the payload has them."""

    def build(op: Wired) -> dict[str, Any]:
        payload = op.payload
        item: dict[str, Any] = {"type": "object", "action": action}
        item["identifiers"] = payload["object"]
        if "attributes" in payload:
            item["attributes"] = payload["attributes"]
        if "relationships" in payload:
            item[RELATIONSHIPS] = payload["relationships"]
        return item

    return build


V2_ITEMS.update(
    {
        Kind.ADD_RELATIONSHIPS: _v2_relationships("add_relationships"),
        Kind.DELETE_RELATIONSHIPS: _v2_relationships("delete_relationships"),
        Kind.IDENTIFY_OBJECT: _v2_object("identify"),
        Kind.DELETE_OBJECT: _v2_object("delete"),
        Kind.IDENTIFY_ANONYMOUS: _v2_object("identify_anonymous"),
        Kind.ADD_OBJECT_RELATIONSHIPS: _v2_object("add_relationships"),
        Kind.DELETE_OBJECT_RELATIONSHIPS: _v2_object("delete_relationships"),
    }
)


def _entity(v2: Callable[[Wired], dict[str, Any] | None]) -> Callable[[Wired], Request]:
    """The single request of a kind only v2 documents: its item on ``/api/v2/entity``."""

    def build(op: Wired) -> Request:
        item = v2(op)
        if item is None:  # never: each of these kinds always has its item
            raise ValueError("this operation has no v2 item")
        return Request(Api.TRACK, "POST", "/api/v2/entity", item)

    return build


def _v1_segment(change: str) -> Callable[[Wired], Request]:
    """``POST /api/v1/segments/{segment_id}/{change}``, ``?id_type=`` when not the default id."""

    def build(op: Wired) -> Request:
        payload = op.payload
        path = f"/api/v1/segments/{payload['segment_id']}/{change}"
        if payload["id_type"] != "id":
            path += f"?id_type={payload['id_type']}"
        return Request(Api.TRACK, "POST", path, {"ids": payload["ids"]})

    return build


V1_REQUESTS.update(
    {
        **{kind: _entity(V2_ITEMS[kind]) for kind in V2_ONLY_KINDS},
        Kind.ADD_TO_SEGMENT: _v1_segment("add_customers"),
        Kind.REMOVE_FROM_SEGMENT: _v1_segment("remove_customers"),
        # The builders store the documented body itself (track-api.json ``metrics``,
        # ``pushMetrics``).
        Kind.TRACK_METRIC: lambda op: Request(Api.TRACK, "POST", "/api/v1/metrics", op.payload),
        Kind.TRACK_PUSH_METRIC: lambda op: Request(
            Api.TRACK, "POST", "/api/v1/push/events", op.payload
        ),
    }
)


def _v1_or_entity(
    v1: Callable[[Wired], Request], v2: Callable[[Wired], dict[str, Any] | None]
) -> Callable[[Wired], Request]:
    """``v1``, except for a person named by phone: a v1 path cannot name one (it takes the
    number for an id), so that request is the v2 item on ``/api/v2/entity``."""

    def build(op: Wired) -> Request:
        if "phone" not in op.identifiers:
            return v1(op)
        item = v2(op)
        if item is None:
            raise ValueError("this operation has no v2 item, and v1 cannot name a phone")
        return Request(Api.TRACK, "POST", "/api/v2/entity", item)

    return build


V1_REQUESTS.update(
    {
        kind: _v1_or_entity(V1_REQUESTS[kind], v2)
        for kind, v2 in V2_ITEMS.items()
        if kind not in V2_ONLY_KINDS
    }
)
