"""Prometheus metrics, fed by the delivery hooks and by a collector that asks the outbox.

Series (all prefixed ``cio_relay_``):

- ``operations_enqueued_total{kind}``, ``operations_delivered_total{kind}``,
  ``operations_retried_total{kind}``, ``operations_dead_lettered_total{kind,reason}``
- ``delivery_latency_seconds{kind}``: enqueue to accepted by Customer.io (histogram)
- ``customerio_requests_total{api,endpoint,status}`` and
  ``customerio_request_duration_seconds{api,endpoint}`` (histogram). Endpoints are normalised
  (``PUT /api/v1/customers/{identifier}``): a person's id never becomes a label, which would leak
  personal data and grow the series without bound.
- ``rate_limiter_wait_seconds{api}`` (histogram)
- ``webhooks_total{metric,result}``: what the webhook receiver accepted, de-duplicated, refused
- ``http_requests_total{route,status}``: the ingestion API's answers
- ``http_connections_refused_total{limit}``: connections the server closed at a limit
  (``http_guard``: header_timeout, body_timeout, header_bytes, connections)
- ``storage_errors_total{operation,error}``: outbox calls of the dispatcher that failed (and
  are retried; ``operation`` is lease, ack, extend ..., ``error`` the exception class)
- ``worker_restarts_total``: delivery workers of ``cio-relay run`` restarted after they stopped
- ``region_mismatch{api}``: 1 while delivery to that API family (``track``, ``app``) is paused
  because Customer.io places the account in another region than ``CUSTOMERIO_REGION``
- ``outbox_depth{state}``, ``outbox_oldest_waiting_age_seconds``, ``outbox_up``: asked of the
  outbox at scrape time (``Outbox.depth()``), so they are exact and cost nothing between scrapes.
- With the BigQuery loader (``lake/bigquery.py``): ``bigquery_loads_total{result,reason}`` (each
  day sent: ``loaded``, or ``failed`` with its reason), and from its load state at scrape time
  ``bigquery_days{status}`` (loaded, failed, loading), ``bigquery_failing_days{reason}``,
  ``bigquery_last_load_timestamp_seconds`` and ``bigquery_state_up``.
- With scheduled bulk syncs (``CIO_RELAY_SYNCS``): ``sync_rows_total{sync,outcome}``,
  ``sync_runs_total{sync,status}``, ``sync_run_duration_seconds{sync}`` and
  ``sync_last_completed_timestamp_seconds{sync}`` (``sync_metrics.py``, in the same registry).

Each ``Metrics`` owns its registry, so several apps (tests) never share counters.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cio_relay.delivery.hooks import Hooks
from cio_relay.lake.bigquery import DayResult
from cio_relay.lake.bigquery_jobs import FAILURE_REASONS
from cio_relay.lake.bigquery_state import LoadSummary
from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox

__all__ = [
    "CONTENT_TYPE",
    "AnswerCounts",
    "BigQueryCollector",
    "Metrics",
    "OutboxCollector",
    "normalise_endpoint",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0)

# Path segments that name a person, a device or a broadcast become placeholders.
_ENDPOINT_PATTERNS = (
    (re.compile(r"(/customers/)[^/]+/devices/[^/]+$"), r"\1{identifier}/devices/{token}"),
    (re.compile(r"(/customers/)[^/]+"), r"\1{identifier}"),
    (re.compile(r"(/campaigns/)[^/]+"), r"\1{broadcast_id}"),
)


def normalise_endpoint(endpoint: str) -> str:
    """``PUT /api/v1/customers/ada%40x.io`` -> ``PUT /api/v1/customers/{identifier}``."""
    for pattern, replacement in _ENDPOINT_PATTERNS:
        endpoint, count = pattern.subn(replacement, endpoint, count=1)
        if count:
            break
    return endpoint


class OutboxCollector(Collector):
    """Asks the outbox for its depth at scrape time. A failing outbox reports ``outbox_up 0``."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("cio_relay_outbox_up", "1 when the outbox answered the scrape")
        try:
            depth = self._outbox.depth()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_state = GaugeMetricFamily(
            "cio_relay_outbox_depth", "Operations in the outbox by state", labels=["state"]
        )
        for state in ("ready", "scheduled", "leased", "dead"):
            by_state.add_metric([state], getattr(depth, state))
        yield by_state
        oldest = GaugeMetricFamily(
            "cio_relay_outbox_oldest_waiting_age_seconds",
            "Age of the oldest operation not yet delivered (0 when none waits)",
        )
        oldest.add_metric([], depth.oldest_waiting_age or 0.0)
        yield oldest


