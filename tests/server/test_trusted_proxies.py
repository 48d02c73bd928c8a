"""``CIO_RELAY_TRUSTED_PROXIES``: ``X-Forwarded-Proto``/``-For`` are believed from those peers
only, on the server ``cio-relay run`` serves (``service._uvicorn_config``): a login through a
trusted TLS proxy gets a ``Secure`` cookie, the same headers from anyone else change nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cio_relay.config import Settings
from cio_relay.server import create_app
from cio_relay.server.auth import SESSION_COOKIE
from cio_relay.server.runner import _uvicorn_config
from cio_relay.serving import BackgroundServer, bind_socket

API_KEY = secrets.token_urlsafe(32)
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


@contextmanager
def _service(tmp_path: Path, trusted: str) -> Iterator[str]:
    settings = Settings(
        api_keys=API_KEY, data_dir=tmp_path, outbox="memory://", trusted_proxies=trusted
    )
    app = create_app(settings, run_workers=False, idempotency_path=tmp_path / "i.db")
    with BackgroundServer(
        _uvicorn_config(app, settings), bind_socket("127.0.0.1", 0, backlog=8)
    ) as server:
        yield server.url


def _login_cookie(url: str) -> str:
    answer = httpx.post(
        f"{url}/dashboard/login", data={"key": API_KEY}, headers=FORWARDED, timeout=30
    )
    assert answer.status_code == 303
    return next(v for k, v in answer.headers.multi_items() if k == "set-cookie")


def test_a_trusted_proxys_https_makes_the_session_cookie_secure(tmp_path: Path) -> None:
    with _service(tmp_path, "127.0.0.1") as url:
        cookie = _login_cookie(url)
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "Secure" in cookie


def test_forwarded_headers_from_an_untrusted_peer_change_nothing(tmp_path: Path) -> None:
    with _service(tmp_path, "10.9.8.7") as url:
        cookie = _login_cookie(url)
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "Secure" not in cookie
