"""Sandbox mode: with no Customer.io credentials, run against the bundled emulator.

``cio-relay run`` and ``cio-relay demo`` call ``start_sandbox`` so that a new user sees the whole
pipeline work (deliveries, webhooks, dead letters) without an account. The emulator runs in a
background thread of this process, bound to 127.0.0.1, and the returned Settings point at it.

``BackgroundServer`` serves another ASGI app (the demo's webhook receiver) the same way, on a
socket bound beforehand so its URL can be given to the emulator before either starts.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from cio_relay.config import Settings

__all__ = ["BackgroundServer", "Sandbox", "listening_socket", "needs_sandbox", "start_sandbox"]

SANDBOX_BANNER = (
    "SANDBOX MODE: no Customer.io credentials are configured (CUSTOMERIO_SITE_ID, "
    "CUSTOMERIO_TRACK_API_KEY, CUSTOMERIO_APP_API_KEY). Everything is delivered to the bundled "
    "emulator at {url}; nothing reaches Customer.io."
)
_START_TIMEOUT = 30.0


def needs_sandbox(settings: Settings) -> bool:
    return not settings.has_track_credentials and settings.app_api_key is None


@dataclass
class Sandbox:
    """A running in-process emulator and the settings that point at it."""

    server: Any  # cio_relay.emulator.EmulatorServer
    settings: Settings

    @property
    def url(self) -> str:
        return str(self.server.url)

    @property
    def banner(self) -> str:
        return SANDBOX_BANNER.format(url=self.url)

    def stop(self) -> None:
        self.server.stop()


def start_sandbox(settings: Settings, *, webhook_url: str | None = None) -> Sandbox:
    """Start the emulator with fresh random keys and return settings aimed at it.

    With ``webhook_url`` the emulator posts its reporting webhooks there, signed with a fresh
    key that the returned settings carry in ``webhook_signing_keys``.
    """
    from cio_relay.emulator import EmulatorConfig, EmulatorServer

    signing_key = secrets.token_hex(16)
    config = EmulatorConfig(
        site_id="sandbox-site",
        track_api_key=secrets.token_hex(16),
        app_api_key=secrets.token_hex(16),
        region=settings.region,
        webhook_url=webhook_url,
        webhook_signing_key=signing_key,
    )
    server = EmulatorServer(config)
    server.start()
    sandboxed = settings.model_copy(
        update={
            "site_id": config.site_id,
            "track_api_key": _secret(config.track_api_key),
            "app_api_key": _secret(config.app_api_key),
            "track_url": server.url,
            "app_url": server.url,
            "webhook_signing_keys": [_secret(signing_key)],
        }
    )
    return Sandbox(server, sandboxed)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound and listening: clients queue in its backlog until a server accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


class BackgroundServer:
    """An ASGI app served by uvicorn from a daemon thread on an already listening socket.

    >>> with BackgroundServer(app, listening_socket()) as server:   # doctest: +SKIP
    ...     httpx.get(f"{server.url}/healthz")
    """

    def __init__(self, app: Any, sock: socket.socket, *, name: str = "cio-relay-server") -> None:
        import uvicorn

        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._name = name
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
        )
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()

    def __repr__(self) -> str:
        return f"BackgroundServer(url={self.url!r})"

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        # uvicorn's own flag, polled while waiting on the thread's end (a failed start ends it).
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if self._finished.wait(0.005):
                raise RuntimeError(f"{self._name} failed to start on {self.url}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name} did not start on {self.url} in time")
        return self

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self._finished.set()

    def stop(self) -> None:
        """Finish the requests in flight, stop, and close the socket; safe to call twice."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)
            self._thread = None
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
