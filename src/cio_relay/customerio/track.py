"""``TrackClient`` and ``AsyncTrackClient``: the Track API (v1 operations, v2 batch).

Each operation method builds its ``Operation`` with the builders in ``cio_relay.operations`` (so
the documented limits are checked before anything is sent) and sends its v1 request. The two
classes mirror each other method for method; only ``close``/``aclose`` differ, as in httpx.

    with TrackClient(site_id, track_api_key, region="eu") as track:
        track.identify("user-1", email="ada@example.com")
        op_id = track.track("user-1", "order_completed", {"total": 42})
        result = track.send_batch([op.v2_item() for op in operations])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.errors import ConfigError, ValidationError
from cio_relay.operations import AnonymousEventType, Api, PersonRef, Request

from ._shell import DEFAULT_MAX_CONNECTIONS, AsyncShell, SyncShell, Target, http_options, require
from .batch import (
    BATCH_PATH,
    BatchResult,
    encode_batch,
    encode_batch_raw,
    parse_batch_response,
)
from .core import HttpRequest, parse_json, track_authorization

__all__ = ["AsyncTrackClient", "TrackClient"]

REGION_PATH = "/api/v1/accounts/region"
BatchItem = Mapping[str, Any] | bytes


class _TrackBase:
    """What the sync and async Track clients share: configuration, repr, request building."""

    def __init__(
        self,
        site_id: str,
        api_key: str,
        *,
        region: str = "us",
        base_url: str | None = None,
    ) -> None:
        site_id = require(site_id, "site_id (CUSTOMERIO_SITE_ID)")
        api_key = require(api_key, "api_key (CUSTOMERIO_TRACK_API_KEY)")
        authorization = track_authorization(site_id, api_key)
        self._target = Target.create(
            "track", region, base_url, authorization, (api_key, authorization.split(" ", 1)[1])
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        """A client from ``Settings`` (``CUSTOMERIO_SITE_ID``, ``CUSTOMERIO_TRACK_API_KEY``,
        ``CUSTOMERIO_REGION``, ``CUSTOMERIO_TRACK_URL``, ``CIO_RELAY_HTTP_TIMEOUT``)."""
        if not settings.site_id:
            raise ConfigError("CUSTOMERIO_SITE_ID is not set; the Track API needs the site id")
        if settings.track_api_key is None:
            raise ConfigError("CUSTOMERIO_TRACK_API_KEY is not set; the Track API needs it")
        options.setdefault("region", settings.region)
        options.setdefault("base_url", settings.track_url)
        options.setdefault("timeout", settings.http_timeout)
        return cls(settings.site_id, settings.track_api_key.get_secret_value(), **options)

    @property
    def base_url(self) -> str:
        return self._target.base_url

    @property
    def configured_region(self) -> str:
        return self._target.region

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.describe()})"

    def _prepared(self, request: Request) -> HttpRequest:
        if request.api is not Api.TRACK:
            raise ValidationError(
                "request.api", f"a Track client sends Track requests, not {request.api.value}"
            )
        return self._target.prepare(request)

    def _batch_request(self, content: bytes) -> HttpRequest:
        return self._target.prepare(method="POST", path=BATCH_PATH, content=content)

    def _batch_result(self, answer: tuple[int, httpx.Headers, bytes], count: int) -> BatchResult:
        status, headers, body = answer
        return parse_batch_response(
            status, headers, body, count=count, secrets=self._target.secrets
        )


class TrackClient(_TrackBase):
    """The Track API over a pooled ``httpx.Client``. Raises ``RetryableError``,
    ``PermanentError`` or ``AmbiguousError`` (``cio_relay.errors``) when a call fails, and
    ``LimitExceeded``/``ValidationError`` before sending what Customer.io would refuse."""

    def __init__(
        self,
        site_id: str,
        api_key: str,
        *,
        region: str = "us",
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(site_id, api_key, region=region, base_url=base_url)
        http = httpx.Client(**http_options(timeout, max_connections, transport))
        self._shell = SyncShell(self._target, http)

    # --- generic ------------------------------------------------------------------------------

    def send(self, request: Request) -> Any:
        """Send one Track ``Request``; return the parsed JSON answer (None when empty)."""
        _, _, body = self._shell.call(self._prepared(request))
        return parse_json(body)

    def send_batch(self, items: Sequence[BatchItem]) -> BatchResult:
        """``POST /api/v2/batch`` with ``items`` (v2 items, as mappings or serialised bytes)."""
        if not items:
            return BatchResult(0)
        answer = self._shell.call(self._batch_request(encode_batch(items)))
        return self._batch_result(answer, len(items))

    def send_batch_raw(self, items: Sequence[bytes]) -> BatchResult:
        """``send_batch`` for items already serialised with orjson: no re-encoding."""
        if not items:
            return BatchResult(0)
        answer = self._shell.call(self._batch_request(encode_batch_raw(items)))
        return self._batch_result(answer, len(items))

    def region(self) -> Any:
        """``GET /api/v1/accounts/region``: the account's region as Customer.io reports it."""
        return self.send(Request(Api.TRACK, "GET", REGION_PATH))

    # --- operations ---------------------------------------------------------------------------

    def identify(self, person: PersonRef, /, **attributes: Any) -> None:
        """Create or update a person (``"id"``, or ``{"email": ...}``/``{"cio_id": ...}``)."""
        self.send(ops.identify(person, attributes).v1_request())

    def delete(self, person: PersonRef) -> None:
        self.send(ops.delete(person).v1_request())

    def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        """Send an event; return its op id, sent as the event's ``id`` (a ULID unless given),
        which de-duplicates it at Customer.io."""
        op = ops.track(person, name, data, timestamp=timestamp, op_id=op_id)
        self.send(op.v1_request())
        return op.op_id

    def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_type: AnonymousEventType = "event",
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = ops.track_anonymous(
            anonymous_id, name, data, event_type=event_type, timestamp=timestamp, op_id=op_id
        )
        self.send(op.v1_request())
        return op.op_id

    def page(
        self,
        person: PersonRef,
        url: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = ops.page(person, url, data, timestamp=timestamp, op_id=op_id)
        self.send(op.v1_request())
        return op.op_id

    def screen(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = ops.screen(person, name, data, timestamp=timestamp, op_id=op_id)
        self.send(op.v1_request())
        return op.op_id

    def add_device(
        self,
        person: PersonRef,
        token: str,
        platform: str,
        *,
        last_used: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        op = ops.add_device(person, token, platform, last_used=last_used, attributes=attributes)
        self.send(op.v1_request())

    def delete_device(self, person: PersonRef, token: str) -> None:
        self.send(ops.delete_device(person, token).v1_request())

    def suppress(self, person: PersonRef) -> None:
        self.send(ops.suppress(person).v1_request())

    def unsuppress(self, person: PersonRef) -> None:
        self.send(ops.unsuppress(person).v1_request())

    def merge(self, primary: PersonRef, secondary: PersonRef) -> None:
        """Merge ``secondary`` into ``primary``; the secondary is deleted (irreversible)."""
        self.send(ops.merge(primary, secondary).v1_request())

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._shell.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncTrackClient(_TrackBase):
    """``TrackClient`` over a pooled ``httpx.AsyncClient``: the same methods, as coroutines."""

    def __init__(
        self,
        site_id: str,
        api_key: str,
        *,
        region: str = "us",
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(site_id, api_key, region=region, base_url=base_url)
        http = httpx.AsyncClient(**http_options(timeout, max_connections, transport))
        self._shell = AsyncShell(self._target, http)

    # --- generic ------------------------------------------------------------------------------

    async def send(self, request: Request) -> Any:
        """Send one Track ``Request``; return the parsed JSON answer (None when empty)."""
        _, _, body = await self._shell.call(self._prepared(request))
        return parse_json(body)

    async def send_batch(self, items: Sequence[BatchItem]) -> BatchResult:
        """``POST /api/v2/batch`` with ``items`` (v2 items, as mappings or serialised bytes)."""
        if not items:
            return BatchResult(0)
        answer = await self._shell.call(self._batch_request(encode_batch(items)))
        return self._batch_result(answer, len(items))

    async def send_batch_raw(self, items: Sequence[bytes]) -> BatchResult:
        """``send_batch`` for items already serialised with orjson: no re-encoding."""
        if not items:
            return BatchResult(0)
        answer = await self._shell.call(self._batch_request(encode_batch_raw(items)))
        return self._batch_result(answer, len(items))

    async def region(self) -> Any:
        """``GET /api/v1/accounts/region``: the account's region as Customer.io reports it."""
        return await self.send(Request(Api.TRACK, "GET", REGION_PATH))

    # --- operations ---------------------------------------------------------------------------

    async def identify(self, person: PersonRef, /, **attributes: Any) -> None:
        """Create or update a person (``"id"``, or ``{"email": ...}``/``{"cio_id": ...}``)."""
        await self.send(ops.identify(person, attributes).v1_request())

    async def delete(self, person: PersonRef) -> None:
        await self.send(ops.delete(person).v1_request())

    async def track(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        """Send an event; return its op id, sent as the event's ``id`` (a ULID unless given),
        which de-duplicates it at Customer.io."""
        op = ops.track(person, name, data, timestamp=timestamp, op_id=op_id)
        await self.send(op.v1_request())
        return op.op_id

    async def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_type: AnonymousEventType = "event",
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = ops.track_anonymous(
            anonymous_id, name, data, event_type=event_type, timestamp=timestamp, op_id=op_id
        )
        await self.send(op.v1_request())
        return op.op_id

    async def page(
        self,
        person: PersonRef,
        url: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = ops.page(person, url, data, timestamp=timestamp, op_id=op_id)
        await self.send(op.v1_request())
        return op.op_id

    async def screen(
        self,
        person: PersonRef,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        op_id: str | None = None,
    ) -> str:
        op = ops.screen(person, name, data, timestamp=timestamp, op_id=op_id)
        await self.send(op.v1_request())
        return op.op_id

    async def add_device(
        self,
        person: PersonRef,
        token: str,
        platform: str,
        *,
        last_used: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        op = ops.add_device(person, token, platform, last_used=last_used, attributes=attributes)
        await self.send(op.v1_request())

    async def delete_device(self, person: PersonRef, token: str) -> None:
        await self.send(ops.delete_device(person, token).v1_request())

    async def suppress(self, person: PersonRef) -> None:
        await self.send(ops.suppress(person).v1_request())

    async def unsuppress(self, person: PersonRef) -> None:
        await self.send(ops.unsuppress(person).v1_request())

    async def merge(self, primary: PersonRef, secondary: PersonRef) -> None:
        """Merge ``secondary`` into ``primary``; the secondary is deleted (irreversible)."""
        await self.send(ops.merge(primary, secondary).v1_request())

    # --- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._shell.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