class BigQueryCollector(Collector):
    """Reads the BigQuery load state at scrape time (``summary()``); ``bigquery_state_up 0``
    when it cannot be read. Every failure reason is present, 0 when none fails, for alerts."""

    def __init__(self, summary: Callable[[], LoadSummary]) -> None:
        self._summary = summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("cio_relay_bigquery_state_up", "1 when the load state was read")
        try:
            summary = self._summary()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        days = GaugeMetricFamily(
            "cio_relay_bigquery_days", "Lake days by BigQuery load status", labels=["status"]
        )
        for status in ("loaded", "failed", "loading"):
            days.add_metric([status], getattr(summary, status))
        yield days
        failing = GaugeMetricFamily(
            "cio_relay_bigquery_failing_days",
            "Lake days whose last BigQuery load failed, by reason",
            labels=["reason"],
        )
        by_reason = dict(summary.failed_by_reason)
        for reason in FAILURE_REASONS:
            failing.add_metric([reason], by_reason.get(reason, 0))
        yield failing
        if summary.last_loaded_at is not None:
            last = GaugeMetricFamily(
                "cio_relay_bigquery_last_load_timestamp_seconds",
                "When a day was last loaded into BigQuery (unix seconds)",
            )
            last.add_metric([], summary.last_loaded_at)
            yield last


