"""The I/O shells the four clients share: one exchange over httpx, sync and async.

Each shell sends a prepared request, follows the single redirect ``core.redirect_target``
allows, and hands the answer to ``core.classify_response``. Everything else is in ``core``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from cio_relay.errors import ConfigError

from .core import (
    ApiName,
    HttpRequest,
    WriteProgress,
    base_url_for,
    classify_response,
    classify_transport_error,
    prepare,
    redirect_target,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "AsyncShell",
    "Exchange",
    "SyncShell",
    "Target",
    "http_options",
    "require",
]

log = logging.getLogger("cio_relay.customerio")

#: Pooled connections per client; the dispatcher keeps about 8 requests in flight.
DEFAULT_MAX_CONNECTIONS = 10

Exchange = tuple[int, httpx.Headers, bytes]


def require(value: str | None, name: str) -> str:
    """``value`` stripped (keys pasted from files often end in a newline); ConfigError if empty."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} is not set")
    return value.strip()


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client sends and how it authenticates. Secrets stay out of the repr."""

    api: ApiName
    region: str
    base_url: str
    authorization: str = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)

    @classmethod
    def create(
        cls,
        api: ApiName,
        region: str,
        base_url: str | None,
        authorization: str,
        secrets: tuple[str, ...],
    ) -> Target:
        return cls(api, region, base_url_for(api, region, base_url), authorization, secrets)

    def prepare(self, request: Any = None, **pieces: Any) -> HttpRequest:
        return prepare(request, base_url=self.base_url, authorization=self.authorization, **pieces)

    def describe(self) -> str:
        return f"region={self.region!r}, base_url={self.base_url!r}"

    def classify(self, prepared: HttpRequest, answer: Exchange) -> Exchange:
        status, headers, body = answer
        classify_response(
            status,
            headers,
            body,
            endpoint=prepared.endpoint,
            region=self.region,
            secrets=self.secrets,
        )
        return answer

    def redirect(self, prepared: HttpRequest, answer: Exchange) -> HttpRequest | None:
        status, headers, _ = answer
        target = redirect_target(
            status, headers, api=self.api, request_url=prepared.url, base_url=self.base_url
        )
        if target is None:
            return None
        log.warning(
            "%s redirected (%d) to %s; following once. Check CUSTOMERIO_REGION.",
            prepared.endpoint,
            status,
            urlsplit(target).hostname,
        )
        return prepared.redirected(target)


def http_options(
    timeout: float | httpx.Timeout, max_connections: int, transport: Any
) -> Mapping[str, Any]:
    """What both httpx clients are built with: pooled, timed out, never following redirects."""
    if max_connections < 1:
        raise ConfigError(f"max_connections must be at least 1, not {max_connections}")
    return {
        "timeout": timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        "transport": transport,
        "follow_redirects": False,
    }


class SyncShell:
    def __init__(self, target: Target, http: httpx.Client) -> None:
        self.target = target
        self.http = http

    def exchange(self, prepared: HttpRequest) -> Exchange:
        progress = WriteProgress()
        request = self.http.build_request(
            prepared.method,
            prepared.url,
            headers=prepared.headers,
            content=prepared.content,
            extensions={"trace": progress.record},
        )
        try:
            response = self.http.send(request)
        except httpx.TransportError as exc:
            raise classify_transport_error(
                exc,
                endpoint=prepared.endpoint,
                written=progress.state,
                secrets=self.target.secrets,
            ) from None
        return response.status_code, response.headers, response.content

    def call(self, prepared: HttpRequest) -> Exchange:
        """Send, follow the one allowed redirect, raise for anything but a 2xx."""
        answer = self.exchange(prepared)
        redirected = self.target.redirect(prepared, answer)
        if redirected is not None:
            prepared, answer = redirected, self.exchange(redirected)
        return self.target.classify(prepared, answer)

    def close(self) -> None:
        self.http.close()


class AsyncShell:
    def __init__(self, target: Target, http: httpx.AsyncClient) -> None:
        self.target = target
        self.http = http

    async def exchange(self, prepared: HttpRequest) -> Exchange:
        progress = WriteProgress()
        request = self.http.build_request(
            prepared.method,
            prepared.url,
            headers=prepared.headers,
            content=prepared.content,
            extensions={"trace": progress.arecord},
        )
        try:
            response = await self.http.send(request)
        except httpx.TransportError as exc:
            raise classify_transport_error(
                exc,
                endpoint=prepared.endpoint,
                written=progress.state,
                secrets=self.target.secrets,
            ) from None
        return response.status_code, response.headers, response.content

    async def call(self, prepared: HttpRequest) -> Exchange:
        """Send, follow the one allowed redirect, raise for anything but a 2xx."""
        answer = await self.exchange(prepared)
        redirected = self.target.redirect(prepared, answer)
        if redirected is not None:
            prepared, answer = redirected, await self.exchange(redirected)
        return self.target.classify(prepared, answer)

    async def aclose(self) -> None:
        await self.http.aclose()
