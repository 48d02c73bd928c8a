"""Which handler answers a (method, path): a hand-written matcher over path segments.

The endpoint names (``PUT /api/v1/customers/{identifier}``) are what ``/_emulator/stats``
counts requests by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from . import app_api, app_reads, track_v1, track_v2

__all__ = ["APP", "TRACK", "Route", "find_route"]

TRACK = "track"
APP = "app"

Handler = Callable[..., Any]


class Route(NamedTuple):
    endpoint: str
    api: str
    handler: Handler | None
    args: tuple[str, ...] = ()


_CUSTOMER = "/api/v1/customers/{identifier}"
_PERSON_ROUTES: dict[tuple[str, str], tuple[str, Handler]] = {
    ("PUT", ""): (f"PUT {_CUSTOMER}", track_v1.identify),
    ("DELETE", ""): (f"DELETE {_CUSTOMER}", track_v1.delete),
    ("POST", "events"): (f"POST {_CUSTOMER}/events", track_v1.track),
    ("PUT", "devices"): (f"PUT {_CUSTOMER}/devices", track_v1.add_device),
    ("POST", "suppress"): (f"POST {_CUSTOMER}/suppress", track_v1.suppress),
    ("POST", "unsuppress"): (f"POST {_CUSTOMER}/unsuppress", track_v1.unsuppress),
}
_TRACK_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/api/v1/events"): track_v1.anonymous_event,
    ("POST", "/api/v1/merge_customers"): track_v1.merge_customers,
    ("POST", "/api/v1/metrics"): track_v1.metrics,
    ("POST", "/api/v1/push/events"): track_v1.push_event,
    ("GET", "/api/v1/accounts/region"): track_v1.region,
    ("POST", "/api/v2/entity"): track_v2.entity,
    ("POST", "/api/v2/batch"): track_v2.batch,
}
_SEND_CHANNELS = frozenset(app_api.CHANNELS)


def _unknown(api: str) -> Route:
    return Route("unknown", api, None)


def find_route(method: str, segments: list[str]) -> Route:
    """The route for a request; its ``handler`` is None when nothing matches (404)."""
    if not segments:
        return _unknown(TRACK)
    if segments[0] == "api":
        return _track_route(method, segments)
    if segments[0] == "v1":
        return _app_route(method, segments)
    if len(segments) == 2 and segments[0] == "unsubscribe" and method == "POST":
        return Route("POST /unsubscribe/{delivery_id}", TRACK, track_v1.unsubscribe, (segments[1],))
    return _unknown(TRACK)


def _track_route(method: str, segments: list[str]) -> Route:
    count = len(segments)
    if count >= 4 and segments[1] == "v1" and segments[2] == "customers":
        identifier = segments[3]
        if count <= 5:
            found = _PERSON_ROUTES.get((method, segments[4] if count == 5 else ""))
            if found is not None:
                return Route(found[0], TRACK, found[1], (identifier,))
        elif count == 6 and segments[4] == "devices" and method == "DELETE":
            return Route(
                f"DELETE {_CUSTOMER}/devices/{{device_id}}",
                TRACK,
                track_v1.delete_device,
                (identifier, segments[5]),
            )
        return _unknown(TRACK)
    if (
        count == 5
        and method == "POST"
        and segments[1:3] == ["v1", "forms"]
        and segments[4] == "submit"
    ):
        return Route(
            "POST /api/v1/forms/{form_id}/submit", TRACK, track_v1.submit_form, (segments[3],)
        )
    if count == 5 and segments[1:3] == ["v1", "segments"] and method == "POST":
        action = segments[4]
        if action in ("add_customers", "remove_customers"):
            return Route(
                f"POST /api/v1/segments/{{id}}/{action}",
                TRACK,
                track_v1.segment_membership,
                (segments[3], action),
            )
    path = "/" + "/".join(segments)
    handler = _TRACK_ROUTES.get((method, path))
    if handler is None:
        return _unknown(TRACK)
    return Route(f"{method} {path}", TRACK, handler)


def _app_route(method: str, segments: list[str]) -> Route:
    count = len(segments)
    if segments[1:2] == ["customers"] and method == "GET":
        if count == 2:
            return Route("GET /v1/customers", APP, app_reads.customers_by_email)
        if count == 4 and segments[3] == "attributes":
            return Route(
                "GET /v1/customers/{customer_id}/attributes",
                APP,
                app_reads.customer_attributes,
                (segments[2],),
            )
    if count == 3 and segments[1] == "send" and method == "POST":
        if segments[2] in _SEND_CHANNELS:
            return Route(f"POST /v1/send/{segments[2]}", APP, app_api.send, (segments[2],))
    elif count >= 4 and segments[1] == "campaigns" and segments[3] == "triggers":
        if count == 4 and method == "POST":
            return Route(
                "POST /v1/campaigns/{id}/triggers",
                APP,
                app_api.trigger_broadcast,
                (segments[2],),
            )
        if count == 5 and method == "GET":
            return Route(
                "GET /v1/campaigns/{id}/triggers/{trigger_id}",
                APP,
                app_api.trigger_status,
                (segments[2], segments[4]),
            )
        if count == 6 and method == "GET" and segments[5] == "errors":
            return Route(
                "GET /v1/campaigns/{id}/triggers/{trigger_id}/errors",
                APP,
                app_api.trigger_errors,
                (segments[2], segments[4]),
            )
    return _unknown(APP)
