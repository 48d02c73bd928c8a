"""Track API v1 handlers (track-api.json; customerio-api.md §2). Success is ``200 {}`` (a form
submission: 204); refusals raise ``Invalid`` / ``Problem`` and are rendered by the app as
``400 {"meta":{"error": ..., "errors": [...]}}``, the two v1 shapes the document gives."""

from __future__ import annotations

import time
from typing import Any

from . import objects, people
from .context import Account
from .http import OK, Reply, Request, json_reply, parse_object, query_params
from .limits import Invalid, check_event, check_identifier
from .state import classify_identifier

__all__ = [
    "add_device",
    "anonymous_event",
    "delete",
    "delete_device",
    "identify",
    "merge_customers",
    "metrics",
    "push_event",
    "region",
    "segment_membership",
    "submit_form",
    "suppress",
    "track",
    "unsubscribe",
    "unsuppress",
]

SEGMENT_IDS_PER_CALL = 1000
# Tuples: a list or an object in their place is refused, not a TypeError (limits.EVENT_TYPES).
# The documented metrics (track-api.json, metrics: the union of its variants).
_METRICS = (
    "bounced",
    "clicked",
    "converted",
    "deferred",
    "delivered",
    "dropped",
    "opened",
    "spammed",
)
_PUSH_EVENTS = ("opened", "converted", "delivered")
_RELATIONSHIP_ACTIONS = ("add_relationships", "delete_relationships")


def _path_person(identifier: str) -> tuple[str, str]:
    """A path names a person by id, email or ``cio_<cio_id>`` (a phone reads as an id); only an
    id is held to the documented 150 bytes."""
    id_type, value = classify_identifier(identifier)
    if id_type != "cio_id":  # a cio_id is looked up as it is: an unknown one is dropped
        check_identifier(value, id_type, capped=id_type == "id")
    return id_type, value


def identify(account: Account, request: Request, identifier: str) -> Reply:
    attributes = parse_object(request)
    id_type, value = _path_person(identifier)
    relationships = attributes.get("cio_relationships")
    if relationships is None:  # the common request
        people.apply_identify(account.state, id_type, value, attributes)
        return OK
    # v1's cio_relationships is {action, relationships} (track-api.json, v1_cio_relationships):
    # it changes relationships, it is not stored as an attribute.
    if not isinstance(relationships, dict):
        raise Invalid(
            "cio_relationships must be an object of action and relationships",
            "cio_relationships",
            "invalid_type",
        )
    action = relationships.get("action", "add_relationships")
    if action not in _RELATIONSHIP_ACTIONS:
        raise Invalid(
            "cio_relationships.action must be add_relationships or delete_relationships",
            "cio_relationships.action",
        )
    listed = relationships.get("relationships")
    field = "cio_relationships.relationships"
    links = [] if listed is None else objects.parse_object_links(listed, field)
    others = {name: value for name, value in attributes.items() if name != "cio_relationships"}
    person = people.apply_identify(account.state, id_type, value, others)
    objects.link_person(account.state, person, links, add=action == "add_relationships")
    return OK


def delete(account: Account, request: Request, identifier: str) -> Reply:
    people.delete_person(account.state, *_path_person(identifier))
    return OK


def track(account: Account, request: Request, identifier: str) -> Reply:
    body = parse_object(request)
    id_type, value = _path_person(identifier)
    event = check_event(body)  # before the person is created: a refused event changes nothing
    person = people.person_for_write(account.state, id_type, value)
    if person is not None:  # None: an unknown cio_id, dropped
        people.store_event(account.state, person, None, event)
    return OK


def anonymous_event(account: Account, request: Request) -> Reply:
    """``anonymous_id`` is optional (track-api.json, anonymousEventsRequest): an event without
    one is an invite event or a page/screen view of nobody in particular."""
    body = parse_object(request)
    anonymous_id = body.get("anonymous_id")
    if anonymous_id == "":  # an empty anonymous_id names nobody, like none at all
        anonymous_id = None
    elif anonymous_id is not None:
        anonymous_id = check_identifier(anonymous_id, "anonymous_id", capped=False)
    people.store_event(account.state, None, anonymous_id, check_event(body))
    return OK


def add_device(account: Account, request: Request, identifier: str) -> Reply:
    body = parse_object(request)
    people.add_device(account.state, *_path_person(identifier), body.get("device"))
    return OK


def delete_device(account: Account, request: Request, identifier: str, token: str) -> Reply:
    if not token:
        raise Invalid("device id must be present", "device_id", "required")
    people.delete_device(account.state, *_path_person(identifier), token)
    return OK


def suppress(account: Account, request: Request, identifier: str) -> Reply:
    people.set_suppressed(account.state, *_path_person(identifier), True)
    return OK


def unsuppress(account: Account, request: Request, identifier: str) -> Reply:
    people.set_suppressed(account.state, *_path_person(identifier), False)
    return OK


def merge_customers(account: Account, request: Request) -> Reply:
    body = parse_object(request)
    people.merge_people(account.state, body.get("primary"), body.get("secondary"), strict=True)
    return OK


