"""Serve the emulator with uvicorn: in a background thread (tests, sandbox) or in the foreground.

``EmulatorServer`` binds its socket itself (port 0 picks a free one), so ``url`` is known
before the server starts, and ``start`` returns once uvicorn has started serving on it.
"""

from __future__ import annotations

import dataclasses
import gc
import socket
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import uvicorn

from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState

__all__ = ["EmulatorServer", "bind_socket", "serve_forever", "uvicorn_config"]

_START_TIMEOUT = 30.0
OWN_PROCESS_GC_FREEZE_BYTES = 20_000_000
OWN_PROCESS_GC_THRESHOLD = 20_000


def uvicorn_config(
    app: Callable[..., Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_config: dict[str, Any] | None = None,
) -> uvicorn.Config:
    """The server stack the emulator runs on: uvloop and httptools when installed, no access
    log (it is the peer of every benchmark), lifespan on (to close the webhook client).
    ``app`` is the emulator, or any ASGI app to be measured on the same stack."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=log_config,
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=5,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _url(host: str, port: int, *, tls: bool) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{netloc}:{port}"


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
        self._socket = bind_socket(host, port)
        self.port = int(self._socket.getsockname()[1])
        self.url = _url(host, self.port, tls=ssl_certfile is not None)
        self._server = uvicorn.Server(
            uvicorn_config(
                self.app,
                host=host,
                port=self.port,
                ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile,
            )
        )
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()

    def __repr__(self) -> str:
        return f"EmulatorServer(url={self.url!r}, config={self.config!r})"

    @property
    def state(self) -> EmulatorState:
        """The in-memory world, for direct inspection (read it; change it through the API)."""
        return self.app.state

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._run, name=f"cio-relay-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        # Poll uvicorn's own flag, waking on the thread's end so a failed start is seen at once.
        waited = 0.0
        while not self._server.started:
            if self._finished.wait(0.005):
                raise RuntimeError(f"the emulator failed to start on {self.url}")
            waited += 0.005
            if waited > _START_TIMEOUT:
                self.stop()
                raise RuntimeError(f"the emulator did not start on {self.url} in time")
        return self

    def _run(self) -> None:
        try:
            self._socket.listen(4096)
            self._server.run(sockets=[self._socket])
        finally:
            self._finished.set()

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._socket.close()

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
    one). The process is the emulator's own, so its GC is tuned for millions of stored events
    (``EmulatorConfig.gc_freeze_bytes``) unless the config already says otherwise.
    """
    if not config.gc_freeze_bytes:
        config = dataclasses.replace(config, gc_freeze_bytes=OWN_PROCESS_GC_FREEZE_BYTES)
    # A v2 batch allocates tens of thousands of short-lived dicts: with the default threshold
    # (700) the young generation is collected dozens of times per batch.
    gc.set_threshold(OWN_PROCESS_GC_THRESHOLD, 20, 20)
    sock = bind_socket(host, port)
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
            on_listening(_url(host, int(sock.getsockname()[1]), tls=ssl_certfile is not None))
        server.run(sockets=[sock])
    finally:
        sock.close()
