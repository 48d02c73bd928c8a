"""``/healthz`` (alive), ``/readyz`` (able to do its job) and ``/metrics`` (Prometheus).

``/healthz`` and ``/readyz`` are public and say nothing secret: check names and ``ok`` or a short
failure class, never URLs, keys or error text. ``/metrics`` needs the bearer key unless
``CIO_RELAY_METRICS_PUBLIC`` is set (for a scraper on a private network); Prometheus sends the
key with ``authorization: {credentials: <key>}`` in its scrape config.

Readiness checks:
- ``outbox``: answers ``depth()`` and accepts an (empty) write;
- ``idempotency``: its table takes a write;
- ``workers``: the delivery task of this process is running and its outbox answers it: ``ok``,
  ``restarting`` (it stopped and is about to start again), ``stopped``, or ``unavailable:
  <error class>`` while the outbox fails under it (it waits and retries), ``checking region``
  while its start-up region check waits for Customer.io, ``paused: wrong region (<api families>)``
  while Customer.io places the account in another region than ``CUSTOMERIO_REGION`` (its
  operations stay in the outbox; delivery/region.py); ``disabled`` when the service runs without
  workers, which is not a failure;
- ``customerio``: the Track and App base URLs (Customer.io, or the emulator in sandbox mode)
  answer HTTP at all, any status; the answer is cached for ``UPSTREAM_CACHE_SECONDS`` so that a
  probe every second does not become a request every second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import httpx
from starlette.requests import Request
from starlette.responses import Response

from cio_relay.observability.metrics import CONTENT_TYPE, Metrics
from cio_relay.outbox.base import Outbox
from cio_relay.server.auth import ApiKeys
from cio_relay.server.idempotency import IdempotencyStore
from cio_relay.server.responses import json_response, unauthorized

__all__ = ["UPSTREAM_CACHE_SECONDS", "Health", "Readiness"]

UPSTREAM_CACHE_SECONDS = 10.0
_UPSTREAM_TIMEOUT = 2.0


class Readiness:
    """Runs the readiness checks; see the module docstring."""

    def __init__(
        self,
        outbox: Outbox,
        idempotency: IdempotencyStore,
        *,
        upstreams: Sequence[str] = (),
        workers: Callable[[], str] | None = None,
        extra: Mapping[str, Callable[[], object]] | None = None,
    ) -> None:
        """``extra``: more named checks; each passes when it returns without raising."""
        self.outbox = outbox
        self.idempotency = idempotency
        self.upstreams = tuple(dict.fromkeys(u.rstrip("/") for u in upstreams))
        self.workers = workers
        self.extra = dict(extra or {})
        self._upstream_result: tuple[float, str] | None = None
        self._client: httpx.AsyncClient | None = None

    async def check(self) -> dict[str, str]:
        outbox, idempotency, upstream, *extra = await asyncio.gather(
            asyncio.to_thread(self._check_outbox),
            asyncio.to_thread(self._check_idempotency),
            self._check_upstreams(),
            *(asyncio.to_thread(_passes, check) for check in self.extra.values()),
        )
        return {
            "outbox": outbox,
            "idempotency": idempotency,
            "workers": self._check_workers(),
            "customerio": upstream,
            **dict(zip(self.extra, extra, strict=True)),
        }

    def _check_outbox(self) -> str:
        try:
            self.outbox.depth()
            self.outbox.enqueue(())
        except Exception as exc:
            return f"failed: {type(exc).__name__}"
        return "ok"

    def _check_idempotency(self) -> str:
        try:
            self.idempotency.expire()
        except Exception as exc:
            return f"failed: {type(exc).__name__}"
        return "ok"

    def _check_workers(self) -> str:
        if self.workers is None:
            return "disabled"
        return self.workers()

    async def _check_upstreams(self) -> str:
        if not self.upstreams:
            return "disabled"
        now = time.monotonic()
        if self._upstream_result and now - self._upstream_result[0] < UPSTREAM_CACHE_SECONDS:
            return self._upstream_result[1]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=_UPSTREAM_TIMEOUT, follow_redirects=False)
        result = "ok"
        for url in self.upstreams:
            try:
                await self._client.get(url + "/")
            except httpx.HTTPError:
                result = "unreachable"
                break
        self._upstream_result = (now, result)
        return result

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _passes(check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return "ok"


class Health:
    """The three endpoints; ``/metrics`` asks the outbox for its depth off the event loop."""

    def __init__(
        self, readiness: Readiness, metrics: Metrics, keys: ApiKeys, *, metrics_public: bool
    ) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.keys = keys
        self.metrics_public = metrics_public

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        checks = await self.readiness.check()
        ready = all(value in ("ok", "disabled") for value in checks.values())
        return json_response(
            {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
        )

    async def metrics_text(self, request: Request) -> Response:
        if not self.metrics_public and (
            self.keys.from_authorization(request.headers.get("authorization")) is None
        ):
            return unauthorized()
        body = await asyncio.to_thread(self.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)