def segment_membership(account: Account, request: Request, segment_id: str, action: str) -> Reply:
    body = parse_object(request)
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise Invalid("ids must be a non-empty list", "ids", "required")
    if len(ids) > SEGMENT_IDS_PER_CALL:
        raise Invalid(
            f"cannot change more than {SEGMENT_IDS_PER_CALL} ids in one request (was {len(ids)})",
            "ids",
            "too_many",
        )
    id_type = query_params(request).get("id_type", "id")
    if id_type not in ("id", "email", "cio_id"):
        raise Invalid("id_type must be id, email or cio_id", "id_type")
    members = account.state.segments.setdefault(segment_id, set())
    for raw in ids:
        if raw == "":  # names nobody, like an id no one has: skipped
            continue
        person = account.state.find(id_type, check_identifier(raw, "ids", capped=id_type == "id"))
        if person is None:
            continue
        if action == "add_customers":
            members.add(person.cio_id)
            person.segments.add(segment_id)
        else:
            members.discard(person.cio_id)
            person.segments.discard(segment_id)
    return OK


def metrics(account: Account, request: Request) -> Reply:
    body = parse_object(request)
    if not isinstance(body.get("delivery_id"), str) or not body["delivery_id"]:
        raise Invalid("delivery_id must be present", "delivery_id", "required")
    if body.get("metric") not in _METRICS:
        raise Invalid(f"metric must be one of {', '.join(_METRICS)}", "metric")
    account.state.metrics.append({"source": "v1/metrics", "received_at": time.time(), **body})
    return OK


def push_event(account: Account, request: Request) -> Reply:
    """The legacy push metric. The document requires none of its fields; those given must have
    their documented types."""
    body = parse_object(request)
    for name in ("delivery_id", "device_id"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise Invalid(f"{name} must be a string", name, "invalid_type")
    if body.get("event") is not None and body["event"] not in _PUSH_EVENTS:
        raise Invalid("event must be one of converted, delivered, opened", "event")
    account.state.metrics.append({"source": "v1/push/events", "received_at": time.time(), **body})
    return OK


def region(account: Account, request: Request) -> Reply:
    """``GET /api/v1/accounts/region``: ``{url, region, environment_id}`` (track-api.json,
    getRegion; ``environment_id`` is the workspace's number). It answers from either regional
    host; the app does not judge its region (the document: "it returns your region in either
    case")."""
    region_name = account.config.region
    url = "https://track.customer.io" if region_name == "us" else "https://track-eu.customer.io"
    body: dict[str, Any] = {
        "url": url,
        "region": region_name,
        "environment_id": account.config.environment_id,
    }
    return json_reply(body)


def unsubscribe(account: Account, request: Request, delivery_id: str) -> Reply:
    """``POST /unsubscribe/{delivery_id}`` (no credentials): ``unsubscribe: true`` sets the
    person's ``unsubscribed`` attribute, attributed to the delivery."""
    body = parse_object(request)
    flag = body.get("unsubscribe")
    if flag is not None and not isinstance(flag, bool):
        raise Invalid("unsubscribe must be a boolean", "unsubscribe", "invalid_type")
    state = account.state
    state.metrics.append(
        {
            "source": "unsubscribe",
            "delivery_id": delivery_id,
            "unsubscribe": flag,
            "received_at": time.time(),
        }
    )
    if flag:
        delivery = next((d for d in state.deliveries if d["delivery_id"] == delivery_id), None)
        person = None if delivery is None else state.people.get(delivery["cio_id"])
        if person is not None:
            person.attributes["unsubscribed"] = True
            person.updated_at = time.time()
    return OK


_FORM_IDENTIFIERS = ("email", "id")
# Customer.io ignores these keys of a form's data (track-api.json, submitForm).
_FORM_RESERVED = ("form_id", "form_name", "form_type", "form_url", "form_url_param")
NO_CONTENT = Reply(204, b"")


def submit_form(account: Account, request: Request, form_id: str) -> Reply:
    """``POST /api/v1/forms/{form_id}/submit``: ``data`` names the person by one of email or
    id; its other fields, strings, become attributes. 204, no body."""
    data = parse_object(request).get("data")
    if not isinstance(data, dict):
        raise Invalid("data must be an object of form fields", "data", "required")
    named = [name for name in _FORM_IDENTIFIERS if name in data]
    if len(named) != 1:
        raise Invalid("data must contain one, and only one, of email or id", "data", "required")
    (id_type,) = named
    fields = {}
    for name, value in data.items():
        if name == id_type or name in _FORM_RESERVED:
            continue
        if not isinstance(value, str):
            raise Invalid("form values must be formatted as strings", f"data.{name[:40]}")
        fields[name] = value
    account.state.forms.append({"form_id": form_id, "data": data, "received_at": time.time()})
    identifier = data[id_type]
    if identifier is not None and identifier != "":
        value = check_identifier(identifier, f"data.{id_type}", capped=id_type == "id")
        people.apply_identify(account.state, id_type, value, fields)
    return NO_CONTENT
