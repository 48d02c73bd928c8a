"""Small helpers for the emulator tests: clients with the emulator's default credentials.

Every client shares one SSL context: building one per client (httpx's default) loads the CA
bundle each time and costs tens of milliseconds per test.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from cio_relay.emulator import EmulatorServer

__all__ = ["app_client", "inspect", "plain_client", "track_client"]

_SSL = ssl.create_default_context()


def plain_client(server: EmulatorServer, **kwargs: Any) -> httpx.Client:
    """An httpx client for ``server`` with no credentials."""
    kwargs.setdefault("timeout", 10)
    return httpx.Client(base_url=server.url, verify=_SSL, **kwargs)


def track_client(server: EmulatorServer, **kwargs: Any) -> httpx.Client:
    """An httpx client for the Track API with the server's Basic credentials."""
    return plain_client(server, auth=(server.config.site_id, server.config.track_api_key), **kwargs)


def app_client(server: EmulatorServer, **kwargs: Any) -> httpx.Client:
    """An httpx client for the App API with the server's Bearer key."""
    headers = {"Authorization": f"Bearer {server.config.app_api_key}"}
    return plain_client(server, headers=headers, **kwargs)


def inspect(server: EmulatorServer, path: str, **params: Any) -> Any:
    """GET /_emulator/<path> over HTTP, as JSON."""
    with plain_client(server) as client:
        response = client.get(f"/_emulator/{path}", params=params)
    response.raise_for_status()
    return response.json()
