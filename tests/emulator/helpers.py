"""Small helpers for the emulator tests: clients with the emulator's default credentials."""

from __future__ import annotations

import httpx

from cio_relay.emulator import EmulatorServer

__all__ = ["app_client", "inspect", "track_client"]


def track_client(server: EmulatorServer, **kwargs: object) -> httpx.Client:
    """An httpx client for the Track API with the server's Basic credentials."""
    config = server.config
    return httpx.Client(
        base_url=server.url, auth=(config.site_id, config.track_api_key), timeout=10, **kwargs
    )  # type: ignore[arg-type]


def app_client(server: EmulatorServer, **kwargs: object) -> httpx.Client:
    """An httpx client for the App API with the server's Bearer key."""
    headers = {"Authorization": f"Bearer {server.config.app_api_key}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def inspect(server: EmulatorServer, path: str, **params: object) -> object:
    """GET /_emulator/<path> over HTTP, as JSON."""
    response = httpx.get(f"{server.url}/_emulator/{path}", params=params, timeout=10)  # type: ignore[arg-type]
    response.raise_for_status()
    return response.json()
