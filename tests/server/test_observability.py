"""Metrics after real traffic, JSON logs with request and op ids, secrets scrubbed, tracing."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.delivery.hooks import Hooks
from cio_relay.emulator import EmulatorServer
from cio_relay.observability import (
    Metrics,
    ThroughputRing,
    Tracing,
    bind_request_id,
    configure_logging,
    get_logger,
    log_delivery_events,
    normalise_endpoint,
)
from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox
from cio_relay.server import create_app
from cio_relay.server.build import OperationBuilder
from tests.server.conftest import serve


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_expose_the_series_after_traffic(
    emulator: EmulatorServer, outbox: Outbox, tmp_path: Path, api_key: str, auth: dict[str, str]
) -> None:
    settings = Settings(
        api_keys=api_key,
        site_id="emulator-site",
        track_api_key="emulator-track-key",
        app_api_key="emulator-app-key",
        track_url=emulator.url,
        app_url=emulator.url,
        data_dir=tmp_path,
    )
    fault = {"path": "/v1/send/email", "error_rate": 1.0, "status_codes": [400]}
    httpx.post(f"{emulator.url}/_emulator/faults", json=fault).raise_for_status()
    hooks = Hooks()
    settled = threading.Semaphore(0)
    hooks.on_delivered(lambda op, latency: settled.release())
    hooks.on_dead(lambda op, reason, detail: settled.release())
    app = create_app(settings, outbox=outbox, hooks=hooks, idempotency_path=tmp_path / "i.db")
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        assert http.post("/v1/people/u-1", json={"attributes": {"plan": "pro"}}).status_code == 202
        assert http.post("/v1/people/u-1/events", json={"name": "paid"}).status_code == 202
        assert (
            http.post(
                "/v1/transactional/email",
                json={"to": "a@example.com", "transactional_message_id": 1},
            ).status_code
            == 202
        )
        assert http.post("/v1/people/u-1/events", json={"name": "n" * 101}).status_code == 422
        for _ in range(3):
            assert settled.acquire(timeout=30), "the worker did not settle the operations"
        metrics = _samples(http.get("/metrics").text)
    assert metrics[("cio_relay_operations_enqueued_total", (("kind", "identify"),))] == 1
    assert metrics[("cio_relay_operations_enqueued_total", (("kind", "track"),))] == 1
    assert metrics[("cio_relay_operations_delivered_total", (("kind", "identify"),))] == 1
    assert metrics[("cio_relay_operations_delivered_total", (("kind", "track"),))] == 1
    assert (
        metrics[
            (
                "cio_relay_operations_dead_lettered_total",
                (("kind", "send_email"), ("reason", "permanent")),
            )
        ]
        == 1
    )
    batch = (("api", "track"), ("endpoint", "POST /api/v2/batch"), ("status", "200"))
    assert metrics[("cio_relay_customerio_requests_total", batch)] >= 1
    email = (("api", "transactional"), ("endpoint", "POST /v1/send/email"), ("status", "400"))
    assert metrics[("cio_relay_customerio_requests_total", email)] == 1
    latency = (("api", "transactional"), ("endpoint", "POST /v1/send/email"))
    assert metrics[("cio_relay_customerio_request_duration_seconds_count", latency)] == 1
    assert metrics[("cio_relay_outbox_depth", (("state", "dead"),))] == 1
    assert metrics[("cio_relay_outbox_depth", (("state", "ready"),))] == 0
    assert ("cio_relay_outbox_oldest_waiting_age_seconds", ()) in metrics
    assert metrics[("cio_relay_http_requests_total", (("route", "track"), ("status", "422")))] == 1
    assert metrics[("cio_relay_delivery_latency_seconds_count", (("kind", "track"),))] == 1


def test_endpoints_never_carry_people_in_labels() -> None:
    assert (
        normalise_endpoint("PUT /api/v1/customers/ada%40x.io")
        == "PUT /api/v1/customers/{identifier}"
    )
    assert (
        normalise_endpoint("POST /api/v1/customers/u-1/events")
        == "POST /api/v1/customers/{identifier}/events"
    )
    assert (
        normalise_endpoint("DELETE /api/v1/customers/u-1/devices/tok-9")
        == "DELETE /api/v1/customers/{identifier}/devices/{token}"
    )
    assert (
        normalise_endpoint("POST /v1/campaigns/12/triggers")
        == "POST /v1/campaigns/{broadcast_id}/triggers"
    )
    assert normalise_endpoint("POST /api/v2/batch") == "POST /api/v2/batch"


def test_rate_limiter_waits_and_webhooks_are_counted() -> None:
    metrics = Metrics()
    hooks = Hooks()
    metrics.subscribe(hooks)
    Hooks.fire(hooks.rate_wait, "broadcast", 2.5)
    metrics.on_webhook("email_opened", "stored")
    assert metrics.sample("cio_relay_rate_limiter_wait_seconds_sum", {"api": "broadcast"}) == 2.5
    assert (
        metrics.sample("cio_relay_webhooks_total", {"metric": "email_opened", "result": "stored"})
        == 1
    )


def test_outbox_that_fails_at_scrape_time_reports_down(outbox: Outbox) -> None:
    metrics = Metrics()
    metrics.watch_outbox(outbox)
    assert metrics.sample("cio_relay_outbox_up") == 1
    outbox.close()
    assert metrics.sample("cio_relay_outbox_up") == 0


@pytest.fixture
def log_lines() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("INFO", secrets=["sk-live-secret-value"], stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_cio_relay_handler", False)]:
        root.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_logs_are_json_with_the_request_id_and_no_secrets(log_lines: io.StringIO) -> None:
    with bind_request_id("req-42"):
        get_logger("test").info("calling", api_key="abc", url="https://x/?k=sk-live-secret-value")
        logging.getLogger("stdlib").warning("token sk-live-secret-value leaked %s", "here")
    get_logger("test").info("outside")
    first, second, third = _lines(log_lines)
    assert first["request_id"] == second["request_id"] == "req-42"
    assert "request_id" not in third
    assert first["api_key"] == "[redacted]"
    assert "sk-live-secret-value" not in log_lines.getvalue()
    assert second["event"] == "token [redacted] leaked here"
    assert (first["level"], second["level"], second["logger"]) == ("info", "warning", "stdlib")


def test_dead_letters_and_retries_are_logged_with_their_op_id(log_lines: io.StringIO) -> None:
    hooks = Hooks()
    log_delivery_events(hooks)
    op = ops.send_email(to="a@example.com", transactional_message_id=1)
    Hooks.fire(hooks.retry, op, "503 Service Unavailable", 1.5)
    Hooks.fire(hooks.dead, op, "ambiguous", "timed out after writing")
    retry, dead = _lines(log_lines)
    assert (retry["event"], retry["op_id"], retry["delay"]) == ("operation.retry", op.op_id, 1.5)
    assert (dead["event"], dead["op_id"], dead["reason"]) == (
        "operation.dead_lettered",
        op.op_id,
        "ambiguous",
    )


def test_requests_are_logged_with_the_request_id_they_answer(
    make_app: object, auth: dict[str, str], log_lines: io.StringIO
) -> None:
    app = make_app()  # type: ignore[operator]

    async def logs_something(request: object) -> PlainTextResponse:
        get_logger("handler").info("inside the request")
        return PlainTextResponse("ok")

    app.router.routes.append(Route("/_test/log", logs_something))
    with serve(app) as url:
        response = httpx.get(f"{url}/_test/log", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    lines = [line for line in _lines(log_lines) if line.get("logger") == "handler"]
    assert lines and lines[0]["request_id"] == "abc-123"


def test_throughput_ring_keeps_the_last_hour_per_minute() -> None:
    ring = ThroughputRing(minutes=60)
    start = 1_000_020.0  # 20 s into a minute
    ring.record(1, 5, now=start)
    ring.record(2, 1, now=start + 30)
    ring.record(1, 7, now=start + 61)
    series = ring.series(now=start + 61)
    assert len(series) == 60
    assert (series[-2].delivered, series[-2].dead, series[-1].delivered) == (5, 1, 7)
    later = ring.series(now=start + 3600 + 61)  # an hour on: the old minutes are gone
    assert sum(m.delivered for m in later) == 0
    ring.record(1, 2, now=start + 3600)  # reuses the slot of an hour ago, starting from zero
    assert ring.series(now=start + 3600)[-1].delivered == 2


def test_tracing_records_request_and_customerio_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(tracer_provider=provider)
    hooks = Hooks()
    tracing.subscribe(hooks)
    with tracing.request_span("POST", "req-1") as span:
        span.update_name("POST /v1/people/{id}")
    Hooks.fire(hooks.request, "track", "PUT /api/v1/customers/ada", 500, 0.25)
    server, client = exporter.get_finished_spans()
    assert server.name == "POST /v1/people/{id}"
    assert server.attributes["request_id"] == "req-1"
    assert client.name == "customerio PUT /api/v1/customers/{identifier}"
    assert (client.end_time - client.start_time) == pytest.approx(0.25e9, rel=0.01)
    assert not client.status.is_ok


def test_api_answers_are_counted_as_a_prometheus_counter_by_route_and_status() -> None:
    metrics = Metrics()
    for route, status in [("track", 202), ("track", 202), ("batch", 422)]:
        metrics.on_http(route, status)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    counts = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["cio_relay_http_requests"].samples
    }
    assert families["cio_relay_http_requests"].type == "counter"
    assert counts == {("track", "202"): 2.0, ("batch", "422"): 1.0}
    assert len(families["cio_relay_http_requests_created"].samples) == 2


class _BrokenBuilder(OperationBuilder):
    def event(self, *args: Any, **kwargs: Any) -> Operation:
        raise RuntimeError("a bug in the builder")


@pytest.mark.parametrize("root_path", ["", "/relay"])
async def test_an_unexpected_error_on_an_ingestion_route_is_counted_as_a_500(
    make_app: Any, settings: Settings, auth: dict[str, str], root_path: str
) -> None:
    app = make_app()
    service = app.state.service
    service.ingestion.builder = _BrokenBuilder(settings)
    transport = httpx.ASGITransport(app=app, root_path=root_path, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        url = f"{root_path}/v1/people/u-1/events"
        failed = await http.post(url, json={"name": "x"}, headers=auth)
        refused = await http.post(url, json={}, headers=auth)
    assert (failed.status_code, refused.status_code) == (500, 422)
    counted = {
        status: service.metrics.sample(
            "cio_relay_http_requests_total", {"route": "track", "status": status}
        )
        for status in ("500", "422")
    }
    assert counted == {"500": 1.0, "422": 1.0}
