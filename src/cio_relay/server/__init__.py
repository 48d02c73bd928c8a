"""The HTTP service: ingestion API, health, metrics, the webhook route and the dashboard.

``create_app(settings)`` returns the ASGI app; ``cio-relay run`` serves it with the workers.
"""

from cio_relay.server.app import PUBLIC_PATHS, Service, create_app, idempotency_path_for

__all__ = ["PUBLIC_PATHS", "Service", "create_app", "idempotency_path_for"]
