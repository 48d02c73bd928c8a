"""Track API v2: ``POST /api/v2/entity`` (one operation) and ``POST /api/v2/batch``.

A batch answers 200 ``{}`` when every item was applied and 207
``{"errors":[{"batch_index", "reason", "field", "message"}]}`` listing the refused items otherwise
(customerio-api.md §3); the other items are applied. Whole-request problems (not JSON, no
``batch`` list, over 500 KB) answer 400.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from . import objects, people
from .context import Account
from .http import OK, Reply, Request, json_reply, parse_object
from .limits import (
    BATCH_BYTES,
    NESTED_TOO_DEEPLY,
    V2_ITEM_BYTES,
    Invalid,
    check_event,
    check_identifier,
)
from .state import EmulatorState

__all__ = ["apply_item", "batch", "entity"]

_EVENT_ACTIONS = ("event", "page", "screen")
# v2 event properties: ``attributes`` (the spec's style) or ``data`` (a Ruby README); which is
# canonical is UNCONFIRMED, so both are accepted.
_EVENT_DATA_KEYS = ("attributes", "data")
_DELIVERY_EVENTS = ("opened", "converted", "delivered")  # tuples: see limits.EVENT_TYPES


def entity(account: Account, request: Request) -> Reply:
    if len(request.body) > V2_ITEM_BYTES:
        raise Invalid(
            f"request body cannot be larger than {V2_ITEM_BYTES} bytes (was {len(request.body)})",
            "body",
            "too_large",
        )
    apply_item(account.state, parse_object(request))
    return OK


def batch(account: Account, request: Request) -> Reply:
    size = len(request.body)
    if size > BATCH_BYTES:
        raise Invalid(
            f"batch request body cannot be larger than {BATCH_BYTES} bytes (was {size})",
            "batch",
            "too_large",
        )
    items = parse_object(request).get("batch")
    if not isinstance(items, list) or not items:
        raise Invalid("batch must be a non-empty list of operations", "batch", "required")
    state = account.state
    check_sizes = size > V2_ITEM_BYTES  # a smaller body cannot hold an item over the limit
    received_at = time.time()  # one arrival for the whole request
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise Invalid("operation must be an object", "", "invalid_type")
            if check_sizes:
                _check_item_size(item)
            apply_item(state, item, received_at)
        except Invalid as refused:
            errors.append(_item_error(index, refused))
        except orjson.JSONEncodeError:  # deeper than any JSON encoder will write back
            errors.append(_item_error(index, Invalid(NESTED_TOO_DEEPLY, "", "invalid")))
    state.stats.batch_items_accepted += len(items) - len(errors)
    state.stats.batch_items_refused += len(errors)
    return json_reply({"errors": errors}, 207) if errors else OK


def _item_error(index: int, refused: Invalid) -> dict[str, Any]:
    return {
        "batch_index": index,
        "reason": refused.reason,
        "field": refused.field,
        "message": refused.message,
    }


def _check_item_size(item: dict[str, Any]) -> None:
    size = len(orjson.dumps(item))
    if size > V2_ITEM_BYTES:
        raise Invalid(
            f"operation cannot be larger than {V2_ITEM_BYTES} bytes (was {size})", "", "too_large"
        )


def apply_item(
    state: EmulatorState, item: dict[str, Any], received_at: float | None = None
) -> None:
    """Apply one v2 operation. ``received_at`` is the request's arrival (now when not given):
    a batch reads the clock once for all its items."""
    kind = item.get("type")
    if kind == "person":
        _person_item(state, item, received_at)
    elif kind == "object":
        objects.apply_object_item(state, item)
    elif kind == "delivery":
        _delivery_item(state, item)
    else:
        raise Invalid("type must be one of person, object, delivery", "type")


_IDENTIFIER_FIELDS = {name: f"identifiers.{name}" for name in people.PERSON_IDENTIFIERS}


def person_identifiers(value: Any) -> tuple[str, str]:
    """v2 person ``identifiers``: exactly one of id, email, phone, cio_id (track-api.json)."""
    if type(value) is dict and len(value) == 1:  # every item's path: field names made once
        ((id_type, identifier),) = value.items()
        field = _IDENTIFIER_FIELDS.get(id_type)
        if field is not None:
            return id_type, check_identifier(identifier, field, capped=id_type == "id")
    return people.one_identifier(value, "identifiers")


def _person_item(state: EmulatorState, item: dict[str, Any], received_at: float | None) -> None:
    action = item.get("action")
    if action == "merge":
        people.merge_people(state, item.get("primary"), item.get("secondary"), strict=False)
        return
    if action not in _PERSON_ACTIONS:
        raise Invalid(f"action must be one of {', '.join(_PERSON_ACTIONS)}", "action")
    id_type, value = person_identifiers(item.get("identifiers"))
    if action in _EVENT_ACTIONS:  # the common item first
        event = check_event(item, _EVENT_DATA_KEYS, action)
        person = people.person_for_write(state, id_type, value)
        if person is not None:
            state.add_event(person.cio_id, None, *event, received_at)
    elif action == "identify":
        attributes = item.get("attributes")
        relationships = item.get("cio_relationships")
        links = [] if relationships is None else objects.parse_object_links(relationships)
        person = people.apply_identify(
            state, id_type, value, {} if attributes is None else attributes
        )
        if links:
            objects.link_person(state, person, links, add=True)
    elif action == "add_device":
        people.add_device(state, id_type, value, item.get("device"))
    elif action == "delete_device":
        device = item.get("device")
        token = device.get("token", device.get("id")) if isinstance(device, dict) else None
        if not isinstance(token, str) or not token:
            raise Invalid("device token must be present", "device.token", "required")
        people.delete_device(state, id_type, value, token)
    elif action in ("add_relationships", "delete_relationships"):
        relationships = item.get("cio_relationships")
        if relationships is None:
            raise Invalid("cio_relationships must be present", "cio_relationships", "required")
        links = objects.parse_object_links(relationships)
        add = action == "add_relationships"
        person = (
            people.person_for_write(state, id_type, value) if add else state.find(id_type, value)
        )
        objects.link_person(state, person, links, add=add)
    else:
        _SIMPLE_ACTIONS[action](state, id_type, value)


def _suppress(state: EmulatorState, id_type: str, value: str) -> None:
    people.set_suppressed(state, id_type, value, True)


def _unsuppress(state: EmulatorState, id_type: str, value: str) -> None:
    people.set_suppressed(state, id_type, value, False)


_SIMPLE_ACTIONS: dict[str, Callable[[EmulatorState, str, str], None]] = {
    "delete": people.delete_person,
    "suppress": _suppress,
    "unsuppress": _unsuppress,
}
_PERSON_ACTIONS = (
    "identify",
    "delete",
    "event",
    "screen",
    "page",
    "add_relationships",
    "delete_relationships",
    "add_device",
    "delete_device",
    "merge",
    "suppress",
    "unsuppress",
)


def _delivery_item(state: EmulatorState, item: dict[str, Any]) -> None:
    """A delivery metric: ``identifiers.id`` is the delivery, ``attributes.device_token``
    is required (track-api.json, delivery_operations)."""
    if item.get("action") != "event":
        raise Invalid("action must be event", "action")
    identifiers = item.get("identifiers")
    delivery_id = identifiers.get("id") if isinstance(identifiers, dict) else None
    if not isinstance(delivery_id, str) or not delivery_id:
        raise Invalid("identifiers must contain the delivery id", "identifiers.id", "required")
    if item.get("name") not in _DELIVERY_EVENTS:
        raise Invalid("name must be one of converted, delivered, opened", "name")
    attributes = item.get("attributes")
    if not isinstance(attributes, dict):
        raise Invalid("attributes must be an object", "attributes", "required")
    token = attributes.get("device_token")
    if not isinstance(token, str):
        raise Invalid(
            "attributes.device_token must be present", "attributes.device_token", "required"
        )
    state.metrics.append(
        {
            "source": "v2/delivery",
            "delivery_id": delivery_id,
            "metric": item["name"],
            "attributes": attributes,
            "received_at": time.time(),
        }
    )
