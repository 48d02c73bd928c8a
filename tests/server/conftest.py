"""Fixtures for the HTTP service: the app served by uvicorn on a free 127.0.0.1 port.

``serve(app)`` runs uvicorn in a thread (``cio_relay.serving.BackgroundServer``: real sockets,
the real lifespan, so workers start and stop with it) and yields the base URL once the server
listens; leaving the block shuts it down.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from cio_relay.config import Settings
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.factory import open_outbox
from cio_relay.server import create_app
from cio_relay.serving import BackgroundServer, bind_socket


@contextmanager
def serve(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (or on ``sock``) in a thread; yields its base URL."""
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    with BackgroundServer(config, sock or bind_socket("127.0.0.1", 0)) as server:
        yield server.url


@pytest.fixture
def api_key() -> str:
    return "test-" + secrets.token_hex(16)


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield box
    box.close()


@pytest.fixture
def settings(api_key: str, tmp_path: Path) -> Settings:
    return Settings(api_keys=api_key, data_dir=tmp_path, outbox=f"sqlite:///{tmp_path}/outbox.db")


AppFactory = Callable[..., Starlette]


@pytest.fixture
def make_app(settings: Settings, outbox: Outbox, tmp_path: Path) -> AppFactory:
    """``make_app(**overrides)``: the API over ``outbox``, without workers unless asked."""

    def build(**overrides: Any) -> Starlette:
        options: dict[str, Any] = {
            "outbox": outbox,
            "run_workers": False,
            "idempotency_path": tmp_path / "idempotency.db",
        }
        app_settings = overrides.pop("settings", settings)
        options.update(overrides)
        return create_app(app_settings, **options)

    return build


@pytest.fixture
def served(make_app: AppFactory) -> Callable[..., AbstractContextManager[str]]:
    """``with served(**overrides) as url:`` a fresh app over real HTTP."""

    @contextmanager
    def run(**overrides: Any) -> Iterator[str]:
        with serve(make_app(**overrides)) as url:
            yield url

    return run


@pytest.fixture
def base_url(served: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    with served() as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http
