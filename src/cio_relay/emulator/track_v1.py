"""Track API v1 handlers (customerio-api.md §2). Success is ``200 {}``; refusals raise
``Invalid`` / ``Problem`` and are rendered as ``400 {"meta":{"error": ...}}`` by the app."""

from __future__ import annotations

import time
from typing import Any

from . import people
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
    "suppress",
    "track",
    "unsuppress",
]

SEGMENT_IDS_PER_CALL = 1000
# Tuples: a list or an object in their place is refused, not a TypeError (limits.EVENT_TYPES).
_METRICS = (
    "bounced",
    "clicked",
    "converted",
    "delivered",
    "opened",
    "sent",
    "spammed",
    "unsubscribed",
)
_PUSH_EVENTS = ("opened", "converted", "delivered")


def _path_person(identifier: str) -> tuple[str, str]:
    id_type, value = classify_identifier(identifier)
    check_identifier(value, "cio_id" if id_type == "cio_id" else "id")
    return id_type, value


def identify(account: Account, request: Request, identifier: str) -> Reply:
    attributes = parse_object(request)
    id_type, value = _path_person(identifier)
    people.apply_identify(account.state, id_type, value, attributes)
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
    body = parse_object(request)
    anonymous_id = body.get("anonymous_id")
    if anonymous_id is not None:
        anonymous_id = check_identifier(anonymous_id, "anonymous_id")
    elif not isinstance(body.get("data"), dict) or not body["data"].get("recipient"):
        # Without anonymous_id the only documented form is the invite event (data.recipient).
        raise Invalid("anonymous_id must be present (or data.recipient for an invite event)")
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
    people.merge_people(account.state, body.get("primary"), body.get("secondary"))
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
        person = account.state.find(id_type, check_identifier(raw, "ids"))
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
    body = parse_object(request)
    if not isinstance(body.get("delivery_id"), str) or not body["delivery_id"]:
        raise Invalid("delivery_id must be present", "delivery_id", "required")
    if body.get("event") not in _PUSH_EVENTS:
        raise Invalid("event must be one of converted, delivered, opened", "event")
    account.state.metrics.append({"source": "v1/push/events", "received_at": time.time(), **body})
    return OK


def region(account: Account, request: Request) -> Reply:
    """``GET /api/v1/accounts/region``. Its exact keys are UNCONFIRMED; these name the region,
    the Track URL and an environment id, as SPEC-EX describes."""
    region_name = account.config.region
    url = "https://track.customer.io" if region_name == "us" else "https://track-eu.customer.io"
    body: dict[str, Any] = {
        "region": region_name,
        "url": url,
        "environment_id": account.config.site_id,
    }
    return json_reply(body)