class AnswerCounts(Collector):
    """``http_requests_total{route,status}``: the ingestion API's answers, counted in plain ints.

    Every request counts one, on the event loop's thread; a ``Counter`` child takes a lock per
    increment, a cost on every request that a plain int does not have (docs/benchmarks.md).
    The scrape, on another thread, copies the counts in one C call (atomic under the GIL).
    Exposed as a Counter is, ``_created`` included.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._created: dict[tuple[str, int], float] = {}

    def count(self, route: str, status: int) -> None:
        key = (route, status)
        counts = self._counts
        if key in counts:
            counts[key] += 1
        else:
            self._created[key] = time.time()
            counts[key] = 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "cio_relay_http_requests", "Ingestion API answers", labels=["route", "status"]
        )
        for (route, status), count in list(self._counts.items()):
            created = self._created[(route, status)]
            family.add_metric([route, str(status)], float(count), created=created)
        yield family


class Metrics:
    """The relay's Prometheus series; ``subscribe(hooks)`` wires them to delivery."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.enqueued = Counter(
            "cio_relay_operations_enqueued",
            "Operations written to the outbox",
            ["kind"],
            registry=r,
        )
        self.delivered = Counter(
            "cio_relay_operations_delivered",
            "Operations Customer.io accepted",
            ["kind"],
            registry=r,
        )
        self.retried = Counter(
            "cio_relay_operations_retried",
            "Delivery attempts scheduled again",
            ["kind"],
            registry=r,
        )
        self.dead = Counter(
            "cio_relay_operations_dead_lettered",
            "Operations moved to the dead-letter queue",
            ["kind", "reason"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "cio_relay_delivery_latency_seconds",
            "Seconds from enqueue to accepted by Customer.io",
            ["kind"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "cio_relay_customerio_requests",
            "Requests to Customer.io by endpoint and status ('error': no answer)",
            ["api", "endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "cio_relay_customerio_request_duration_seconds",
            "Customer.io request latency",
            ["api", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_wait = Histogram(
            "cio_relay_rate_limiter_wait_seconds",
            "Time a send waited on the rate limiter",
            ["api"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "cio_relay_webhooks",
            "Reporting webhooks by metric and result",
            ["metric", "result"],
            registry=r,
        )
        self.storage_errors = Counter(
            "cio_relay_storage_errors",
            "Outbox calls of the dispatcher that failed and are retried",
            ["operation", "error"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "cio_relay_worker_restarts",
            "Delivery workers restarted after they stopped",
            registry=r,
        )
        self.region_mismatch = Gauge(
            "cio_relay_region_mismatch",
            "1 while delivery to an API family is paused: the account is in another region",
            ["api"],
            registry=r,
        )
        for api in ("track", "app"):  # present from the start, so an alert sees a 0 first
            self.region_mismatch.labels(api).set(0)
        self.connections_refused = Counter(
            "cio_relay_http_connections_refused",
            "Connections closed at a per-connection limit of the HTTP server",
            ["limit"],
            registry=r,
        )
        self.bigquery_loads = Counter(
            "cio_relay_bigquery_loads",
            "Lake days sent to BigQuery: loaded, or failed with a reason",
            ["result", "reason"],
            registry=r,
        )
        self.http_requests = AnswerCounts()
        r.register(self.http_requests)
        # Label lookups take a lock; the hot paths keep their children here instead.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- wiring -------------------------------------------------------------------------------

    def subscribe(self, hooks: Hooks) -> None:
        """Count what the relay and its dispatcher report through ``hooks``."""
        hooks.on_enqueued(self.on_enqueued)
        hooks.on_delivered(self.on_delivered)
        hooks.on_retry(self.on_retry)
        hooks.on_dead(self.on_dead)
        hooks.on_request(self.on_request)
        hooks.on_rate_wait(self.on_rate_wait)
        hooks.on_storage_error(self.on_storage_error)
        hooks.on_region_mismatch(self.on_region_mismatch)
        hooks.on_region_resolved(self.on_region_resolved)

    def watch_outbox(self, outbox: Outbox) -> None:
        """Report ``outbox``'s depth by state at every scrape."""
        self.registry.register(OutboxCollector(outbox))

    def watch_bigquery(self, summary: Callable[[], LoadSummary]) -> None:
        """Report the BigQuery load state (``LoadState.summary``) at every scrape."""
        self.registry.register(BigQueryCollector(summary))

    # --- hook handlers ------------------------------------------------------------------------

    def on_enqueued(self, op: Operation) -> None:
        self._child(self.enqueued, op.kind.value).inc()

    def on_delivered(self, op: Operation, latency: float) -> None:
        kind = op.kind.value
        self._child(self.delivered, kind).inc()
        self._child(self.delivery_latency, kind).observe(max(latency, 0.0))

    def on_retry(self, op: Operation, error: str, delay: float) -> None:
        self._child(self.retried, op.kind.value).inc()

    def on_dead(self, op: Operation, reason: str, detail: str) -> None:
        self._child(self.dead, op.kind.value, reason).inc()

    def on_request(self, api: str, endpoint: str, status: int | None, seconds: float) -> None:
        endpoint = normalise_endpoint(endpoint)
        self._child(self.requests, api, endpoint, "error" if status is None else str(status)).inc()
        self._child(self.request_seconds, api, endpoint).observe(seconds)

    def on_rate_wait(self, api: str, seconds: float) -> None:
        self._child(self.rate_wait, api).observe(seconds)

    def on_storage_error(self, operation: str, exc: BaseException) -> None:
        self._child(self.storage_errors, operation, type(exc).__name__).inc()

    def on_region_mismatch(self, api: str, detail: str) -> None:
        self._child(self.region_mismatch, api).set(1)

    def on_region_resolved(self, api: str) -> None:
        self._child(self.region_mismatch, api).set(0)

    def on_webhook(self, metric: str, result: str) -> None:
        """One reporting webhook: ``result`` is accepted, duplicate, quarantined, refused ..."""
        self._child(self.webhooks, metric or "unknown", result).inc()

    def on_bigquery_load(self, result: DayResult) -> None:
        """The BigQuery loader's ``on_result``: a day loaded or failed (unchanged ones aside)."""
        if result.outcome != "unchanged":
            self._child(self.bigquery_loads, result.outcome, result.reason or "").inc()

    def on_connection_refused(self, limit: str) -> None:
        self._child(self.connections_refused, limit).inc()

    def on_http(self, route: str, status: int) -> None:
        self.http_requests.count(route, status)

    # --- exposition ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format; asks the outbox for its depth (blocking: run it off-loop)."""
        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's current value (tests, the dashboard)."""
        return self.registry.get_sample_value(name, labels or {})
