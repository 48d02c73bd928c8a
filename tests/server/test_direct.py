"""Direct dispatch of the ingestion routes: the same answers as the router, found without it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from cio_relay.config import Settings
from cio_relay.observability.tracing import Tracing
from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox
from cio_relay.server.build import OperationBuilder
from cio_relay.server.direct import DirectRoutes
from cio_relay.server.ingest import read_capped
from cio_relay.server.middleware import RequestIdMiddleware
from cio_relay.server.responses import json_response
from tests.server.conftest import serve


class _Endpoint:
    """Only matched in these tests, never asked to answer."""

    async def respond(self, scope: Scope, receive: Receive) -> Response | None:
        raise AssertionError("not called")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")


def _route(path: str, *methods: str, name: str | None = None) -> Route:
    return Route(path, _Endpoint(), methods=methods or ["POST"], name=name)


def _table() -> DirectRoutes:
    return DirectRoutes(
        [
            _route("/v1/people/{id}", "POST", "DELETE", name="person"),
            _route("/v1/people/{id}/events", name="events"),
            _route("/v1/broadcasts/{id}/triggers", name="triggers"),
            _route("/v1/batch", name="batch"),
        ]
    )


@pytest.mark.parametrize(
    ("method", "path", "name", "params"),
    [
        ("POST", "/v1/people/u-1", "person", {"id": "u-1"}),
        ("DELETE", "/v1/people/ada@x.io", "person", {"id": "ada@x.io"}),
        ("POST", "/v1/people/u-1/events", "events", {"id": "u-1"}),
        ("POST", "/v1/people/events/events", "events", {"id": "events"}),
        ("POST", "/v1/broadcasts/42/triggers", "triggers", {"id": "42"}),
        ("POST", "/v1/batch", "batch", {}),
    ],
)
def test_routes_match_exactly_with_their_parameter(
    method: str, path: str, name: str, params: dict[str, str]
) -> None:
    found = _table().match(method, path)
    assert found is not None
    assert (found[0].name, found[1]) == (name, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/people/u-1"),  # another method: the router answers 405
        ("POST", "/v1/people/"),  # an empty id
        ("POST", "/v1/people//events"),
        ("POST", "/v1/people/u-1/"),  # the router redirects a trailing slash
        ("POST", "/v1/people/u-1/events/more"),
        ("POST", "/v1/people/u-1/triggers"),
        ("POST", "/v1/batch/"),
        ("POST", "/v1"),
    ],
)
def test_anything_else_is_left_to_the_router(method: str, path: str) -> None:
    assert _table().match(method, path) is None


@pytest.mark.parametrize("path", ["/v1/{a}/{b}", "/v1/people/{id:int}", "/v1/x-{id}"])
def test_paths_the_table_could_match_differently_from_the_router_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="direct dispatch"):
        DirectRoutes([_route(path)])


def test_an_endpoint_that_cannot_respond_is_refused() -> None:
    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    with pytest.raises(TypeError, match="respond"):
        DirectRoutes([Route("/v1/batch", plain, methods=["POST"])])


def test_the_scope_is_filled_in_as_the_router_would_and_a_root_path_is_left_to_it() -> None:
    table = _table()
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/people/u-1/events"}
    mounted = {**scope, "root_path": "/relay", "path": "/relay/v1/people/u-1/events"}
    endpoint = table.endpoint_for(scope)
    assert endpoint is not None and endpoint is scope["endpoint"]
    assert scope["path_params"] == {"id": "u-1"}
    assert scope["route"].path == "/v1/people/{id}/events"
    assert table.endpoint_for(mounted) is None


def _receiving(messages: Sequence[Message]) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


async def test_a_body_in_several_messages_is_joined_and_a_disconnect_answers_nothing() -> None:
    chunked = _receiving(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
        ]
    )
    gone = _receiving(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}]
    )
    assert await read_capped(chunked, None, 100) == b"abcd"
    assert await read_capped(gone, None, 100) is None


def test_a_routed_request_answers_as_before(client: httpx.Client, auth: dict[str, str]) -> None:
    accepted = client.post("/v1/people/u-1/events", json={"name": "x"}, headers=auth)
    wrong_method = client.get("/v1/people/u-1/events", headers=auth)
    slash = client.post("/v1/people/u-1/events/", json={"name": "x"}, headers=auth)
    assert accepted.status_code == 202 and len(accepted.json()["op_ids"]) == 1
    assert accepted.headers["content-type"] == "application/json"
    assert len(accepted.headers["x-request-id"]) == 16
    assert wrong_method.status_code == 405
    assert slash.status_code == 307 and slash.headers["location"].endswith("/v1/people/u-1/events")


class _BrokenBuilder(OperationBuilder):
    """A bug: a storage error is a 503 (``storage_unavailable``), this one is unexpected."""

    def event(self, *args: Any, **kwargs: Any) -> Operation:
        raise RuntimeError("a bug in the builder")


async def _broken_page(request: Request) -> Response:
    raise RuntimeError("a bug in a page")


def test_an_unexpected_error_is_a_json_500_with_the_request_id(
    make_app: Callable[..., Starlette], settings: Settings, auth: dict[str, str]
) -> None:
    headers = {**auth, "X-Request-Id": "req-500"}
    app = make_app()
    app.state.service.ingestion.builder = _BrokenBuilder(settings)
    app.router.routes.append(Route("/_test/broken", _broken_page))
    # One connection each: the server closes a connection after a 500.
    with serve(app) as url:
        direct = httpx.post(f"{url}/v1/people/u-1/events", json={"name": "x"}, headers=headers)
        # A routed request, Starlette's error middleware answering.
        routed = httpx.get(f"{url}/_test/broken", headers=headers)
    for response in (direct, routed):
        assert response.status_code == 500
        assert response.json() == {"error": "internal", "message": "internal server error"}
        assert response.headers["x-request-id"] == "req-500"


class _Accepting:
    async def respond(self, scope: Scope, receive: Receive) -> Response | None:
        return json_response({"op_ids": []}, 202)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("answered directly, never through the router")


async def test_direct_and_routed_requests_are_traced_alike() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    direct = Route("/v1/people/{id}/events", _Accepting(), methods=["POST"])

    async def other(request: Request) -> Response:
        return PlainTextResponse("ok")

    routed = Starlette(routes=[Route("/other/{name}", other)])
    app = RequestIdMiddleware(routed, Tracing(provider), DirectRoutes([direct]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        accepted = await http.post("/v1/people/u-1/events", headers={"X-Request-Id": "req-1"})
        answered = await http.get("/other/x", headers={"X-Request-Id": "req-2"})
    assert accepted.status_code == 202 and accepted.headers["x-request-id"] == "req-1"
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "req-2"
    spans = {span.attributes["request_id"]: span for span in exporter.get_finished_spans()}
    assert spans["req-1"].name == "POST /v1/people/{id}/events"
    assert spans["req-1"].attributes["http.route"] == "/v1/people/{id}/events"
    assert spans["req-1"].attributes["http.response.status_code"] == 202
    assert spans["req-2"].name == "GET /other/{name}"
    assert spans["req-2"].attributes["http.response.status_code"] == 200


async def test_under_a_root_path_the_router_answers_the_ingestion_routes(
    make_app: Callable[..., Starlette], auth: dict[str, str], outbox: Outbox
) -> None:
    transport = httpx.ASGITransport(app=make_app(), root_path="/relay")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/relay/v1/people/u-1/events", json={"name": "x"}, headers=auth)
    assert response.status_code == 202
    assert len(response.headers["x-request-id"]) == 16
    assert outbox.depth().pending == 1


@pytest.mark.parametrize("declared", [b"9" * 5000, "²".encode(), b"-1", b"1e9", b""])
async def test_a_content_length_that_is_not_plain_digits_is_not_trusted_for_413(
    declared: bytes,
) -> None:
    body = _receiving([{"type": "http.request", "body": b"abcd", "more_body": False}])
    assert await read_capped(body, declared, 100) == b"abcd"  # read under the cap as usual


async def test_a_content_length_over_the_cap_is_413_before_the_body_is_read() -> None:
    never = _receiving([])  # popping from it would raise: nothing is read
    answer = await read_capped(never, b"101", 100)
    assert isinstance(answer, Response) and answer.status_code == 413


@pytest.mark.parametrize("root_path", ["", "/relay"], ids=["direct", "router"])
@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/people/%ff/events", 422, "id"),
        ("/v1/people/caf%E9/events", 422, "id"),  # Latin-1, not UTF-8
        ("/v1/people/a%2Fevents", 422, "id"),  # decoded, it is person "a"'s events route
        ("/v1/people%2Fa/events", 422, "id"),
        ("/v1/people/%2E%2E/events", 422, "identifier.id"),
        ("/v1/people/caf%C3%A9/events", 202, None),
    ],
)
async def test_path_ids_are_decoded_strictly_from_the_raw_path_on_both_ways_in(
    make_app: Callable[..., Starlette],
    auth: dict[str, str],
    outbox: Outbox,
    root_path: str,
    path: str,
    status: int,
    field: str | None,
) -> None:
    transport = httpx.ASGITransport(app=make_app(), root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(f"{root_path}{path}", json={"name": "x"}, headers=auth)
    assert response.status_code == status, response.text
    if field is None:
        (lease,) = outbox.lease(10, 60)
        assert lease.op.identifiers == {"id": "café"}
    else:
        assert response.json()["field"] == field
        assert outbox.depth().pending == 0
