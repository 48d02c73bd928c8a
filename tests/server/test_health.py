"""``/healthz`` and ``/readyz``: public, secret-free, and honest about what is broken."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from cio_relay.config import Settings
from cio_relay.emulator import EmulatorServer
from cio_relay.outbox.base import Outbox
from cio_relay.server import create_app
from tests.server.conftest import serve


def _settings(tmp_path: Path, api_key: str, url: str) -> Settings:
    return Settings(
        api_keys=api_key,
        site_id="emulator-site",
        track_api_key="emulator-track-key",
        app_api_key="emulator-app-key",
        track_url=url,
        app_url=url,
        data_dir=tmp_path,
    )


def test_healthz_is_public(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_ready_with_workers_running_and_customerio_reachable(
    emulator: EmulatorServer, outbox: Outbox, tmp_path: Path, api_key: str
) -> None:
    app = create_app(
        _settings(tmp_path, api_key, emulator.url),
        outbox=outbox,
        idempotency_path=tmp_path / "i.db",
    )
    with serve(app) as url:
        response = httpx.get(f"{url}/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"outbox": "ok", "idempotency": "ok", "workers": "ok", "customerio": "ok"},
    }


def test_not_ready_when_customerio_is_unreachable(
    outbox: Outbox, tmp_path: Path, api_key: str
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    app = create_app(
        _settings(tmp_path, api_key, dead_url), outbox=outbox, idempotency_path=tmp_path / "i.db"
    )
    with serve(app) as url:
        response = httpx.get(f"{url}/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["customerio"] == "unreachable"
    assert dead_url not in response.text and api_key not in response.text


def test_not_ready_when_the_outbox_fails(served: object, outbox: Outbox) -> None:
    with served() as url:  # type: ignore[operator]
        outbox.close()
        response = httpx.get(f"{url}/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["outbox"].startswith("failed: ")
