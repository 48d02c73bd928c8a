"""OpenTelemetry tracing when the ``otel`` extra is installed; a no-op otherwise.

``Tracing.request_span`` wraps each HTTP request of the service. Customer.io requests are
recorded from the ``on_request`` hook as spans with their measured start and end (the hook fires
after the send, so the span is built from the duration instead of wrapping the call). With the
API installed but no SDK configured, OpenTelemetry itself is a no-op, so this costs nothing until
an operator sets up an exporter.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Iterator
from typing import Any

from cio_relay.delivery.hooks import Hooks

__all__ = ["Tracing", "tracing_available"]

_INSTRUMENTATION = "cio_relay"


def tracing_available() -> bool:
    """True when ``opentelemetry-api`` can be imported (``pip install 'cio-relay[otel]'``)."""
    return importlib.util.find_spec("opentelemetry") is not None


class Tracing:
    """Spans for HTTP requests and Customer.io calls; every method is a no-op without OTel."""

    def __init__(self, tracer_provider: Any = None) -> None:
        """``tracer_provider``: the OTel SDK provider to use; by default the global one, if an
        SDK provider was installed before the app was built (``opentelemetry-instrument`` or
        ``trace.set_tracer_provider``). With only the API's default no-op provider, tracing
        stays off here entirely: even a no-op span has a cost on every request."""
        self._tracer: Any = None
        if not tracing_available():
            return
        from opentelemetry import trace

        provider = tracer_provider or trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return
        self._tracer = trace.get_tracer(_INSTRUMENTATION, tracer_provider=provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def request_span(self, method: str, request_id: str) -> Iterator[Any]:
        """A server span; the caller renames it to ``METHOD <route template>`` once routed (a raw
        path would put people's ids in span names)."""
        if self._tracer is None:
            yield None
            return
        from opentelemetry.trace import SpanKind

        with self._tracer.start_as_current_span(
            f"HTTP {method}",
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "request_id": request_id},
        ) as span:
            yield span

    def subscribe(self, hooks: Hooks) -> None:
        if self._tracer is not None:
            hooks.on_request(self._on_request)

    def _on_request(self, api: str, endpoint: str, status: int | None, seconds: float) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from cio_relay.observability.metrics import normalise_endpoint

        end = time.time_ns()
        span = self._tracer.start_span(
            f"customerio {normalise_endpoint(endpoint)}",
            kind=SpanKind.CLIENT,
            start_time=end - int(seconds * 1e9),
            attributes={"customerio.api": api, "http.response.status_code": status or 0},
        )
        if status is None or status >= 400:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)
