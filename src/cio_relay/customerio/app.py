"""``AppClient`` and ``AsyncAppClient``: the App API (transactional sends, broadcast triggers,
and the reads a sync needs).

The sends are NOT idempotent at Customer.io: a send that fails ambiguously (``AmbiguousError``:
written, then no answer) may have gone out, so the clients never retry anything themselves; the
dispatcher decides (design.md contract 2). The reads (``broadcast_trigger``,
``broadcast_trigger_errors``, ``customers_by_email``, ``customer_attributes``; see
``app_reads``) are made directly, never through the outbox.

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
from cio_relay.errors import ConfigError, PermanentError, ValidationError
from cio_relay.operations import Api, PersonRef, Request

from . import app_reads
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

    def _get(self, path: str) -> HttpRequest:
        return self._target.prepare(method="GET", path=path)


def _as_object(body: bytes) -> dict[str, Any]:
    """The JSON object answered; {} when the 2xx body is empty or not an object (the call
    succeeded either way, so this must not raise)."""
    parsed = parse_json(body)
    return parsed if isinstance(parsed, dict) else {}


def _is_not_found(exc: PermanentError) -> bool:
    """A 404 to a person's lookup: there is no such person, an answer rather than a failure."""
    return exc.status == 404


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

    def send_whatsapp(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        to: str,
        message_data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/whatsapp``; ``options`` as ``Relay.send_whatsapp`` takes them."""
        op = ops.send_whatsapp(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            to=to,
            message_data=message_data,
            **options,
        )
        return self.send(op.v1_request())

    def send_in_app(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/in_app``; ``options`` as ``Relay.send_in_app`` takes them."""
        op = ops.send_in_app(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **options,
        )
        return self.send(op.v1_request())

    def send_inbox_message(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/inbox_message``; ``options`` as ``Relay.send_inbox_message``."""
        op = ops.send_inbox_message(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **options,
        )
        return self.send(op.v1_request())

    def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> dict[str, Any]:
        """``POST /v1/campaigns/{id}/triggers`` with at most one audience (``ids``, ``emails``,
        ``recipients``, ``per_user_data``, ``data_file_url``); returns ``{"id": trigger_id}``."""
        op = ops.trigger_broadcast(broadcast_id, data=data, **audience)
        return self.send(op.v1_request())

    # --- reads (app_reads) ----------------------------------------------------------------

    def broadcast_trigger(self, broadcast_id: int | str, trigger_id: int | str) -> dict[str, Any]:
        """A trigger's status: ``{"id", "broadcast_id", "created_at", "processed_at"}``."""
        path = app_reads.broadcast_trigger_path(broadcast_id, trigger_id)
        return self._read(path)

    def broadcast_trigger_errors(
        self,
        broadcast_id: int | str,
        trigger_id: int | str,
        *,
        start: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of a trigger's errors, as answered; pass its ``next`` as ``start``."""
        path = app_reads.broadcast_trigger_errors_path(
            broadcast_id, trigger_id, start=start, limit=limit
        )
        return self._read(path)

    def customers_by_email(self, email: str) -> list[dict[str, Any]]:
        """The people with this email address (``results``: ``id``, ``email``, ``cio_id``);
        empty when there are none."""
        answer = self._read(app_reads.customers_by_email_path(email))
        results = answer.get("results")
        return (
            [found for found in results if isinstance(found, dict)]
            if isinstance(results, list)
            else []
        )

    def customer_attributes(self, person: PersonRef) -> dict[str, Any] | None:
        """A person's profile as answered (``{"customer": {"attributes", "devices", ...}}``),
        or None when there is no such person. ``person`` is an id or ``{"email" | "phone" |
        "cio_id": ...}``."""
        try:
            return self._read(app_reads.customer_attributes_path(person))
        except PermanentError as exc:
            if _is_not_found(exc):
                return None
            raise

    def _read(self, path: str) -> dict[str, Any]:
        _, _, body = self._shell.call(self._get(path))
        return _as_object(body)

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

    async def send_whatsapp(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        to: str,
        message_data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/whatsapp``; ``options`` as ``Relay.send_whatsapp`` takes them."""
        op = ops.send_whatsapp(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            to=to,
            message_data=message_data,
            **options,
        )
        return await self.send(op.v1_request())

    async def send_in_app(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/in_app``; ``options`` as ``Relay.send_in_app`` takes them."""
        op = ops.send_in_app(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **options,
        )
        return await self.send(op.v1_request())

    async def send_inbox_message(
        self,
        *,
        identifiers: Mapping[str, str],
        transactional_message_id: str | int,
        message_data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /v1/send/inbox_message``; ``options`` as ``Relay.send_inbox_message``."""
        op = ops.send_inbox_message(
            identifiers=identifiers,
            transactional_message_id=transactional_message_id,
            message_data=message_data,
            **options,
        )
        return await self.send(op.v1_request())

    async def trigger_broadcast(
        self, broadcast_id: int | str, *, data: Mapping[str, Any] | None = None, **audience: Any
    ) -> dict[str, Any]:
        """``POST /v1/campaigns/{id}/triggers`` with at most one audience (``ids``, ``emails``,
        ``recipients``, ``per_user_data``, ``data_file_url``); returns ``{"id": trigger_id}``."""
        op = ops.trigger_broadcast(broadcast_id, data=data, **audience)
        return await self.send(op.v1_request())

    # --- reads (app_reads) ----------------------------------------------------------------

    async def broadcast_trigger(
        self, broadcast_id: int | str, trigger_id: int | str
    ) -> dict[str, Any]:
        """A trigger's status: ``{"id", "broadcast_id", "created_at", "processed_at"}``."""
        path = app_reads.broadcast_trigger_path(broadcast_id, trigger_id)
        return await self._read(path)

    async def broadcast_trigger_errors(
        self,
        broadcast_id: int | str,
        trigger_id: int | str,
        *,
        start: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of a trigger's errors, as answered; pass its ``next`` as ``start``."""
        path = app_reads.broadcast_trigger_errors_path(
            broadcast_id, trigger_id, start=start, limit=limit
        )
        return await self._read(path)

    async def customers_by_email(self, email: str) -> list[dict[str, Any]]:
        """The people with this email address (``results``: ``id``, ``email``, ``cio_id``);
        empty when there are none."""
        answer = await self._read(app_reads.customers_by_email_path(email))
        results = answer.get("results")
        return (
            [found for found in results if isinstance(found, dict)]
            if isinstance(results, list)
            else []
        )

    async def customer_attributes(self, person: PersonRef) -> dict[str, Any] | None:
        """A person's profile as answered (``{"customer": {"attributes", "devices", ...}}``),
        or None when there is no such person. ``person`` is an id or ``{"email" | "phone" |
        "cio_id": ...}``."""
        try:
            return await self._read(app_reads.customer_attributes_path(person))
        except PermanentError as exc:
            if _is_not_found(exc):
                return None
            raise

    async def _read(self, path: str) -> dict[str, Any]:
        _, _, body = await self._shell.call(self._get(path))
        return _as_object(body)

    async def aclose(self) -> None:
        await self._shell.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
