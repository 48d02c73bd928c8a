"""The app factory: the whole HTTP service as one Starlette app.

``create_app(settings)`` wires the parts: the relay over the outbox, the group writer and the
idempotency store behind the ``/v1`` ingestion API, the user repository beside the outbox
(its ``/v1/users`` routes and two-way preferences: server/users.py), health and metrics, the
dashboard, the webhook receiver at ``/webhooks/customerio`` when one is given, and (in the ASGI
lifespan) the delivery worker as a background task, stopped gracefully at shutdown. The worker
is supervised: should it stop on its own (a bug; the outbox failing only makes it wait), it is
started again after a growing pause, and readiness says ``restarting`` meanwhile.

Starlette rather than FastAPI: the ingestion target is half a bare Starlette endpoint's rate,
which FastAPI's per-request dependency and model machinery alone would miss (docs/benchmarks.md,
issue 12). The schemas are still pydantic models (validation in Rust) and the OpenAPI document is
built from them (``server/openapi.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from cio_relay.backoff import growing_delays
from cio_relay.config import Settings
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.worker import Worker
from cio_relay.errors import ConfigError
from cio_relay.observability.logs import log_delivery_events
from cio_relay.observability.metrics import Metrics
from cio_relay.observability.throughput import ThroughputRing
from cio_relay.observability.tracing import Tracing
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.group_writer import GroupWriter
from cio_relay.relay import Relay
from cio_relay.server.auth import ApiKeys
from cio_relay.server.build import OperationBuilder
from cio_relay.server.dashboard import Dashboard
from cio_relay.server.health import Health, Readiness
from cio_relay.server.idempotency import IdempotencyStore
from cio_relay.server.ingest import MOUNT_PATH, Ingestion
from cio_relay.server.middleware import REQUEST_ID_HEADER, RequestIdMiddleware
from cio_relay.server.openapi import openapi_document
from cio_relay.server.responses import error_response, internal_error
from cio_relay.server.users import UserRoutes, UserSync
from cio_relay.server.webhooks import WebhookStack

__all__ = ["PUBLIC_PATHS", "Service", "create_app", "idempotency_path_for"]

log = logging.getLogger("cio_relay.server")

#: Routes anyone may call: health, the API description, the login form, and the webhook route
#: (which checks Customer.io's signature instead of a key). Everything else needs a key.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/dashboard/login", "/webhooks/customerio"}
)
_WORKER_STOP_GRACE = 30.0
#: Pauses before restarting a stopped worker: 1 s, doubling up to a minute; a worker that ran
#: longer than ``_WORKER_STABLE`` seconds before stopping starts over from 1 s.
_RESTART_FIRST, _RESTART_MOST, _WORKER_STABLE = 1.0, 60.0, 300.0


def idempotency_path_for(settings: Settings) -> str:
    """Beside a SQLite outbox (``outbox.db`` -> ``outbox-idempotency.db``), else in data_dir."""
    url = settings.outbox_url
    if url.startswith("memory://"):
        return ":memory:"
    scheme, separator, rest = url.partition("://")
    if not separator:
        path = Path(url)
    elif scheme.lower() == "sqlite" and rest.startswith("/"):
        path = Path(rest[1:])
    else:
        return str(settings.data_dir / "idempotency.db")
    return str(path.with_name(path.stem + "-idempotency.db"))


@dataclass
class Service:
    """Everything one app holds; ``app.state.service`` (tests and the CLI reach in here)."""

    settings: Settings
    relay: Relay
    hooks: Hooks
    keys: ApiKeys
    metrics: Metrics
    throughput: ThroughputRing
    tracing: Tracing
    idempotency: IdempotencyStore
    ingestion: Ingestion
    users: UserSync
    readiness: Readiness
    worker: Worker | None
    webhooks: WebhookStack | None = None
    worker_task: asyncio.Task[Any] | None = None
    restarting: bool = False
    _stop: asyncio.Event | None = field(default=None, repr=False)

    @property
    def outbox(self) -> Outbox:
        return self.relay.outbox

    def workers_status(self) -> str:
        """Readiness of delivery: ``ok``, ``restarting``, ``stopped``, ``unavailable: <error
        class>`` while the outbox fails (the worker waits it out), or the worker's region state
        (``paused: wrong region (...)``, which also names why a restart is pending)."""
        if self.worker_task is None or self.worker_task.done():
            return "stopped"
        if self.worker is None:
            return "restarting"
        status = self.worker.health.status()
        return "restarting" if self.restarting and status == "ok" else status

    def start(self) -> None:
        """Start the background work: the webhook pipeline thread and the delivery worker."""
        if self.webhooks is not None:
            self.webhooks.start()
        if self.worker is None or self.worker_task is not None:
            return
        self._stop = asyncio.Event()
        self.worker_task = asyncio.create_task(
            self._supervise(self.worker, self._stop), name="cio-relay-worker"
        )
        self.worker_task.add_done_callback(_report_worker_exit)

    async def _supervise(self, worker: Worker, stop: asyncio.Event) -> None:
        """Run ``worker`` until ``stop``; start it again whenever it stops before that."""
        delays = growing_delays(_RESTART_FIRST, _RESTART_MOST)
        while not stop.is_set():
            started = time.monotonic()
            try:
                await worker.arun(stop)
            except ConfigError as refused:  # a setting to fix (the region): its one line says how
                log.error("the delivery worker cannot start: %s; it will be retried", refused)
            except Exception:
                log.exception("the delivery worker stopped; it will be restarted")
            if stop.is_set():
                return
            if time.monotonic() - started > _WORKER_STABLE:
                delays = growing_delays(_RESTART_FIRST, _RESTART_MOST)
            self.restarting = True
            self.metrics.worker_restarts.inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next(delays))
            self.restarting = False

    async def aclose(self) -> None:
        """Stop the worker (in-flight sends finish), flush writes, close files."""
        if self.worker_task is not None and self._stop is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.worker_task), _WORKER_STOP_GRACE)
        await self.ingestion.writer.aclose()
        if self.webhooks is not None:
            await asyncio.to_thread(self.webhooks.stop)
        await self.readiness.aclose()
        self.relay.close()
        self.idempotency.close()


def _report_worker_exit(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the delivery worker's supervisor stopped", exc_info=task.exception())


def create_app(
    settings: Settings,
    *,
    outbox: Outbox | None = None,
    hooks: Hooks | None = None,
    run_workers: bool = True,
    worker_options: Mapping[str, Any] | None = None,
    webhooks: bool = False,
    idempotency_path: str | Path | None = None,
    sandbox_url: str | None = None,
) -> Starlette:
    """The service as an ASGI app.

    ``outbox`` given: the caller closes it; else it is opened from ``settings.outbox_url`` and
    closed at shutdown. ``run_workers``: deliver in this process (the lifespan starts and stops
    the worker). ``webhooks``: serve ``/webhooks/customerio`` with the inbox, the pipeline and
    the lake (needs a webhook signing key; without one the route is left out with a warning).
    """
    service = _assemble(
        settings, outbox, hooks, run_workers, worker_options, idempotency_path, webhooks
    )
    stack = service.webhooks
    health = Health(
        service.readiness, service.metrics, service.keys, metrics_public=settings.metrics_public
    )
    dashboard = Dashboard(
        settings=settings,
        outbox=service.outbox,
        keys=service.keys,
        throughput=service.throughput,
        webhooks=stack.recent if stack is not None else None,
        funnel=stack.funnel if stack is not None else None,
        sandbox_url=sandbox_url,
    )
    document = orjson.dumps(openapi_document(webhooks=stack is not None))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes: list[BaseRoute] = [
        Mount(MOUNT_PATH, app=service.ingestion),  # first: the hot path is matched first
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *dashboard.routes(),
    ]
    if stack is not None:
        routes.append(Route("/webhooks/customerio", stack.app, methods=["POST"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await service.aclose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware, tracing=service.tracing)],
        # Exception: Starlette's error middleware answers an unexpected error with this (and
        # re-raises it for the server to log).
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.service = service
    return app


def _assemble(
    settings: Settings,
    outbox: Outbox | None,
    hooks: Hooks | None,
    run_workers: bool,
    worker_options: Mapping[str, Any] | None,
    idempotency_path: str | Path | None,
    webhooks: bool,
) -> Service:
    hooks = hooks or Hooks()
    metrics = Metrics()
    throughput = ThroughputRing()
    tracing = Tracing()
    metrics.subscribe(hooks)
    throughput.subscribe(hooks)
    tracing.subscribe(hooks)
    log_delivery_events(hooks)
    relay = Relay(settings, outbox=outbox, hooks=hooks)
    metrics.watch_outbox(relay.outbox)
    idempotency = IdempotencyStore(
        idempotency_path or idempotency_path_for(settings),
        retention=settings.idempotency_retention,
        durability=settings.outbox_durability,
    )
    keys = ApiKeys(key.get_secret_value() for key in settings.api_keys)
    users = UserSync.for_relay(relay)
    user_routes = UserRoutes(
        users=users, keys=keys, idempotency=idempotency, max_body=settings.api_max_body
    )
    ingestion = Ingestion(
        keys=keys,
        builder=OperationBuilder(settings),
        writer=GroupWriter(relay.guarded_outbox, idempotency),
        idempotency=idempotency,
        metrics=metrics,
        max_body=settings.api_max_body,
        answered=user_routes.answered(),
    )
    worker = relay.worker(**(worker_options or {})) if run_workers else None
    upstreams = (settings.track_base_url, settings.app_base_url) if run_workers else ()
    stack = (
        WebhookStack.from_settings(settings, relay, metrics, users=users.repository)
        if webhooks
        else None
    )
    readiness = Readiness(
        relay.outbox,
        idempotency,
        upstreams=upstreams,
        extra={"webhook_inbox": stack.inbox.counts} if stack is not None else None,
    )
    service = Service(
        settings=settings,
        relay=relay,
        hooks=hooks,
        keys=keys,
        metrics=metrics,
        throughput=throughput,
        tracing=tracing,
        idempotency=idempotency,
        ingestion=ingestion,
        users=users,
        readiness=readiness,
        worker=worker,
        webhooks=stack,
    )
    if run_workers:
        readiness.workers = service.workers_status
    return service


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, exc.detail, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    response = internal_error()
    # Starlette's error middleware answers outside the request-id middleware, which then sends
    # nothing more: the answer names the request itself.
    request_id = getattr(request.state, "request_id", None)
    if request_id is not None:
        response.raw_headers.append((REQUEST_ID_HEADER.encode(), request_id.encode("ascii")))
    return response
