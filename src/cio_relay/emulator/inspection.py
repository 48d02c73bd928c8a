"""``/_emulator/``: look inside the emulator and steer it. No authentication: a test tool that
binds 127.0.0.1.

- ``GET people?limit&offset``, ``GET people/{identifier}`` (id, email or ``cio_<id>``; with its
  events), ``GET events?person&name&type&limit&offset``, ``GET deliveries?channel&limit&offset``,
  ``GET broadcasts``, ``GET metrics`` (reported delivery metrics), ``GET segments``,
  ``GET objects?object_type_id&limit&offset``, ``GET objects/{object_type_id}/{object_id}``
  (or ``.../{cio_object_id}``; with who is related to it), ``GET people/{identifier}/
  relationships`` (or an anonymous id's), ``GET stats``, ``GET requests?limit&offset``
  (answered API requests, oldest first, as ``[arrived, method, path, status]``; ``arrived`` is
  on the machine's monotonic clock, so another process on the same host can compare it with
  its own ``time.monotonic()``); ``GET forms`` (form submissions);
- ``GET|POST|DELETE faults`` (see ``faults.py``), ``POST reset``;
- ``GET webhooks`` (what was sent or failed), ``POST webhooks/flush?timeout=s`` (returns once
  every queued webhook has been sent or has failed for good).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from cio_relay.digits import DEFAULT_MAX_DIGITS, whole_number

from .context import SteeredAccount
from .faults import InvalidFault
from .http import Reply, Request, json_reply, query_params
from .relations import ANONYMOUS, PERSON, StoredObject
from .state import EmulatorState, Person

__all__ = ["handle"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


class _BadQuery(Exception):
    pass


def _error(status: int, message: str) -> Reply:
    return json_reply({"error": message}, status)


def _int_param(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    number = whole_number(raw)
    if number is None:
        raise _BadQuery(
            f"{name} must be a non-negative integer of at most {DEFAULT_MAX_DIGITS} ASCII "
            f"digits, not {raw[:40]!r}"
        )
    return min(number, maximum)


def _page(params: dict[str, str], rows: Iterable[Any]) -> tuple[list[Any], int, int, int]:
    """(the page, total, limit, offset) of ``rows`` by the ``limit``/``offset`` parameters."""
    limit = _int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _int_param(params, "offset", 0, 2**62)
    page: list[Any] = []
    total = 0
    for total, row in enumerate(rows, start=1):
        if offset < total <= offset + limit:
            page.append(row)
    return page, total, limit, offset


async def handle(account: SteeredAccount, request: Request) -> Reply:
    parts = tuple(request.segments[1:])
    method = request.method
    try:
        if method == "GET" and len(parts) == 2 and parts[0] == "people":
            return _person(account, parts[1])
        if method == "GET" and len(parts) == 3 and parts[::2] == ("people", "relationships"):
            return _person_relationships(account, parts[1])
        if method == "GET" and len(parts) == 3 and parts[0] == "objects":
            return _object(account, (parts[1], parts[2]))
        if method == "POST" and parts == ("webhooks", "flush"):
            return await _flush(account, request)
        handler = _ROUTES.get((method, parts[0])) if len(parts) == 1 else None
        if handler is None:
            return _error(404, f"no such inspection endpoint: {method} {request.path}")
        return handler(account, request)
    except _BadQuery as bad:
        return _error(400, str(bad))


def _person_json(state: EmulatorState, person: Person) -> dict[str, Any]:
    return {**person.to_json(), "relationships": state.relations.links_of((PERSON, person.cio_id))}


def _people(account: SteeredAccount, request: Request) -> Reply:
    params = query_params(request)
    state = account.state
    rows = (_person_json(state, person) for person in state.people.values())
    page, total, limit, offset = _page(params, rows)
    return json_reply({"people": page, "total": total, "limit": limit, "offset": offset})


def _person(account: SteeredAccount, identifier: str) -> Reply:
    person = account.state.find_by_path(identifier)
    if person is None:
        return _error(404, f"no person {identifier!r}")
    body = _person_json(account.state, person)
    events = itertools.islice(account.state.events_of(person), MAX_LIMIT)
    body["events"] = [account.state.event_json(event) for event in events]
    return json_reply(body)


def _events(account: SteeredAccount, request: Request) -> Reply:
    params = query_params(request)
    state = account.state
    rows: Iterable[Any] = state.stored_events()
    if "person" in params:
        person = state.find_by_path(params["person"])
        if person is not None:
            rows = state.events_of(person)
        else:  # not a person: perhaps an anonymous id
            rows = (e for e in state.stored_events() if e.anonymous_id == params["person"])
    if "name" in params:
        rows = (e for e in rows if e.name == params["name"])
    if "type" in params:
        rows = (e for e in rows if e.type == params["type"])
    page, total, limit, offset = _page(params, rows)
    events = [state.event_json(event) for event in page]
    return json_reply({"events": events, "total": total, "limit": limit, "offset": offset})


def _deliveries(account: SteeredAccount, request: Request) -> Reply:
    params = query_params(request)
    rows: Iterable[dict[str, Any]] = account.state.deliveries
    if "channel" in params:
        rows = (d for d in rows if d["channel"] == params["channel"])
    page, total, limit, offset = _page(params, rows)
    return json_reply({"deliveries": page, "total": total, "limit": limit, "offset": offset})


def _broadcasts(account: SteeredAccount, request: Request) -> Reply:
    return json_reply({"triggers": list(account.state.triggers.values())})


def _metrics(account: SteeredAccount, request: Request) -> Reply:
    return json_reply({"metrics": account.state.metrics})


def _segments(account: SteeredAccount, request: Request) -> Reply:
    return json_reply({"segments": {k: sorted(v) for k, v in account.state.segments.items()}})


def _person_relationships(account: SteeredAccount, identifier: str) -> Reply:
    """A person's relationships; an identifier that is no person is read as an anonymous id
    (relationships made by ``identify_anonymous`` before the person was identified)."""
    relations = account.state.relations
    person = account.state.find_by_path(identifier)
    member = (ANONYMOUS, identifier) if person is None else (PERSON, person.cio_id)
    return json_reply({"relationships": relations.links_of(member)})


def _object_json(state: EmulatorState, stored: StoredObject) -> dict[str, Any]:
    return {**stored.to_json(), "relationships": state.relations.members_of(stored.key)}


def _objects(account: SteeredAccount, request: Request) -> Reply:
    params = query_params(request)
    state = account.state
    rows: Iterable[StoredObject] = state.relations.objects.values()
    if "object_type_id" in params:
        rows = (o for o in rows if o.key[0] == params["object_type_id"])
    page, total, limit, offset = _page(params, rows)
    objects = [_object_json(state, stored) for stored in page]
    return json_reply({"objects": objects, "total": total, "limit": limit, "offset": offset})


def _object(account: SteeredAccount, key: tuple[str, str]) -> Reply:
    state = account.state
    stored = state.relations.find(key)
    if stored is None:  # perhaps named by cio_object_id, under any type
        stored = state.relations.find_by_cio_object_id(key[1])
    if stored is None:
        return _error(404, f"no object {key[1]!r} of type {key[0]!r}")
    return json_reply(_object_json(state, stored))


def _forms(account: SteeredAccount, request: Request) -> Reply:
    return json_reply({"forms": account.state.forms})


def _requests(account: SteeredAccount, request: Request) -> Reply:
    page, total, limit, offset = _page(query_params(request), account.state.request_log)
    return json_reply({"requests": page, "total": total, "limit": limit, "offset": offset})


def _stats(account: SteeredAccount, request: Request) -> Reply:
    stats = account.state.stats
    return json_reply(
        {
            "requests": stats.requests_json(),
            "requests_total": sum(stats.requests.values()),
            "events_accepted": stats.events_accepted,
            "events_stored": len(account.state.events),
            "duplicate_event_ids": stats.duplicate_event_ids,
            "rate_limited": stats.rate_limited,
            "injected_errors": stats.injected_errors,
            "dropped_connections": stats.dropped_connections,
            "delayed_requests": stats.delayed_requests,
            "batch_items_accepted": stats.batch_items_accepted,
            "batch_items_refused": stats.batch_items_refused,
            "attribute_update_failures": stats.attribute_update_failures,
            "ignored_unknown_cio_ids": stats.ignored_unknown_cio_ids,
            "people": len(account.state.people),
            "objects": len(account.state.relations.objects),
            "form_submissions": len(account.state.forms),
            "deliveries": len(account.state.deliveries),
            "broadcast_triggers": len(account.state.triggers),
            "webhooks": account.webhooks.counts(),
        }
    )


def _faults(account: SteeredAccount, request: Request) -> Reply:
    return json_reply({"faults": [rule.to_json() for rule in account.faults.rules]})


def _add_fault(account: SteeredAccount, request: Request) -> Reply:
    try:
        rule = account.faults.add(request.json())
    except InvalidFault as bad:
        return _error(400, str(bad))
    except Exception:
        return _error(400, "a fault must be a JSON object")
    return json_reply({"fault": rule.to_json()})


def _clear_faults(account: SteeredAccount, request: Request) -> Reply:
    removed = len(account.faults.rules)
    account.faults.clear()
    return json_reply({"removed": removed})


def _reset(account: SteeredAccount, request: Request) -> Reply:
    account.reset()
    return json_reply({"reset": True})


def _webhooks(account: SteeredAccount, request: Request) -> Reply:
    return json_reply({**account.webhooks.counts(), "webhooks": list(account.webhooks.log)})


async def _flush(account: SteeredAccount, request: Request) -> Reply:
    params = query_params(request)
    timeout = _int_param(params, "timeout", 30, 600)
    drained = await account.webhooks.flush(timeout)
    status = 200 if drained else 504
    return json_reply({"drained": drained, **account.webhooks.counts()}, status)


_ROUTES: dict[tuple[str, str], Callable[[SteeredAccount, Request], Reply]] = {
    ("GET", "people"): _people,
    ("GET", "events"): _events,
    ("GET", "deliveries"): _deliveries,
    ("GET", "broadcasts"): _broadcasts,
    ("GET", "metrics"): _metrics,
    ("GET", "segments"): _segments,
    ("GET", "objects"): _objects,
    ("GET", "forms"): _forms,
    ("GET", "requests"): _requests,
    ("GET", "stats"): _stats,
    ("GET", "faults"): _faults,
    ("POST", "faults"): _add_fault,
    ("DELETE", "faults"): _clear_faults,
    ("POST", "reset"): _reset,
    ("GET", "webhooks"): _webhooks,
}
