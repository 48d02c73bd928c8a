"""Serve the emulator with uvicorn: in a background thread (tests, sandbox) or in the foreground.

``EmulatorServer`` binds its socket itself (port 0 picks a free one), so ``url`` is known
before the server starts, and ``start`` returns once uvicorn has started serving on it (a
``cio_relay.serving.BackgroundServer``).
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import uvicorn

from cio_relay.http_guard import ConnectionLimits, guarded_http
from cio_relay.serving import BackgroundServer, bind_socket, socket_url

from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState

__all__ = ["EmulatorServer", "serve_forever", "uvicorn_config"]

OWN_PROCESS_GC_THRESHOLD = 20_000
#: The service's deadlines (Settings' HTTP service defaults); room for four times the service's
#: connections, as many as the emulator's listen backlog: load tests and benchmarks open many.
CONNECTION_LIMITS = ConnectionLimits(
    header_timeout=10.0, body_timeout=30.0, max_header_bytes=32_768, max_connections=4_096
)


def uvicorn_config(
    app: Callable[..., Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_config: dict[str, Any] | None = None,
    limits: ConnectionLimits = CONNECTION_LIMITS,
) -> uvicorn.Config:
    """The server stack the emulator runs on: uvloop when installed, httptools with the
    service's guard against slow and idle clients (``limits``), no access log (it is the peer
    of every benchmark), lifespan on (to close the webhook client). ``app`` is the emulator,
    or any ASGI app to be measured on the same stack."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=guarded_http(limits),
        ws="none",  # no websocket routes: an upgrade request is served as plain HTTP
        lifespan="on",
        access_log=False,
        log_config=log_config,
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=5,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


class EmulatorServer:
    """The emulator on a real 127.0.0.1 socket, served from a background thread.

    >>> with EmulatorServer(EmulatorConfig()) as server:   # doctest: +SKIP
    ...     httpx.get(f"{server.url}/_emulator/stats")
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.app = create_app(self.config)
        self.host = host
        # Listening from the start: requests sent before uvicorn accepts wait in the backlog.
        sock = bind_socket(host, port, backlog=4096)
        self.port = int(sock.getsockname()[1])
        config_ = uvicorn_config(
            self.app, host=host, port=self.port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile
        )
        self._background = BackgroundServer(config_, sock, name=f"cio-relay-emulator-{self.port}")
        self.url = self._background.url

    def __repr__(self) -> str:
        return f"EmulatorServer(url={self.url!r}, config={self.config!r})"

    @property
    def state(self) -> EmulatorState:
        """The in-memory world, for direct inspection (read it; change it through the API)."""
        return self.app.state

    def start(self) -> EmulatorServer:
        """Return once uvicorn serves on the socket; raise if it fails to start."""
        self._background.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        self._background.stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8089,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run the emulator in the foreground until interrupted (``cio-relay emulator``).

    ``on_listening(url)`` is called once the socket accepts connections (port 0 picks a free
    one). The process is the emulator's own, so its young-generation GC threshold is raised.
    """
    # A v2 batch allocates tens of thousands of short-lived dicts: with the default threshold
    # (700) the young generation is collected dozens of times per batch.
    gc.set_threshold(OWN_PROCESS_GC_THRESHOLD, 20, 20)
    sock = bind_socket(host, port)  # listening below, once the server is built
    try:
        server = uvicorn.Server(
            uvicorn_config(
                create_app(config),
                host=host,
                port=port,
                ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile,
                log_config=uvicorn.config.LOGGING_CONFIG,
            )
        )
        sock.listen(4096)  # from here the kernel queues connections until uvicorn accepts them
        if on_listening is not None:
            on_listening(socket_url(sock, tls=ssl_certfile is not None))
        server.run(sockets=[sock])
    finally:
        sock.close()
