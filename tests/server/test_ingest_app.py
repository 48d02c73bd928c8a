"""The ingestion API as one ASGI app mounted at /v1: its routes, its refusals, its 500s, its
spans, under a ``root_path`` as well as without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from cio_relay.config import Settings
from cio_relay.observability.tracing import Tracing
from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox
from cio_relay.server.build import OperationBuilder
from cio_relay.server.ingest import MOUNT_PATH
from cio_relay.server.middleware import RequestIdMiddleware
from tests.server.conftest import serve


def _in_process(app: Starlette, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize("root_path", ["", "/relay"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/people/u-1", {}),
        ("DELETE", "/v1/people/ada@x.io", None),
        ("POST", "/v1/people/u-1/events", {"name": "x"}),
        ("POST", "/v1/people/events/events", {"name": "x"}),  # an id that names a route
        ("POST", "/v1/people/u-1/suppress", None),
        ("POST", "/v1/events", {"anonymous_id": "a-1", "name": "x"}),
        ("POST", "/v1/broadcasts/42/triggers", {}),
        ("POST", "/v1/batch", {"operations": [{"type": "identify", "person": "u-1"}]}),
    ],
)
async def test_every_route_is_found_below_the_mount(
    make_app: Callable[..., Starlette],
    auth: dict[str, str],
    outbox: Outbox,
    root_path: str,
    method: str,
    path: str,
    body: Any,
) -> None:
    async with _in_process(make_app(), root_path) as http:
        response = await http.request(method, f"{root_path}{path}", json=body, headers=auth)
    assert response.status_code == 202, response.text
    assert outbox.depth().pending == len(response.json()["op_ids"]) == 1


@pytest.mark.parametrize("root_path", ["", "/relay"])
@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/people/u-1", 405, "DELETE, POST"),
        ("PUT", "/v1/people/u-1/events", 405, "POST"),
        ("POST", "/v1/people/", 404, None),  # an empty id
        ("POST", "/v1/people//events", 404, None),
        ("POST", "/v1/people/u-1/events/more", 404, None),
        ("POST", "/v1/people/u-1/triggers", 404, None),
        ("POST", "/v1/nothing", 404, None),
        ("POST", "/v1/", 404, None),
    ],
)
async def test_what_the_api_does_not_serve_is_refused_in_the_error_shape(
    make_app: Callable[..., Starlette],
    auth: dict[str, str],
    outbox: Outbox,
    root_path: str,
    method: str,
    path: str,
    status: int,
    allow: str | None,
) -> None:
    async with _in_process(make_app(), root_path) as http:
        response = await http.request(method, f"{root_path}{path}", headers=auth)
    code = {404: "not_found", 405: "method_not_allowed"}[status]
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert response.headers.get("allow") == allow
    assert len(response.headers["x-request-id"]) == 16
    assert outbox.depth().pending == 0


@pytest.mark.parametrize("root_path", ["", "/relay"])
async def test_a_trailing_slash_is_redirected_to_the_route_without_it(
    make_app: Callable[..., Starlette], auth: dict[str, str], root_path: str
) -> None:
    async with _in_process(make_app(), root_path) as http:
        slash = await http.post(f"{root_path}/v1/people/u-1/events/?id_type=email", headers=auth)
        batch = await http.post(f"{root_path}/v1/batch/", headers=auth)
    assert (slash.status_code, batch.status_code) == (307, 307)
    assert slash.headers["location"] == f"http://test{root_path}/v1/people/u-1/events?id_type=email"
    assert batch.headers["location"] == f"http://test{root_path}/v1/batch"


def test_an_answer_over_http_carries_its_request_id(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    accepted = client.post("/v1/people/u-1/events", json={"name": "x"}, headers=auth)
    assert accepted.status_code == 202 and len(accepted.json()["op_ids"]) == 1
    assert accepted.headers["content-type"] == "application/json"
    assert len(accepted.headers["x-request-id"]) == 16


class _BrokenBuilder(OperationBuilder):
    """A bug: a storage error is a 503 (``storage_unavailable``), this one is unexpected."""

    def event(self, *args: Any, **kwargs: Any) -> Operation:
        raise RuntimeError("a bug in the builder")


async def _broken_page(request: Request) -> Response:
    raise RuntimeError("a bug in a page")


def test_an_unexpected_error_is_the_same_json_500_with_the_request_id_everywhere(
    make_app: Callable[..., Starlette],
    settings: Settings,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {**auth, "X-Request-Id": "req-500"}
    app = make_app()
    app.state.service.ingestion.builder = _BrokenBuilder(settings)
    app.router.routes.append(Route("/_test/broken", _broken_page))
    # One connection each: the server closes a connection after a 500.
    with serve(app) as url:
        ingestion = httpx.post(f"{url}/v1/people/u-1/events", json={"name": "x"}, headers=headers)
        page = httpx.get(f"{url}/_test/broken", headers=headers)
    for response in (ingestion, page):
        assert response.status_code == 500
        assert response.json() == {"error": "internal", "message": "internal server error"}
        assert response.headers["x-request-id"] == "req-500"
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert [str(exc) for exc in logged] == ["a bug in the builder", "a bug in a page"]
    assert {r.name for r in caplog.records if r.exc_info} == {"uvicorn.error"}


async def test_ingestion_and_other_routes_are_traced_alike(
    make_app: Callable[..., Starlette], settings: Settings, auth: dict[str, str]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ingestion = make_app().state.service.ingestion

    async def other(request: Request) -> Response:
        return PlainTextResponse("ok")

    # The service's stack (create_app), with a tracer of the test's own.
    app = Starlette(
        routes=[Mount(MOUNT_PATH, app=ingestion), Route("/other/{name}", other)],
        middleware=[Middleware(RequestIdMiddleware, tracing=Tracing(provider))],
    )
    async with _in_process(app) as http:
        accepted = await http.post(
            "/v1/people/u-1/events", json={"name": "x"}, headers={**auth, "X-Request-Id": "r-1"}
        )
        answered = await http.get("/other/x", headers={"X-Request-Id": "r-2"})
        ingestion.builder = _BrokenBuilder(settings)
        failed = await http.post(
            "/v1/people/u-1/events", json={"name": "x"}, headers={**auth, "X-Request-Id": "r-3"}
        )
    assert accepted.status_code == 202 and accepted.headers["x-request-id"] == "r-1"
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "r-2"
    assert failed.status_code == 500
    spans = {span.attributes["request_id"]: span for span in exporter.get_finished_spans()}
    for request_id, name, status in [
        ("r-1", "POST /v1/people/{id}/events", 202),
        ("r-2", "GET /other/{name}", 200),
        ("r-3", "POST /v1/people/{id}/events", 500),
    ]:
        assert spans[request_id].name == name
        assert spans[request_id].attributes["http.route"] == name.split(" ")[1]
        assert spans[request_id].attributes["http.response.status_code"] == status
    assert not spans["r-3"].status.is_ok


@pytest.mark.parametrize("root_path", ["", "/relay"])
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
async def test_path_ids_are_decoded_strictly_from_the_raw_path(
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
