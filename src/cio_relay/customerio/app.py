"""``AppClient`` and ``AsyncAppClient``: the App API (transactional sends, broadcast triggers).

These calls are NOT idempotent at Customer.io: a send that fails ambiguously (``AmbiguousError``:
written, then no answer) may have gone out, so the clients never retry anything themselves; the
dispatcher decides (design.md contract 2).

    with AppClient(app_api_key) as app:
        sent = app.send_email(to="ada@example.com", transactional_message_id="welcome",
                              identifiers={"id": "user-1"}, message_data={"name": "Ada"})
        sent["delivery_id"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import httpx

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.errors import ConfigError, ValidationError
from cio_relay.operations import Api, Request

from ._shell import DEFAULT_MAX_CONNECTIONS, AsyncShell, SyncShell, Target, http_options, require
from .core import HttpRequest, app_authorization, parse_json

__all__ = ["AppClient", "AsyncAppClient"]

_APP_APIS = frozenset({Api.TRANSACTIONAL, Api.BROADCAST})


class _AppBase:
    """What the sync and async App clients share: configuration, repr, request building."""

    def __init__(self, api_key: str, *, region: str = "us", base_url: str | None = None) -> None:
        api_key = require(api_key, "api_key (CUSTOMERIO_APP_API_KEY)")
        self._target = Target.create(
            "app", region, base_url, app_authorization(api_key), (api_key,)
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        """A client from ``Settings`` (``CUSTOMERIO_APP_API_KEY``, ``CUSTOMERIO_REGION``,
        ``CUSTOMERIO_APP_URL``, ``CIO_RELAY_HTTP_TIMEOUT``)."""
        if settings.app_api_key is None:
            raise ConfigError("CUSTOMERIO_APP_API_KEY is not set; the App API needs it")
        options.setdefault("region", settings.region)
        options.setdefault("base_url", settings.app_url)
        options.setdefault("timeout", settings.http_timeout)
        return cls(settings.app_api_key.get_secret_value(), **options)

    @property
    def base_url(self) -> str:
        return self._target.base_url

    @property
    def configured_region(self) -> str:
        return self._target.region

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target.describe()})"

    def _prepared(self, request: Request) -> HttpRequest:
        if request.api not in _APP_APIS:
            raise ValidationError(
                "request.api", f"an App client sends App API requests, not {request.api.value}"
            )
        return self._target.prepare(request)


def _as_object(body: bytes) -> dict[str, Any]:
    """The JSON object answered; {} when the 2xx body is empty or not an object (the call
    succeeded either way, so this must not raise)."""
    parsed = parse_json(body)
    return parsed if isinstance(parsed, dict) else {}


class AppClient(_AppBase):
    """The App API over a pooled ``httpx.Client``. Raises ``RetryableError``,
    ``PermanentError`` or ``AmbiguousError`` when a call fails, and ``LimitExceeded`` /
    ``ValidationError`` before sending what Customer.io would refuse."""

    def __init__(
        self,
        api_key: str,
        *,
        region: str = "us",
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(api_key, region=region, base_url=base_url)
        http = httpx.Client(**http_options(timeout, max_connections, transport))
        self._shell = SyncShell(self._target, http)

    def send(self, request: Request) -> dict[str, Any]:
        """Send one App API ``Request``; return the JSON object answered."""
        _, _, body = self._shell.call(self._prepared(request))
        return _as_object(body)

    def send_email(
        self,
        *,
        to: str | list[str],
        identifiers: Mapping[str, str] | None = None,
        transactional_message_id: str | int | None = None,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/email``; returns ``{"delivery_id": ..., "queued_at": ...}``."""
        op = ops.send_email(
            to=to,
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return self.send(op.v1_request())

    def send_push(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/push``; returns ``{"delivery_id": ..., "queued_at": ...}``."""
        op = ops.send_push(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return self.send(op.v1_request())

    def send_sms(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/sms``; returns ``{"delivery_id": ..., "queued_at": ...}``."""
        op = ops.send_sms(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return self.send(op.v1_request())

    def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> dict[str, Any]:
        """``POST /v1/campaigns/{id}/triggers`` with at most one audience (``ids``, ``emails``,
        ``recipients``, ``per_user_data``, ``data_file_url``); returns ``{"id": trigger_id}``."""
        op = ops.trigger_broadcast(broadcast_id, data=data, **audience)
        return self.send(op.v1_request())

    def close(self) -> None:
        self._shell.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncAppClient(_AppBase):
    """``AppClient`` over a pooled ``httpx.AsyncClient``: the same methods, as coroutines."""

    def __init__(
        self,
        api_key: str,
        *,
        region: str = "us",
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(api_key, region=region, base_url=base_url)
        http = httpx.AsyncClient(**http_options(timeout, max_connections, transport))
        self._shell = AsyncShell(self._target, http)

    async def send(self, request: Request) -> dict[str, Any]:
        """Send one App API ``Request``; return the JSON object answered."""
        _, _, body = await self._shell.call(self._prepared(request))
        return _as_object(body)

    async def send_email(
        self,
        *,
        to: str | list[str],
        identifiers: Mapping[str, str] | None = None,
        transactional_message_id: str | int | None = None,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/email``; returns ``{"delivery_id": ..., "queued_at": ...}``."""
        op = ops.send_email(
            to=to,
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return await self.send(op.v1_request())

    async def send_push(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/push``; returns ``{"delivery_id": ..., "queued_at": ...}``."""
        op = ops.send_push(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return await self.send(op.v1_request())

    async def send_sms(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/sms``; returns ``{"delivery_id": ..., "queued_at": ...}``."""
        op = ops.send_sms(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **fields,
        )
        return await self.send(op.v1_request())

    async def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> dict[str, Any]:
        """``POST /v1/campaigns/{id}/triggers`` with at most one audience (``ids``, ``emails``,
        ``recipients``, ``per_user_data``, ``data_file_url``); returns ``{"id": trigger_id}``."""
        op = ops.trigger_broadcast(broadcast_id, data=data, **audience)
        return await self.send(op.v1_request())

    async def aclose(self) -> None:
        await self._shell.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
