"""Observability: Prometheus metrics, structured JSON logs, the throughput ring and tracing.

Everything here subscribes to the delivery ``Hooks`` (``on_enqueued``, ``on_delivered``,
``on_retry``, ``on_dead``, ``on_request``, ``on_rate_wait``): nothing lives inside the dispatcher
loop, and a failing observer never breaks delivery.
"""

from cio_relay.observability.logs import (
    SecretScrubber,
    bind_request_id,
    configure_logging,
    get_logger,
    log_delivery_events,
)
from cio_relay.observability.metrics import Metrics, normalise_endpoint
from cio_relay.observability.throughput import Minute, ThroughputRing
from cio_relay.observability.tracing import Tracing, tracing_available

__all__ = [
    "Metrics",
    "Minute",
    "SecretScrubber",
    "ThroughputRing",
    "Tracing",
    "bind_request_id",
    "configure_logging",
    "get_logger",
    "log_delivery_events",
    "normalise_endpoint",
    "tracing_available",
]
